"""An approval covers exactly the plan shown in full: the pure parts (issue 19, item 8).

Which targets the approved plan covers (every change, not the first 20), what an approved step
does with a write outside them (refused before it reaches the gateway), how a step that asks
again says why, and how ``relctl plan`` pages a long plan without losing a change.
"""

from __future__ import annotations

import pytest

from reliability_center.actions.base import ActionContext, OutsidePlan
from reliability_center.api.incident import IncidentStatus, StepStatus
from reliability_center.api.runbook import Limits, Step
from reliability_center.cli.main import plan_lines
from reliability_center.cli.session import CliError
from reliability_center.engine.approvals import ASKED_AGAIN, ask_again, planned_targets
from reliability_center.engine.plan import Facts
from reliability_center.engine.progress import AwaitStep, RunStep, next_decision
from reliability_center.gateway import WriteContext
from tests.unit.factories import incident, runbook

NOON = "2026-11-27T12:00:00Z"
WAVES = [{"name": "restart", "level": 2, "action": "restart-one-by-one", "approval": {"required": True}}]


def changes(count: int) -> list[dict]:
    return [{"target": f"Deployment/shop/sched-{i:03}", "before": {"a": None}, "after": {"a": f"t.{i}"}}
            for i in range(count)]


def test_the_approved_targets_are_every_change_of_the_plan_not_only_those_shown_first():
    assert planned_targets({"digest": "sha256:p", "changes": changes(45)}) == {
        f"Deployment/shop/sched-{i:03}" for i in range(45)}
    assert planned_targets(None) == frozenset()  # no plan shown: nothing approved to write


def context(approved: frozenset[str] | None, shadow: bool = False) -> ActionContext:
    write = WriteContext(incident={"metadata": {"name": "inc", "namespace": "shop", "uid": "u"}}, trace_id="t",
                         tenant="acme", step="restart", level=2, shadow=shadow)
    # No gateway: a write outside the plan must be refused before it would reach one.
    return ActionContext(gateway=None, read=None, incident=incident(), write=write,  # type: ignore[arg-type]
                         step=Step.model_validate(WAVES[0]), status=StepStatus(name="restart", level=2,
                                                                                action="restart-one-by-one"),
                         limits=Limits(), facts=Facts(now=NOON), action="restart-one-by-one", approved=approved)


def test_an_approved_step_never_writes_a_target_its_plan_did_not_show():
    ctx = context(frozenset({"Deployment/shop/sched-000"}))
    fresh = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sched-999"}}
    with pytest.raises(OutsidePlan) as refused:
        ctx.apply(fresh)
    assert refused.value.target == "Deployment/shop/sched-999"
    with pytest.raises(OutsidePlan):
        ctx.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "other"}})


def test_the_check_is_only_for_real_writes_of_an_approved_step():
    # Planning (shadow) discovers targets; a step with no approval rule has no plan to hold to.
    for ctx in (context(frozenset(), shadow=True), context(None)):
        with pytest.raises(AttributeError):  # got past the check, to the (absent) gateway
            ctx.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sched-999"}})


def test_a_step_that_asks_again_says_why_and_how_to_approve():
    inc, rb = incident(), runbook(steps=WAVES)
    why = ask_again("Deployment/default/sched-zz", "sha256:old")
    status = IncidentStatus(steps=[StepStatus(name="restart", level=2, action="restart-one-by-one",
                                              state="AwaitingApproval", evidence={ASKED_AGAIN: why})])
    decision = next_decision(inc, rb, status, NOON)
    assert isinstance(decision, AwaitStep) and decision.reason == "PlanChanged"
    assert "Deployment/default/sched-zz is not in the approved plan sha256:old" in decision.message
    assert "relctl approve" in decision.message
    status.steps[0].evidence = {}
    assert next_decision(inc, rb, status, NOON).reason == "ApprovalRequired"  # type: ignore[union-attr]
    assert not isinstance(next_decision(inc, rb, status, NOON), RunStep)


def test_relctl_plan_pages_show_every_change_once():
    plan = {"digest": "sha256:p", "dryRun": "not dry-run", "changes": changes(45)}
    shown = [line for page in (1, 2, 3) for line in plan_lines(plan, page) if line.lstrip()[:1].isdigit()]
    assert [line.split()[1] for line in shown] == [c["target"] for c in plan["changes"]]
    assert plan_lines(plan, 1)[0] == "plan sha256:p: 45 changes, page 1 of 3 (dry-run: not dry-run)"
    assert plan_lines(plan, 1)[-1] == "(more: --page 2)"
    whole = plan_lines(plan)  # what relctl approve prints before it signs: all of it
    assert sum(1 for line in whole if line.lstrip()[:1].isdigit()) == 45
    with pytest.raises(CliError, match="3 page"):
        plan_lines(plan, 4)
