"""policy.writes.check_place: where a gateway write may land whatever RBAC grants (issue 19, item 4)."""

import pytest

from reliability_center.policy.writes import REVOCABLE_LABEL, check_place

OWN = "reliability-center"


def place(kind="ConfigMap", namespace="shop", labels=None, restoring=False, operator_namespace=OWN):
    return check_place(kind=kind, target=f"{kind}/{namespace}/x", target_namespace=namespace,
                       target_labels=labels or {}, operator_namespace=operator_namespace, restoring=restoring)


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
@pytest.mark.parametrize("restoring", [False, True])
def test_system_namespaces_are_refused(namespace, restoring):
    verdict = place(namespace=namespace, restoring=restoring)
    assert not verdict.allowed and verdict.reason == "SystemNamespace" and namespace in verdict.message


@pytest.mark.parametrize("restoring", [False, True])
def test_the_operators_own_namespace_is_refused(restoring):
    verdict = place(namespace=OWN, restoring=restoring)
    assert not verdict.allowed and verdict.reason == "OperatorNamespace" and OWN in verdict.message


def test_no_operator_namespace_configured_refuses_only_the_system_ones():
    assert place(namespace="default", operator_namespace="").allowed
    assert not place(namespace="kube-system", operator_namespace="").allowed


def test_a_cluster_scoped_object_is_refused():
    verdict = place(kind="ClusterRoleBinding", namespace=None)
    assert not verdict.allowed and verdict.reason == "ClusterScoped"


def test_a_rolebinding_is_written_only_when_its_label_opts_it_in():
    for labels in ({}, {REVOCABLE_LABEL: "false"}, {REVOCABLE_LABEL: "yes"}):
        verdict = place(kind="RoleBinding", labels=labels)
        assert not verdict.allowed and verdict.reason == "RoleBindingNotOptedIn", labels
    assert place(kind="RoleBinding", labels={REVOCABLE_LABEL: "true"}).allowed


def test_putting_back_removed_subjects_needs_no_opt_in():
    """A label taken off after a revoke must not keep the removed subjects out for ever."""
    assert place(kind="RoleBinding", labels={}, restoring=True).allowed


def test_a_served_namespace_is_allowed():
    assert place(namespace="shop").allowed
    assert place(kind="Deployment", namespace="kube-systems").allowed  # a name, not a prefix
