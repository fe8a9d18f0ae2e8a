from reliability_center.api.common import Condition
from reliability_center.api.incident import ApprovalState, IncidentStatus
from reliability_center.engine.plan import Facts, plan
from reliability_center.engine.progress import (AwaitStep, Finish, RestoreStep, RunStep, news, next_decision,
                                                seconds_until, waiting_phase)
from tests.unit.factories import incident, runbook

NOON = "2026-11-27T12:00:00Z"
STEPS = [
    {"name": "flags", "level": 1, "action": "feature-flags-off"},
    {"name": "breaker", "level": 1, "action": "circuit-breaker", "when": {"signals": ["integration_errors"]},
     "params": {"integration": "x"}},
    {"name": "reindex", "level": 2, "action": "run-job", "params": {"cronJob": "r"},
     "approval": {"required": True, "window": {"start": "01:00", "end": "05:00"}}},
    {"name": "fix", "level": 3, "action": "patch-plan"},
]


def approve(status, index=2):
    """What engine/approvals.py and operator/govern.py leave in a step's status once enough approved."""
    status.steps[index].approval = ApprovalState(plan_digest="sha256:p", approved=True, approved_digest="sha256:p")
    return status


def planned(inc=None, **facts):
    inc = inc or incident()
    rb = runbook(steps=STEPS)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now=NOON, **facts)))
    return inc, rb, status


def test_a_step_whose_when_does_not_hold_is_skipped_with_the_reason():
    _, _, status = planned()
    breaker = status.steps[1]
    assert breaker.state == "Skipped" and breaker.reason == "ConditionNotMet"
    assert "integration_errors" in breaker.message


def test_level_1_steps_run_first_in_order():
    inc, rb, status = planned()
    assert next_decision(inc, rb, status, NOON) == RunStep(0)


def test_level_2_waits_for_approval_then_for_its_window():
    inc, rb, status = planned()
    status.steps[0].state = "Succeeded"
    decision = next_decision(inc, rb, status, NOON)
    assert isinstance(decision, AwaitStep) and decision.reason == "ApprovalRequired"
    approve(status)
    decision = next_decision(inc, rb, status, NOON)
    assert isinstance(decision, AwaitStep) and decision.reason == "OutsideWindow"
    assert next_decision(inc, rb, status, "2026-11-27T02:30:00Z") == RunStep(2)
    status.steps[2].approval.plan_digest = "sha256:changed"  # the plan changed since: it asks again
    decision = next_decision(inc, rb, status, "2026-11-27T02:30:00Z")
    assert isinstance(decision, AwaitStep) and decision.reason == "ApprovalRequired"


def test_a_window_across_midnight_is_honoured():
    steps = [dict(STEPS[2], approval={"required": False, "window": {"start": "22:00", "end": "02:00"}})]
    inc, rb = incident(), runbook(steps=steps)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now=NOON)))
    assert next_decision(inc, rb, status, "2026-11-27T23:30:00Z") == RunStep(0)
    assert next_decision(inc, rb, status, "2026-11-27T01:59:00Z") == RunStep(0)
    assert isinstance(next_decision(inc, rb, status, NOON), AwaitStep)


def test_failed_step_with_stop_fails_the_incident():
    inc, rb, status = planned()
    status.steps[0].state = "Failed"
    decision = next_decision(inc, rb, status, NOON)
    assert isinstance(decision, Finish) and decision.phase == "Failed"


def test_failed_step_with_escalate_escalates():
    steps = [dict(STEPS[0], onFailure="escalate")]
    inc, rb = incident(), runbook(steps=steps)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now=NOON)))
    status.steps[0].state = "Blocked"
    assert next_decision(inc, rb, status, NOON).phase == "Escalated"


def test_level_3_step_runs_and_its_escalation_ends_escalated():
    inc, rb, status = planned()
    approve(status)
    for s in status.steps[:3]:
        s.state = "Succeeded" if s.state != "Skipped" else "Skipped"
    assert next_decision(inc, rb, status, NOON) == RunStep(3)
    status.steps[3].state = "Escalated"
    assert next_decision(inc, rb, status, NOON) == Finish("Escalated", "EscalatedToHuman",
                                                          "a level 3 step handed the incident to a human")


def test_refused_admission_escalates_without_running_anything():
    inc, rb, status = planned()
    status.conditions = [Condition(type="Admitted", status="False", reason="RateLimited", message="too many")]
    decision = next_decision(inc, rb, status, NOON)
    assert decision == Finish("Escalated", "RateLimited", "too many")


def test_resolution_restores_every_step_holding_snapshots_in_reverse_order_whatever_its_state():
    inc, rb, status = planned()
    status.steps[0].state = "Failed"  # failed half-way: its first writes are restored all the same
    status.steps[2].state = "Succeeded"
    resolved = incident(resolved=True)
    held = {"flags", "reindex"}  # read from the cluster's snapshots, not from status
    assert next_decision(resolved, rb, status, NOON, held) == RestoreStep(2)
    status.steps[2].state = "Restored"
    assert next_decision(resolved, rb, status, NOON, held) == RestoreStep(0)
    status.steps[0].state = "Restored"
    assert next_decision(resolved, rb, status, NOON, held).phase == "Verifying"


def test_a_step_without_snapshot_is_not_restored():
    inc, rb, status = planned()
    status.steps[0].state = "Succeeded"  # e.g. a restart: nothing to undo
    assert next_decision(incident(resolved=True), rb, status, NOON, set()).phase == "Verifying"


def test_a_step_waiting_for_its_window_says_when_the_window_opens():
    inc, rb, status = planned()
    approve(status)
    status.steps[0].state = "Succeeded"
    decision = next_decision(inc, rb, status, NOON)
    assert isinstance(decision, AwaitStep) and decision.reason == "OutsideWindow"
    assert decision.wake_in == 13 * 3600  # 12:00 → 01:00 the next day
    assert seconds_until("01:00", "2026-11-28T00:59:30Z") == 30


def test_a_step_refused_by_policy_escalates_the_incident_and_the_walk_goes_on():
    inc, rb, status = planned()
    approve(status)
    status.steps[0].state, status.steps[0].reason = "Blocked", "ProtectedDataClass"
    assert next_decision(inc, rb, status, "2026-11-27T02:00:00Z") == RunStep(2)  # level 2, then 3 still run
    assert waiting_phase(status.steps) == Finish("Escalated", "ProtectedDataClass",
                                                 "step 'flags' was refused by policy; a human takes over: ")
    for s in status.steps[2:]:
        s.state = "Succeeded"
    decision = next_decision(inc, rb, status, NOON)
    assert decision.phase == "Escalated" and decision.reason == "ProtectedDataClass"


def test_a_step_the_runbook_no_longer_has_does_not_stop_the_walk():
    inc, rb, status = planned()
    status.steps[0].name = "removed-since"
    assert next_decision(inc, rb, status, NOON) == AwaitStep(2, "AwaitingApproval", "ApprovalRequired",
                                                            next_decision(inc, rb, status, NOON).message)


def test_a_rejected_step_escalates_unless_the_runbook_goes_on():
    inc, rb, status = planned()
    status.steps[0].state = "Succeeded"
    status.steps[2].state, status.steps[2].message = "Rejected", "rejected by bob"
    decision = next_decision(inc, rb, status, NOON)
    assert decision == Finish("Escalated", "StepRejected", "step 'reindex' was rejected: rejected by bob")
    steps = [STEPS[0], dict(STEPS[2], onFailure="continue"), STEPS[3]]
    rb = runbook(steps=steps)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now=NOON)))
    status.steps[0].state, status.steps[1].state = "Succeeded", "Rejected"
    assert next_decision(inc, rb, status, NOON) == RunStep(2)
    status.steps[2].state = "Succeeded"
    assert next_decision(inc, rb, status, NOON).reason == "StepRejected"  # a human said no: it ends Escalated


def test_a_step_that_waits_for_nothing_runs_while_an_earlier_one_awaits_approval():
    steps = [STEPS[0], STEPS[2], dict(STEPS[3], after=[])]
    inc, rb = incident(), runbook(steps=steps)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now=NOON)))
    status.steps[0].state = "Succeeded"
    assert next_decision(inc, rb, status, NOON) == RunStep(2)  # the level 3 fix is not held back
    status.steps[2].state = "Escalated"
    decision = next_decision(inc, rb, status, NOON)
    assert isinstance(decision, AwaitStep) and decision.index == 1 and decision.reason == "ApprovalRequired"
    waits = [STEPS[0], STEPS[2], dict(STEPS[3], after=["reindex"])]
    rb = runbook(steps=waits)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now=NOON)))
    status.steps[0].state = "Succeeded"
    decision = next_decision(inc, rb, status, NOON)
    assert isinstance(decision, AwaitStep) and decision.index == 1


def test_a_step_only_polled_again_is_no_news_but_any_other_change_is():
    _, _, status = planned()
    read = status.model_dump()
    status.steps[0].attempts += 3  # the step was polled: its counter moved, nothing else
    assert not news(read, status.model_dump())
    status.steps[0].message = "wave 2 of 3"
    assert news(read, status.model_dump())
    _, _, other = planned()
    other.timeline = []
    other.phase = "Mitigating"
    assert news(read, other.model_dump())
