"""Phase: Mitigating → Mitigated, Escalated or Verifying. The step loop: asks
``engine.progress.next_decision`` (pure) what to do, has a governed step reviewed first
(``operator/govern.py``), runs a step (``operator/step.py``), restores one once resolved
(``operator/restore.py``), waits, or reaches the phase the decision names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from reliability_center.actions.base import MetricsSource
from reliability_center.api.common import now_iso
from reliability_center.api.runbook import Runbook
from reliability_center.engine.plan import Facts
from reliability_center.engine.progress import AwaitStep, Finish, RestoreStep, RunStep, next_decision, waiting_phase
from reliability_center.gateway import Kube, WriteGateway, records
from reliability_center.operator import govern, start
from reliability_center.operator.admission import AdmissionCheck
from reliability_center.operator.draft import Draft
from reliability_center.operator.follow_plans import fix_outcome
from reliability_center.operator.restore import rehearse, restore_step
from reliability_center.operator.step import run_step
from reliability_center.operator.workqueue import Wakes
from reliability_center.policy import limits as guard


@dataclasses.dataclass(frozen=True)
class Walked:
    """Where the step loop stopped: waiting (``wake_in`` seconds, None: at the next change) or finished."""
    wake_in: float | None = None
    finished: bool = False


def walk(draft: Draft, runbook: Runbook, facts: Facts, held: dict[str, list[str]], *, kube: Kube,
         gateway: WriteGateway, wakes: Wakes, admission: AdmissionCheck, identity: Callable[[], str],
         guards_seen: dict[Any, dict[str, Any]], prometheus: MetricsSource | None = None,
         admitting: start.Admitting | None = None) -> Walked:
    """Take decisions until one waits or the walk is finished. ``held``: once resolved, the snapshots
    this incident took, by step. ``admitting``: a new incident's guards, still being counted."""
    reviewed: set[int] = set()
    while True:
        decision = next_decision(draft.incident, runbook, draft.status, now_iso(), set(held))
        if admitting is not None:
            # A new incident's first decision, taken while its guards are counted: a plain step runs now
            # (its reads at once, its writes once admitted); anything else waits for the verdict. Then
            # decide again: a refusal skipped every step.
            first, admitting = admitting, None
            if isinstance(decision, RunStep) and not under_review(draft, runbook, decision.index):
                index = decision.index
                wait = start.first_step(draft, first, lambda gate: run_step(
                    draft, runbook, index, facts, kube=kube, gateway=gateway, wakes=wakes, prometheus=prometheus,
                    admitted=gate))
                if wait:
                    return Walked(wait)
            else:
                first.settle(draft)
            continue
        if isinstance(decision, (RunStep, AwaitStep)) and decision.index not in reviewed and \
                under_review(draft, runbook, decision.index):
            # A governed step is planned (and its approvals weighed) each turn before it runs or waits.
            reviewed.add(decision.index)
            outcome = govern.review(draft, runbook, decision.index, facts, kube=kube, gateway=gateway, wakes=wakes,
                                    admission=admission, identity=identity, prometheus=prometheus)
            if outcome.outcome is govern.Outcome.PLANNING:
                return Walked(outcome.wake_in)
            if outcome.outcome is govern.Outcome.DECIDE:
                continue
            if isinstance(decision, AwaitStep) and decision.reason in ("ApprovalRequired", "PlanChanged"):
                decision = dataclasses.replace(decision, wake_in=outcome.wake_in)
        if isinstance(decision, RunStep):
            wait = run_step(draft, runbook, decision.index, facts, kube=kube, gateway=gateway, wakes=wakes,
                            prometheus=prometheus)
            if wait:
                return Walked(wait)
        elif isinstance(decision, RestoreStep):
            restore_step(draft, gateway, held, decision.index, kube)
        elif isinstance(decision, AwaitStep):
            await_step(draft, gateway, decision)
            return Walked(decision.wake_in)
        else:
            finish(draft, decision, runbook, kube=kube, gateway=gateway, guards_seen=guards_seen)
            return Walked(finished=True)


def under_review(draft: Draft, runbook: Runbook, index: int) -> bool:
    status = draft.status.steps[index]
    step = next((s for s in runbook.spec.steps if s.name == status.name), None)
    return step is not None and status.state in ("Pending", "AwaitingApproval") and govern.governed(step)


def await_step(draft: Draft, gateway: WriteGateway, decision: AwaitStep) -> None:
    status = draft.status.steps[decision.index]
    if status.state == decision.state and status.reason == decision.reason and status.message == decision.message:
        return  # votes weighed, a plan made: nothing new to say in the timeline
    status.state, status.reason, status.message = decision.state, decision.reason, decision.message  # type: ignore[assignment]
    draft.note(f"step:{decision.state}", decision.message, status.name)
    draft.condition("AwaitingApproval", "True", decision.reason, decision.message)
    outcome = waiting_phase(draft.status.steps)
    if outcome and draft.status.phase == "Mitigating":
        reached(draft, gateway, fix_outcome(draft, outcome))


def reached(draft: Draft, gateway: WriteGateway, outcome: Finish) -> None:
    """The incident reached a phase: its times, its Escalated and Ready conditions say so."""
    if outcome.phase in ("Mitigated", "Escalated"):
        rehearse(draft, gateway)
    ready = outcome.phase in ("Mitigated", "Escalated", "Verifying")
    draft.condition("Ready", "True" if ready else "False", outcome.reason, outcome.message)
    if outcome.phase == "Mitigated":
        draft.status.times.mitigated = draft.status.times.mitigated or now_iso()
    if outcome.phase == "Escalated":
        draft.status.times.escalated = draft.status.times.escalated or now_iso()
        draft.condition("Escalated", "True", outcome.reason, outcome.message)
    draft.phase(outcome.phase)


def finish(draft: Draft, decision: Finish, runbook: Runbook, *, kube: Kube, gateway: WriteGateway,
           guards_seen: dict[Any, dict[str, Any]]) -> None:
    if decision.phase == "Verifying":
        draft.mark_resolved()
        if any(s.action == "isolate-tenant" for s in runbook.spec.steps):
            gateway.release_isolation(draft.write_context("", 1))
    if decision.phase in ("Mitigated", "Escalated") and draft.status.phase != decision.phase and not draft.shadow \
            and not any(c.type == "Admitted" and c.status == "False" for c in draft.status.conditions):
        uid = draft.body["metadata"]["uid"]
        # Before the status that says Mitigated is written (the turn's end): a crash between them leaves the
        # status unwritten and the redone turn marks again (idempotent); the other way round, the mark would be
        # lost for good (a Mitigated incident is not finished again) and a re-fire would not count as one.
        records.update_guards(kube, draft.ref.namespace, runbook.metadata.name, draft.incident.spec.tenant,
                              lambda state: guard.mark_mitigated(state, uid), guards_seen)
    draft.condition("AwaitingApproval", "False", "NothingAwaiting", "")
    reached(draft, gateway, fix_outcome(draft, decision))
