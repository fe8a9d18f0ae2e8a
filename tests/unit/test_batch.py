"""Group commit's merge (gateway/batch.combine): many steps' holds on one object, planned as one patch.

The oracle is the planners applied one after the other (tests/unit/test_holds.py's ``apply``, on the
``jsonpatch`` library): the combined patch must leave the object exactly as the parts sent alone in the
same order would, and each part's release must still restore only its own.
"""

from __future__ import annotations

import copy

import pytest

from reliability_center.gateway.batch import NotApplied, Part, apply, combine
from reliability_center.gateway.holds import Edit, holder_id, holds, plan_release, plan_write
from reliability_center.gateway.kube import Conflict
from tests.unit.test_holds import RECORDS, flags, records, recorded  # noqa: F401  (records: the autouse fixture)
from tests.unit.test_holds import apply as apply_alone


def write_part(doc: dict, holder: str, *edits: Edit) -> Part:
    """A step's part as its writer plans it on the object it read (``doc``)."""
    def plan(obj):
        again = plan_write(obj, list(edits), holder, recorded=recorded)
        return again.ops, (again.before, sorted(again.held), sorted(again.holds))

    first = plan_write(doc, list(edits), holder, recorded=recorded)
    for key, hold in first.holds.items():  # the snapshot record, written before the batch goes (as the gateway does)
        RECORDS.setdefault(holder, {}).setdefault(key, hold)
    return Part(plan, (first.before, sorted(first.held), sorted(first.holds)))


def release_part(doc: dict, holder: str) -> Part:
    def plan(obj):
        again = plan_release(obj, holder, lambda _: True, taken=RECORDS.get(holder, {}))
        return again.ops, (again.restored, again.kept, again.conflicts)

    return Part(plan, plan(doc)[1])


def test_three_tenants_on_one_store_are_one_patch_that_leaves_what_three_patches_would():
    doc = flags(search="true")
    edits = {t: Edit(f"/data/search.tenant.{t}", "false") for t in ("acme", "globex", "initech")}
    combined = combine(doc, [write_part(doc, t, e) for t, e in edits.items()])
    assert combined.taken == [0, 1, 2] and not combined.refused
    one_by_one = doc
    for tenant, edit in edits.items():
        one_by_one = apply_alone(one_by_one, plan_write(one_by_one, [edit], tenant, recorded=recorded).ops)
    assert apply_alone(doc, combined.ops) == combined.after == one_by_one
    # Each tenant's release, batched again, restores its own key only.
    after = combined.after
    released = combine(after, [release_part(after, "globex")])
    assert released.after["data"] == {"search": "true", "search.tenant.acme": "false",
                                      "search.tenant.initech": "false"}
    both = combine(released.after, [release_part(released.after, t) for t in ("acme", "initech")])
    assert both.after == doc


def test_two_steps_joining_one_field_in_one_batch_hold_it_together():
    doc = flags(breaker="closed")
    parts = [write_part(doc, h, Edit("/data/breaker", "open")) for h in ("first", "second")]
    combined = combine(doc, parts)
    # Both planned on the object as read, before either held it: the same values before, so both go in.
    assert combined.taken == [0, 1]
    assert holds(combined.after).holders(Edit("/data/breaker", "open").key) == (holder_id("first"),
                                                                               holder_id("second"))
    assert RECORDS["first"][Edit("/data/breaker", "open").key].before == "closed"
    assert apply_alone(doc, combined.ops) == combined.after
    kept = combine(combined.after, [release_part(combined.after, "first")]).after
    assert kept["data"]["breaker"] == "open"
    assert combine(kept, [release_part(kept, "second")]).after == doc


def test_a_part_whose_plan_no_longer_means_what_its_writer_recorded_is_refused_alone():
    doc = flags(a="1")
    stale = write_part(doc, "late", Edit("/data/a", "2"))
    moved = apply_alone(doc, [{"op": "replace", "path": "/data/a", "value": "9"}])  # a person, since
    fine = write_part(moved, "fine", Edit("/data/b", "2"))
    combined = combine(moved, [stale, fine])
    assert combined.taken == [1] and isinstance(combined.refused[0], Conflict)
    assert combined.after["data"] == {"a": "9", "b": "2"}


def test_a_part_colliding_with_a_batch_mates_hold_is_refused_and_the_rest_go_in():
    doc = flags(replicas="2")
    parts = [write_part(doc, "pause", Edit("/data/replicas", "0")),
             write_part(doc, "scale", Edit("/data/replicas", "5")),
             write_part(doc, "other", Edit("/data/x", "y"))]
    combined = combine(doc, parts)
    assert combined.taken == [0, 2] and isinstance(combined.refused[1], Conflict)
    assert combined.after["data"] == {"replicas": "0", "x": "y"}


def test_a_part_that_fails_to_plan_hands_its_error_to_its_own_writer_only():
    def broken(_obj):
        raise ValueError("no plan")

    doc = flags()
    combined = combine(doc, [Part(broken, None), write_part(doc, "ok", Edit("/data/k", "v"))])
    assert combined.taken == [1] and isinstance(combined.refused[0], ValueError)


def test_apply_follows_the_apiservers_test_rules():
    doc = flags(a="1")
    assert apply(doc, [{"op": "test", "path": "/data/b", "value": None},
                       {"op": "add", "path": "/data/b", "value": "2"}])["data"] == {"a": "1", "b": "2"}
    for bad in ([{"op": "test", "path": "/data/a", "value": None}],  # null tested on a set key
                [{"op": "test", "path": "/data/a", "value": "2"}],
                [{"op": "remove", "path": "/data/zz"}]):
        with pytest.raises(NotApplied):
            apply(doc, bad)
    assert doc["data"] == {"a": "1"}  # never changed in place


def test_apply_leaves_the_object_as_it_was_and_agrees_with_jsonpatch():
    """``apply`` copies only the containers on each operation's path: the object it was given (a writer's
    ``seen``, the batch's basis) is never changed, however deep or wherever in a list the patch writes."""
    doc = {"metadata": {"name": "web", "annotations": {"keep": "1", "drop": "2"}},
           "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}}},
           "data": {"a": "1"}}
    before = copy.deepcopy(doc)
    ops = [{"op": "test", "path": "/metadata/annotations/new", "value": None},
           {"op": "add", "path": "/metadata/annotations/new", "value": "3"},
           {"op": "remove", "path": "/metadata/annotations/drop"},
           {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "9"},
           {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "B", "value": "2"}},
           {"op": "add", "path": "/data/b", "value": "2"}]
    assert apply(doc, ops) == apply_alone(doc, ops)
    assert doc == before
    with pytest.raises(NotApplied):  # a failing operation after some that applied: still nothing changed
        apply(doc, ops[1:2] + [{"op": "remove", "path": "/spec/template/spec/containers/0/env/5"}])
    assert doc == before
