"""revoke-access, the pure parts: its params, which subjects a narrowing keeps, and how the
gateway's holds treat a RoleBinding's ``subjects`` (one atomic list, held as one field)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reliability_center.actions.revoke_access import RevokeParams, Subject, narrow, principal
from reliability_center.actions.validate import check_runbook
from reliability_center.api.runbook import RunbookSpec
from reliability_center.gateway.holds import Edit, holds
from tests.unit.test_holds import apply, planned, records, released  # noqa: F401 (records: autouse)

ALICE = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}
AUDITORS = {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "auditors"}
EXPORTER = {"kind": "ServiceAccount", "name": "exporter", "namespace": "shop"}
EXPORTER_ELSEWHERE = {"kind": "ServiceAccount", "name": "exporter", "namespace": "billing"}
BOUND = [ALICE, AUDITORS, EXPORTER, EXPORTER_ELSEWHERE]


def binding(subjects: list[dict]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "exports-reader", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exports-reader"},
            "subjects": subjects}


def test_params_are_camel_case_and_name_the_binding_as_a_dns_label():
    params = RevokeParams.model_validate({"roleBinding": "exports-reader",
                                          "subjects": [{"kind": "User", "name": "alice"}]})
    assert params.role_binding == "exports-reader" and params.subjects == [Subject(kind="User", name="alice")]
    assert RevokeParams.model_validate({"roleBinding": "x"}).subjects == []  # empty: every subject
    for bad in ({"roleBinding": "Exports_Reader"}, {}, {"roleBinding": "x", "role": "y"},
                {"roleBinding": "x", "subjects": [{"kind": "Robot", "name": "r2"}]},
                {"roleBinding": "x", "subjects": [{"kind": "User", "name": ""}]},
                {"roleBinding": "x", "subjects": [{"kind": "User", "name": "alice", "namespace": "shop"}]}):
        with pytest.raises(ValidationError):
            RevokeParams.model_validate(bad)


def test_narrowing_removes_exactly_the_named_subjects_and_keeps_the_others_in_order():
    kept, removed = narrow(BOUND, [Subject(kind="User", name="alice"), Subject(kind="Group", name="nobody")], "shop")
    assert (kept, removed) == ([AUDITORS, EXPORTER, EXPORTER_ELSEWHERE], [ALICE])
    # A User and a Group of the same name are different principals.
    assert narrow(BOUND, [Subject(kind="Group", name="alice")], "shop") == (BOUND, [])


def test_a_service_account_is_the_incident_namespaces_unless_another_is_named():
    kept, removed = narrow(BOUND, [Subject(kind="ServiceAccount", name="exporter")], "shop")
    assert removed == [EXPORTER] and EXPORTER_ELSEWHERE in kept
    kept, removed = narrow(BOUND, [Subject(kind="ServiceAccount", name="exporter", namespace="billing")], "shop")
    assert removed == [EXPORTER_ELSEWHERE] and EXPORTER in kept


def test_a_service_account_bound_without_a_namespace_is_the_bindings_own():
    """The apiserver accepts a RoleBinding's ServiceAccount subject without a namespace and reads it as the
    binding's namespace (what a manifest applied into any namespace writes): it is that account."""
    local = {"kind": "ServiceAccount", "name": "exporter"}
    kept, removed = narrow([ALICE, local], [Subject(kind="ServiceAccount", name="exporter")], "shop")
    assert (kept, removed) == ([ALICE], [local])
    assert narrow([local], [Subject(kind="ServiceAccount", name="exporter", namespace="billing")], "shop") == (
        [local], [])
    assert principal(local, "shop") == "system:serviceaccount:shop:exporter"


def test_no_subject_named_removes_them_all():
    assert narrow(BOUND, [], "shop") == ([], BOUND)


def test_principals_read_as_the_apiserver_names_them():
    assert [principal(s) for s in (ALICE, AUDITORS, EXPORTER)] == [
        "User:alice", "Group:auditors", "system:serviceaccount:shop:exporter"]


def test_the_action_runs_at_level_2_only():
    step = {"name": "revoke", "action": "revoke-access", "params": {"roleBinding": "exports-reader"}}
    def spec(level: int) -> RunbookSpec:
        return RunbookSpec.model_validate({"match": {"category": "x"}, "steps": [{**step, "level": level}]})

    assert check_runbook(spec(2)) == []
    problems = check_runbook(spec(1))
    assert [p.reason for p in problems] == ["LevelNotAllowed"]


# -- what the gateway's holds make of it (the e2e test checks the same on the apiserver) --------


def removal(item: dict) -> Edit:
    return Edit("/subjects", item, item=True, remove=True)


def test_a_removal_is_held_per_subject_and_released_back_to_its_index():
    doc = binding(BOUND)
    doc = apply(doc, planned(doc, "incident-a", removal(BOUND[0]), removal(BOUND[2])).ops)
    assert doc["subjects"] == [b for i, b in enumerate(BOUND) if i not in (0, 2)]
    release = released(doc, "incident-a")
    restored = apply(doc, release.ops)
    assert restored["subjects"] == BOUND and not holds(restored)


def test_two_incidents_remove_two_subjects_and_each_puts_back_only_its_own_in_either_order():
    for first, second in (("a", "b"), ("b", "a")):
        doc = binding(BOUND)
        doc = apply(doc, planned(doc, "a", removal(BOUND[0])).ops)
        doc = apply(doc, planned(doc, "b", removal(BOUND[2])).ops)  # no clash: another item
        assert doc["subjects"] == [b for i, b in enumerate(BOUND) if i not in (0, 2)]
        doc = apply(doc, released(doc, first).ops)
        kept = BOUND[2] if first == "a" else BOUND[0]
        assert doc["subjects"] == [b for b in BOUND if b != kept]
        doc = apply(doc, released(doc, second).ops)
        assert doc["subjects"] == BOUND and not holds(doc)


def test_an_emptied_list_the_apiserver_dropped_is_made_again_in_order():
    doc = binding(BOUND)
    doc = apply(doc, planned(doc, "a", *(removal(b) for b in BOUND)).ops)
    assert doc["subjects"] == []
    del doc["subjects"]  # what the apiserver stores for an empty list
    doc = apply(doc, released(doc, "a").ops)
    assert doc["subjects"] == BOUND


def test_the_same_subject_removed_by_two_incidents_comes_back_with_the_last_resolve():
    doc = binding(BOUND)
    doc = apply(doc, planned(doc, "a", removal(BOUND[1])).ops)
    doc = apply(doc, planned(doc, "b", removal(BOUND[1])).ops)  # joins the hold
    doc = apply(doc, released(doc, "a").ops)
    assert BOUND[1] not in doc["subjects"]
    doc = apply(doc, released(doc, "b").ops)
    assert doc["subjects"] == BOUND and not holds(doc)
