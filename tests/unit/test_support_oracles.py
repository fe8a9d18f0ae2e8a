"""The tests' own oracles (tests/support), checked without a cluster: an oracle that cannot fail proves nothing."""

from tests.support.incidents import changed


def test_changed_sees_an_object_deleted_as_well_as_one_made_or_changed():
    before = {"ConfigMap/flags-search": "d1", "Deployment/search": "d2", "ConfigMap/tenant-acme": "d3"}
    after = {"ConfigMap/flags-search": "d1", "Deployment/search": "d2-changed", "Job/made": "d4"}
    assert changed(before, after) == {"Deployment/search", "Job/made", "ConfigMap/tenant-acme"}


def test_changed_is_empty_only_for_the_same_objects_with_the_same_content():
    same = {"ConfigMap/flags-search": "d1"}
    assert changed(same, dict(same)) == set()
    assert changed(same, {}) == {"ConfigMap/flags-search"}  # a restore that deleted what it should have restored
