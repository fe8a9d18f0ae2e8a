"""A restore first settles each write no status reported and the durable audit log lacks (a turn cut off
after its writes and before its one append, then resolved): a write that landed gets its record, the
snapshot of one that never landed goes (``engine.gates.unrecorded_write``), told from the object as read
before any release (``gateway.holds.landed``). The cluster test is tests/e2e/test_cut_off_turn.py."""

from __future__ import annotations

from reliability_center.engine import gates
from reliability_center.gateway.holds import Edit, landed, plan_release, plan_write, whole_hold, whole_record
from tests.unit.test_holds import apply, flags, unannotated

TARGET = "ConfigMap/app/flags-search"


def test_only_a_write_no_status_reported_and_the_log_lacks_is_settled_recorded_if_it_landed_dropped_if_not():
    recorded = gates.written([
        {"step": "flags", "target": TARGET, "outcome": "applied"},
        {"step": "breaker", "target": "ConfigMap/app/b", "outcome": "unchanged"},  # found as wanted: its record
        {"step": "pause", "target": "ConfigMap/app/p", "outcome": "restored", "action": "restore:pause"},
        {"step": "isolate", "target": "ConfigMap/app/i", "outcome": "denied"},
    ])
    assert recorded == {("flags", TARGET), ("breaker", "ConfigMap/app/b")}
    for reported in (True, False):
        for landed_now in (True, False, None):  # recorded: whatever else, nothing to add or drop
            assert gates.unrecorded_write("flags", TARGET, recorded, reported, landed_now) == gates.RECORDED
    # A restore record, or a refusal, is not the record of the write.
    assert gates.unrecorded_write("pause", "ConfigMap/app/p", recorded, False, True) == gates.RECORD
    assert gates.unrecorded_write("isolate", "ConfigMap/app/i", recorded, False, False) == gates.DROP
    assert gates.unrecorded_write("flags", "ConfigMap/app/other", recorded, False, None) == gates.LEAVE


def test_a_record_removed_from_the_log_after_its_turn_reported_the_write_is_left_for_the_gate_to_name():
    # The turn appended its records before the status that lists its snapshot: missing now, someone removed it.
    for landed_now in (True, False, None):
        assert gates.unrecorded_write("flags", TARGET, set(), True, landed_now) == gates.LEAVE


def test_the_gate_and_the_restore_count_the_same_records_as_the_write_s():
    records = [{"step": "flags", "target": TARGET, "outcome": "applied", "traceId": "t", "tenant": "acme",
                "actor": "a", "action": "feature-flags-off", "before": "x", "after": "y"}]
    held = gates.HeldWrite("rc-snap-1", "flags", TARGET, ("/data/k",), False, "")
    obs = gates.Observations(steps=[], held=[held], records=records, foreign={}, rollback=None, plans=[], slo=None,
                             slo_query=None, slo_values=None)
    assert gates.audit_complete(obs).passed
    assert gates.unrecorded_write("flags", TARGET, gates.written(records), False, True) == gates.RECORDED
    other = gates.HeldWrite("rc-snap-2", "breaker", "ConfigMap/app/b", ("/data/k",), False, "")
    obs = gates.Observations(steps=[], held=[held, other], records=records, foreign={}, rollback=None, plans=[],
                             slo=None, slo_query=None, slo_values=None)
    assert gates.audit_complete(obs).missing == ["step breaker: no audit record of the write to ConfigMap/app/b"]


def written(doc: dict, holder: str, *edits: Edit):
    """The plan of a write (what its snapshot records) and the object once it landed."""
    plan = plan_write(doc, list(edits), holder, lambda _: True, lambda *_: None)
    return plan, apply(doc, plan.ops)


def test_a_write_landed_while_it_holds_a_field_and_never_landed_when_nothing_of_it_is_there():
    doc = flags(a="true", b="on")
    plan, after = written(doc, "s", Edit("/data/a", "false"), Edit("/data/b", "off"), Edit("/data/c", "new"))
    assert landed(after, "s", plan.holds, plan.after) is True
    # Killed between its snapshot and its write (or the write refused): the object as it was.
    assert landed(doc, "s", plan.holds, plan.after) is False
    # Released: nothing of it there any more, so a restore decides before it releases, its record made first.
    assert landed(apply(after, plan_release(after, "s", lambda _: True, taken=plan.holds).ops), "s", plan.holds,
                  plan.after) is False


def test_a_write_joining_another_incidents_hold_landed_only_when_that_hold_names_it_too():
    doc = flags(a="true")
    _, held_by_t = written(doc, "t", Edit("/data/a", "false"))
    plan, joined = written(held_by_t, "s", Edit("/data/a", "false"))
    assert landed(joined, "s", plan.holds, plan.after) is True
    # The field is at the value s wanted, but t's hold does not name s: s's write never landed.
    assert landed(held_by_t, "s", plan.holds, plan.after) is False


def test_nobody_can_tell_when_a_field_it_set_is_left_with_no_hold_or_its_snapshot_recorded_none():
    doc = flags(a="true", b="on")
    plan, after = written(doc, "s", Edit("/data/a", "false"), Edit("/data/b", "off"))
    stripped = unannotated(after)  # its hold annotation removed by someone: its write, or another's doing?
    assert landed(stripped, "s", plan.holds, plan.after) is None
    changed = {**doc, "data": {**doc["data"], "a": "someone's"}}
    assert landed(changed, "s", plan.holds, plan.after) is None
    assert landed(after, "s", {}, plan.after) is None
    assert landed(None, "s", plan.holds, plan.after) is None  # the object it patched, deleted


def test_an_object_a_write_creates_landed_when_it_exists_held_whole_and_never_when_it_is_absent():
    key, value = whole_hold("s")
    made = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "iso", "annotations": {key: value}},
            "data": {"k": "v"}}
    assert landed(made, "s", whole_record("s"), {"/data/k": "v"}) is True
    assert landed(None, "s", whole_record("s"), {"/data/k": "v"}) is False
