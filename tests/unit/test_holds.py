"""Holds on shared objects: each incident keeps its change until its own release.

Patches are applied with the ``jsonpatch`` library (RFC 6902), with one rule of
the apiserver's JSON patch (evanphx/json-patch v4) added: a ``test`` for null
passes on a missing key. The e2e tests check the same plans on the real apiserver.
"""

from __future__ import annotations

import copy

import jsonpatch
import pytest

from reliability_center.gateway.holds import (Edit, HeldElsewhere, Hold, ReleasePlan, WritePlan, gone_holds, holder_id,
                                               holds, plan_release, plan_write, same, whole_hold, whole_record)
from reliability_center.gateway.leaves import ABSENT, read

RECORDS: dict[str, dict[str, Hold]] = {}
"""Each holder's snapshot record, as the gateway keeps it: what its first write planned, completed by later ones."""


@pytest.fixture(autouse=True)
def records():
    RECORDS.clear()
    yield RECORDS


def recorded(hid: str, key: str) -> Hold | None:
    return next((taken[key] for name, taken in RECORDS.items() if holder_id(name) == hid and key in taken), None)


def gone(*names: str):
    """``alive`` for holders ``names`` whose incidents were deleted (by snapshot name or holder id)."""
    dead = set(names) | {holder_id(n) for n in names}
    return lambda h: h not in dead


def planned(doc: dict, holder: str, *edits: Edit, alive=lambda _: True) -> WritePlan:
    plan = plan_write(doc, list(edits), holder, alive, recorded)
    for key, hold in plan.holds.items():
        RECORDS.setdefault(holder, {}).setdefault(key, hold)
    return plan


def released(doc: dict, holder: str, alive=lambda _: True) -> ReleasePlan:
    return plan_release(doc, holder, alive, taken=RECORDS.get(holder, {}))


class PatchTestFailed(Exception):
    pass


def apply(doc: dict, ops: list[dict]) -> dict:
    out = copy.deepcopy(doc)
    for op in ops:
        if op["op"] == "test" and op["value"] is None:
            if read(out, op["path"]) not in (ABSENT, None):
                raise PatchTestFailed(op["path"])
            continue
        try:
            out = jsonpatch.apply_patch(out, [op])
        except (jsonpatch.JsonPatchPatchTestFailed, jsonpatch.JsonPatchConflict) as exc:
            raise PatchTestFailed(str(exc)) from None
    return out


def flags(**data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags", "annotations": {"x": "1"}},
            "data": dict(data)}


def write(doc: dict, holder: str, *edits: Edit) -> dict:
    return apply(doc, planned(doc, holder, *edits).ops)


def release(doc: dict, holder: str, alive=lambda _: True) -> dict:
    return apply(doc, released(doc, holder, alive).ops)


def test_two_tenants_on_one_store_each_keep_their_key_until_their_own_release():
    doc = flags(search="true")
    doc = write(doc, "acme", Edit("/data/search.tenant.acme", "false"))
    doc = write(doc, "globex", Edit("/data/search.tenant.globex", "false"))
    assert doc["data"] == {"search": "true", "search.tenant.acme": "false", "search.tenant.globex": "false"}
    doc = release(doc, "acme")
    assert doc["data"] == {"search": "true", "search.tenant.globex": "false"}
    doc = release(doc, "globex")
    assert doc == flags(search="true")


def test_two_incidents_on_one_field_keep_it_until_the_last_releases_and_then_restore_the_original():
    doc = flags(breaker="closed")
    doc = write(doc, "first", Edit("/data/breaker", "open"))
    second = planned(doc, "second", Edit("/data/breaker", "open"))
    assert second.joined == ["/data/breaker"] and second.before == {"/data/breaker": "closed"}
    doc = apply(doc, second.ops)
    first_out = released(doc, "first")
    assert first_out.kept == ["/data/breaker"] and first_out.restored == []
    doc = apply(doc, first_out.ops)
    assert doc["data"]["breaker"] == "open"
    doc = release(doc, "second")
    assert doc == flags(breaker="closed")


def test_a_holder_whose_incident_is_gone_does_not_keep_the_field_forever():
    doc = write(flags(breaker="closed"), "gone", Edit("/data/breaker", "open"))
    doc = write(doc, "live", Edit("/data/breaker", "open"))
    doc = release(doc, "live", alive=gone("gone"))
    assert doc == flags(breaker="closed")


def test_a_retry_of_the_same_step_writes_nothing_more():
    doc = write(flags(a="true"), "s", Edit("/data/a", "false"))
    again = planned(doc, "s", Edit("/data/a", "false"))
    assert again.ops == [] and again.holds_all and again.before == {"/data/a": "true"}


def test_a_value_already_set_by_someone_else_is_not_held_nor_restored():
    doc = flags(a="false")
    plan = planned(doc, "s", Edit("/data/a", "false"))
    assert plan.ops == [] and plan.unchanged == ["/data/a"] and not plan.holds_all
    assert released(doc, "s").ops == []


def test_another_incident_holding_a_different_value_is_a_collision_not_an_override():
    doc = write(flags(replicas="2"), "pause", Edit("/spec/replicas", 0))
    with pytest.raises(HeldElsewhere) as err:
        planned(doc, "scale", Edit("/spec/replicas", 1))
    assert err.value.holders == (holder_id("pause"),) and err.value.value == 0  # the value its record says
    # ... unless that incident is gone: the field is taken over, its original value kept.
    plan = planned(doc, "scale", Edit("/spec/replicas", 1), alive=gone("pause"))
    doc = apply(doc, plan.ops)
    assert doc["spec"]["replicas"] == 1
    doc = release(doc, "scale", alive=gone("pause"))
    assert "replicas" not in doc.get("spec", {}) and not holds(doc)


def test_restore_never_clobbers_a_value_changed_since():
    doc = write(flags(a="true"), "s", Edit("/data/a", "false"))
    doc["data"]["a"] = "changed-by-oncall"
    plan = released(doc, "s")
    assert plan.conflicts == ["/data/a"]
    doc = apply(doc, plan.ops)
    assert doc["data"]["a"] == "changed-by-oncall" and not holds(doc)


def test_missing_parents_are_created_and_removed_again_by_the_release():
    bare = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bare"}}
    doc = write(bare, "s", Edit("/data/k", "v"))
    assert doc["data"] == {"k": "v"} and len(holds(doc)) == 1
    doc = release(doc, "s")
    assert doc["data"] == {} and doc["metadata"]["annotations"] == {}


def test_list_items_of_two_tenants_are_added_and_removed_one_by_one():
    policy = {"metadata": {"name": "allow"}, "spec": {"podSelector": {"matchLabels": {"app": "api"}}}}
    acme = {"key": "tenant", "operator": "NotIn", "values": ["acme"]}
    globex = {"key": "tenant", "operator": "NotIn", "values": ["globex"]}
    path = "/spec/podSelector/matchExpressions"
    doc = write(policy, "a", Edit(path, acme, item=True))
    doc = write(doc, "g", Edit(path, globex, item=True))
    assert doc["spec"]["podSelector"]["matchExpressions"] == [acme, globex]
    doc = release(doc, "a")
    assert doc["spec"]["podSelector"] == {"matchLabels": {"app": "api"}, "matchExpressions": [globex]}
    doc = release(doc, "g")
    assert doc["spec"]["podSelector"] == {"matchLabels": {"app": "api"}, "matchExpressions": []}
    # One tenant alone: the list it made is removed whole.
    doc = release(write(policy, "a", Edit(path, acme, item=True)), "a")
    assert doc["spec"]["podSelector"] == {"matchLabels": {"app": "api"}}


def test_two_writers_racing_on_one_new_key_cannot_both_hold_it_alone():
    doc = flags()
    first = planned(doc, "first", Edit("/data/k", "v"))
    second = planned(doc, "second", Edit("/data/k", "v"))  # planned from the same read
    doc = apply(doc, first.ops)
    with pytest.raises(PatchTestFailed):
        apply(doc, second.ops)  # its test on the hold annotation fails: it plans again and joins
    doc = apply(doc, planned(doc, "second", Edit("/data/k", "v")).ops)
    assert list(holds(doc)) == [(holder_id("first"), holder_id("second"))]


def test_a_created_object_is_deleted_only_by_its_last_holder():
    key, value = whole_hold("a")
    created = {"metadata": {"name": "rc-isolate-acme", "annotations": {key: value}}, "spec": {"x": 1}}
    RECORDS["a"] = whole_record("a")
    doc = apply(created, planned(created, "b", Edit("/", None)).ops)
    first = released(doc, "a")
    assert not first.delete and first.kept == ["/"]
    doc = apply(doc, first.ops)
    assert released(doc, "b").delete


def test_json_equality_is_by_type():
    assert not same(1, True) and not same(0, False) and not same("1", 1) and same({"a": [1]}, {"a": [1]})


def test_fields_another_manager_owns_are_named_with_their_managers():
    from reliability_center.gateway.holds import foreign_owners

    doc = flags(a="true")
    doc["metadata"]["managedFields"] = [
        {"manager": "argocd-controller", "operation": "Apply", "fieldsV1": {"f:data": {"f:a": {}}}},
        {"manager": "reliability-center", "operation": "Update", "fieldsV1": {"f:data": {"f:mine": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "fieldsV1": {"f:data": {"f:a": {}}}},
    ]
    taking = planned(doc, "s", Edit("/data/a", "false")).ops
    assert foreign_owners(doc, taking, "reliability-center") == {"/data/a": ["argocd-controller (Apply)"]}
    adding = planned(doc, "s", Edit("/data/a.tenant.acme", "false")).ops  # a new key: nobody's
    assert foreign_owners(doc, adding, "reliability-center") == {}


def test_an_atomic_selector_owned_whole_counts_for_an_item_added_inside_it():
    from reliability_center.gateway.holds import foreign_owners

    policy = {"metadata": {"name": "allow", "managedFields": [
        {"manager": "helm", "operation": "Apply", "fieldsV1": {"f:spec": {"f:podSelector": {}}}}]},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}}}
    ops = planned(policy, "s", Edit("/spec/podSelector/matchExpressions", {"key": "t"}, item=True)).ops
    assert foreign_owners(policy, ops, "reliability-center") == {"/spec/podSelector/matchExpressions": ["helm (Apply)"]}


def unannotated(doc: dict) -> dict:
    """``kubectl annotate ... reliability.center/holds-NN-``, or another writer's PUT without them."""
    out = copy.deepcopy(doc)
    out["metadata"]["annotations"] = {k: v for k, v in out["metadata"]["annotations"].items()
                                      if not k.startswith("reliability.center/hold")}
    return out


def test_a_write_records_the_holds_it_leaves_as_the_object_carries_them():
    doc = flags(a="true")
    plan = planned(doc, "s", Edit("/data/a", "false"), Edit("/data/b", "x"))
    written = apply(doc, plan.ops)
    assert {k: h.holders for k, h in plan.holds.items()} == {k: holds(written).holders(k) for k in plan.holds}
    assert len(plan.holds) == 2 and all(h.path for h in plan.holds.values())  # the path, for the release
    joined = planned(written, "t", Edit("/data/a", "false"))
    assert {k: h.holders for k, h in joined.holds.items()} == \
        {Edit("/data/a", "false").key: (holder_id("s"), holder_id("t"))}


def test_a_hold_someone_removed_is_lost_not_restored():
    doc = flags(a="true", b="on")
    plan = planned(doc, "s", Edit("/data/a", "false"), Edit("/data/b", "off"), Edit("/data/c", "new"))
    stripped = unannotated(apply(doc, plan.ops))
    stripped["data"]["b"] = "someone's"
    release = released(stripped, "s")
    assert not release.ops and not release.restored  # nothing left to release: the old, silent "restored"
    gone = gone_holds(stripped, plan.holds, plan.after)
    assert (gone.lost, gone.back, gone.changed) == (["/data/a", "/data/c"], [], ["/data/b"])


def test_holds_released_already_or_kept_by_others_are_not_lost():
    doc = flags(a="true")
    first = planned(doc, "s", Edit("/data/a", "false"))
    doc = apply(doc, first.ops)
    doc = write(doc, "t", Edit("/data/a", "false"))
    kept = release(doc, "s")  # t still holds it: the annotation stays, with t alone
    assert gone_holds(kept, first.holds, first.after).lost == []
    back = release(kept, "t")  # the last holder put it back, annotation and all
    gone = gone_holds(back, first.holds, first.after)
    assert (gone.lost, gone.back) == ([], ["/data/a"])


def test_lost_holds_on_list_items_and_created_objects_are_judged_by_the_object():
    path = "/spec/ingress"
    policy = {"apiVersion": "v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "annotations": {}},
              "spec": {"ingress": [{"from": "a"}, {"from": "b"}]}}
    plan = planned(policy, "s", Edit(path, {"from": "x"}, item=True), Edit(path, {"from": "a"}, item=True,
                                                                           remove=True))
    stripped = unannotated(apply(policy, plan.ops))
    assert stripped["spec"]["ingress"] == [{"from": "b"}, {"from": "x"}]
    assert gone_holds(stripped, plan.holds, plan.after).lost == ["/spec/ingress/-", '/spec/ingress[-{"from": "a"}]']
    key, value = whole_hold("s")
    created = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "iso", "annotations": {}},
               "data": {"k": "v"}}
    taken = whole_record("s")
    assert holds({"metadata": {"annotations": {key: value}}}).has(next(iter(taken)))
    assert gone_holds(created, taken, {"/data/k": "v"}).lost == ["/"]
    assert gone_holds({**created, "data": {"k": "changed"}}, taken, {"/data/k": "v"}).changed == ["/"]
