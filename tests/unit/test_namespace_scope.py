"""An incident acts in its own namespace only (policy/writes.py check_namespace): what a restore reads
back from a snapshot cannot name a target elsewhere."""

import pytest

from reliability_center.policy.writes import check_namespace


@pytest.mark.parametrize("elsewhere", ["other", "", None, "shop-2", "Shop"])
def test_a_target_outside_the_incidents_namespace_is_refused(elsewhere):
    verdict = check_namespace(incident_namespace="shop", target=f"RoleBinding/{elsewhere}/x", target_namespace=elsewhere)
    assert not verdict.allowed and verdict.reason == "OutsideIncidentNamespace"
    assert f"RoleBinding/{elsewhere}/x" in verdict.message and "'shop'" in verdict.message


def test_a_target_in_the_incidents_namespace_is_allowed():
    assert check_namespace(incident_namespace="shop", target="RoleBinding/shop/x", target_namespace="shop").allowed
