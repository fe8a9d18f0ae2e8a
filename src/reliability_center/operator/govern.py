"""Phase: a governed (Level 2) step before it runs. The I/O half of governance: plan the step,
read its Approvals, weigh them, audit each.

The decisions are pure and live elsewhere: ``engine/approvals.py`` weighs the votes,
``engine/progress.py`` decides from the step's ``approval`` state whether it runs. This
module gathers what they need (the plan, dry-run on the apiserver; the Approval objects;
the Incident's creator as admission recorded it; the operator's own identity) and writes
the outcome into the step's status, the timeline and the audit trail (the ``Draft`` it is handed),
and returns what the step loop (``operator/mitigate.py``) does next.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from pydantic import ValidationError

from reliability_center.actions import REGISTRY
from reliability_center.actions.base import (ActionContext, Escalate, Failed, MetricsSource, Planned, Result, Running,
                                             Skipped, resolve_params)
from reliability_center.api.approval import CREATED_BY
from reliability_center.api.common import now_iso
from reliability_center.api.incident import ApprovalState, StepStatus, Vote
from reliability_center.api.runbook import Runbook, Step
from reliability_center.engine.approvals import ASKED_AGAIN, Ballot, plan_digest, weigh
from reliability_center.engine.plan import Facts
from reliability_center.engine.progress import approved
from reliability_center.engine.templates import TemplateError
from reliability_center.gateway import Kube, PolicyDenied, WriteGateway, audit
from reliability_center.gateway.kube import Invalid, NotFound
from reliability_center.operator import metrics
from reliability_center.operator.admission import AdmissionCheck
from reliability_center.operator.draft import Draft
from reliability_center.operator.workqueue import Wakes
from reliability_center.policy import limits as guard

log = logging.getLogger("reliability_center.govern")

#: While a step waits for approval its plan is computed again this often (seconds): a target
#: changed meanwhile shows as a new digest, and the approvals given for the old one stop counting.
REPLAN_EVERY = 60.0
#: Seconds an answer on the admission policies may be old when a step is about to be approved.
ADMISSION_FRESH = 5.0
#: A step that waits between writes (waves) is planned through every wait, at most this many calls
#: of its action: the approvers see every wave, not only the first.
PLAN_CALLS = 250
#: The plan is kept whole in the step's status (approvers see every change they approve); a plan
#: larger than this is refused rather than shown in part (the Incident must stay well under etcd's limit).
PLAN_BYTES = 256 * 1024


class Outcome(Enum):
    SAME = "same"  # nothing that changes the decision
    DECIDE = "decide"  # approved, rejected, failed or expired: decide again
    PLANNING = "planning"  # the plan is being made (a dry-run Job runs): look again later


@dataclasses.dataclass
class Review:
    outcome: Outcome
    wake_in: float | None = None


def governed(step: Step) -> bool:
    """Is the step planned before it runs? Level 2 with an approval, or asking for a dry-run first."""
    return step.level == 2 and (bool(step.approval and step.approval.required) or step.dry_run_first)


def review(draft: Draft, runbook: Runbook, index: int, facts: Facts, *, kube: Kube, gateway: WriteGateway,
           wakes: Wakes, admission: AdmissionCheck, identity: Callable[[], str],
           prometheus: MetricsSource | None = None) -> Review:
    status = draft.status.steps[index]
    step = next(s for s in runbook.spec.steps if s.name == status.name)
    planned = _plan(draft, kube, gateway, runbook, step, status, facts, prometheus)
    if isinstance(planned, Running):
        status.state, status.reason = "AwaitingApproval", "Planning"  # type: ignore[assignment]
        status.message = planned.message
        status.evidence = {**(status.evidence or {}), "planning": planned.evidence or {}}
        for target in planned.wake_on:
            wakes.wait_on(target, (draft.ref.namespace, draft.ref.name))
        return Review(Outcome.PLANNING, planned.retry_after or 1.0)
    if not isinstance(planned, Planned):
        _ended(draft, step, status, planned)
        return Review(Outcome.DECIDE)
    digest = plan_digest({"changes": planned.changes, "report": planned.report})
    size = len(json.dumps(planned.changes, separators=(",", ":")))
    if size > PLAN_BYTES:
        _ended(draft, step, status, Failed("PlanTooLarge", f"the plan has {len(planned.changes)} changes "
                                          f"({size} bytes), more than the {PLAN_BYTES} bytes an Incident shows its "
                                          f"approvers in full: narrow the step's selection (modules, maxTargets)"))
        return Review(Outcome.DECIDE)
    rule = step.approval if step.approval and step.approval.required else None
    state = status.approval or ApprovalState(needed=rule.min_approvals if rule else 0)
    if state.plan_digest != digest:
        again = " (the plan changed: approvals given for the previous one no longer count)" if state.plan_digest else ""
        draft.note("plan:ready", f"{len(planned.changes)} changes, digest {digest}{again}", step.name)
        status.evidence = {**(status.evidence or {}), "plan": {
            "digest": digest, "dryRun": "accepted by the apiserver" if step.dry_run_first else "not dry-run",
            "changes": planned.changes, **({"report": planned.report} if planned.report is not None else {})}}
    state.plan_digest = digest
    status.approval = state
    if rule is None:
        return Review(Outcome.SAME)
    was = approved(status)
    now = datetime.now(timezone.utc)
    if not state.requested_at:
        state.requested_at = now_iso()
        state.deadline = (now + timedelta(seconds=guard.seconds(rule.timeout))).strftime("%Y-%m-%dT%H:%M:%SZ")
    ballots = [Ballot.of(a) for a in kube.list("Approval", draft.ref.namespace)
               if (a.get("spec") or {}).get("incident") == draft.ref.name
               and (a.get("spec") or {}).get("step") == step.name]
    creator = (draft.body["metadata"].get("annotations") or {}).get(CREATED_BY)
    check = admission
    vouched = check.verdict()
    if vouched.in_force:
        tally = weigh(rule, ballots, digest, creator, identity(), draft.body["metadata"]["uid"],
                      unvouched_until=check.unvouched_until)
        if tally.approved:
            vouched = check.verdict(max_age=ADMISSION_FRESH)  # never approve on an old answer
    if not vouched.in_force:
        tally = weigh(rule, ballots, digest, creator, identity(), draft.body["metadata"]["uid"],
                      unvouched=vouched.message)
    _audit_votes(draft, kube, step, state.votes, tally.votes)
    state.votes, state.missing, state.needed = tally.votes, tally.missing, rule.min_approvals
    state.approved = tally.approved
    state.approved_digest = digest if tally.approved else None
    if tally.approved and status.evidence:
        status.evidence.pop(ASKED_AGAIN, None)
    if tally.rejected is not None:
        status.state, status.reason = "Rejected", "Rejected"  # type: ignore[assignment]
        status.message = f"rejected by {tally.rejected.user} (Approval {tally.rejected.approval})"
        status.finished_at = now_iso()
        draft.count(metrics.APPROVALS.labels("rejected").inc)
        draft.note("step:Rejected", status.message, step.name)
        return Review(Outcome.DECIDE)
    deadline = datetime.fromisoformat(state.deadline.replace("Z", "+00:00")) if state.deadline else None
    if not tally.approved and deadline is not None and now >= deadline:
        status.state, status.reason = "Escalated", "ApprovalTimeout"  # type: ignore[assignment]
        status.message = f"no approval within {rule.timeout} (asked at {state.requested_at}): {tally.missing}"
        status.finished_at = now_iso()
        draft.condition("ApprovalExpired", "True", "ApprovalTimeout", f"step {step.name!r}: {status.message}")
        draft.count(metrics.APPROVALS.labels("expired").inc)
        draft.status.timeline.append(_record(draft, kube, step, "reliability-center", "expired", status.message))
        return Review(Outcome.DECIDE)
    if tally.approved and not was:
        draft.count(metrics.APPROVALS.labels("approved").inc)
        users = ", ".join(v.user for v in tally.votes if v.counted)
        draft.note("step:Approved", f"approved by {users} for plan {digest}", step.name)
    wake = min(REPLAN_EVERY, (deadline - now).total_seconds()) if deadline and not tally.approved else None
    return Review(Outcome.DECIDE if approved(status) != was else Outcome.SAME, wake)


def _plan(draft: Draft, kube: Kube, gateway: WriteGateway, runbook: Runbook, step: Step, status: StepStatus, facts: Facts,
          prometheus: MetricsSource | None = None) -> Planned | Result:
    """The step's planned change. By default its action runs against a shadow context (nothing
    written; each write dry-run on the apiserver when ``dryRunFirst``) on a scratch copy of its
    status; an action with its own ``plan`` (run-job: a real dry-run Job) runs that instead."""
    spec = REGISTRY[step.action]
    own = spec.plan is not None
    write = dataclasses.replace(draft.write_context(step.name, step.level, step.take_ownership),
                                shadow=draft.shadow or not own, server_dry_run=step.dry_run_first)
    scratch = status if own else status.model_copy(deep=True)
    ctx = ActionContext(gateway=gateway, read=kube, incident=draft.incident, write=write,
                        step=step, status=scratch, limits=runbook.spec.limits, facts=facts, action=step.action,
                        metrics=prometheus)
    try:
        params = resolve_params(spec.params, step, draft.incident)
        result = spec.plan(ctx, params) if spec.plan is not None else spec.run(ctx, params)
        for _ in range(PLAN_CALLS if not own else 0):
            if not isinstance(result, Running):
                break
            # The shadow context settles each wait at once: the next wave is planned too, on the
            # selection as it is now, so the approval covers every write the step will make.
            result = spec.run(ctx, params)
    except PolicyDenied as denied:
        draft.count(metrics.REFUSALS.labels(denied.verdict.reason).inc)  # once the status holding it is saved
        draft.status.timeline.append(denied.entry)
        status.state = "Blocked"
        return Escalate(denied.verdict.reason, f"{denied.verdict.message}; escalated to level 3: a human decides, "
                                               f"through a reviewed change")
    except TemplateError as exc:
        return Failed(exc.reason, str(exc)[:1024])
    except (Invalid, NotFound, ValidationError) as exc:
        return Failed("DryRunRefused", f"the apiserver refused the planned change: {str(exc)[:900]}")
    if own:
        draft.status.timeline.extend(ctx.entries)  # the dry-run Job is a real write, audited as one
        status.targets += [t for t in ctx.touched if t not in status.targets]
    if isinstance(result, Running) and not own:
        return Failed("PlanTooLong", f"the step still had writes to make after {PLAN_CALLS} planned waves: "
                                     f"its plan cannot be shown whole")
    if isinstance(result, (Running, Planned, Failed, Escalate, Skipped)):
        return result
    return Planned(ctx.changes)


def _ended(draft: Draft, step: Step, status: StepStatus, result: Result) -> None:
    """Planning ended the step: refused by policy (Blocked), refused by the apiserver, nothing to do."""
    if isinstance(result, Escalate):
        status.state = "Blocked" if status.state == "Blocked" else "Escalated"  # type: ignore[assignment]
    elif isinstance(result, Skipped):
        status.state = "Skipped"
    else:
        status.state = "Failed"
    status.reason, status.message, status.finished_at = result.reason, result.message, now_iso()  # type: ignore[union-attr]
    draft.count(metrics.STEP_RESULTS.labels(step.action, str(step.level), status.state).inc)
    draft.note(f"step:{status.state}", status.message, step.name)


def _audit_votes(draft: Draft, kube: Kube, step: Step, before: list[Vote], now: list[Vote]) -> None:
    """Each vote, once per verdict on it: counted, or not with why (the timeline, an Event, a log line)."""
    seen = {(v.approval, v.counted, v.reason) for v in before}
    for vote in now:
        if (vote.approval, vote.counted, vote.reason) in seen:
            continue
        if vote.decision == "Reject" and vote.counted:
            outcome, message = "rejected", "rejected the step"
        elif vote.counted:
            outcome, message = "counted", f"approval counted ({vote.approval})"
        else:
            outcome, message = "not-counted", f"approval {vote.approval} not counted: {vote.reason}"
            draft.count(metrics.APPROVALS.labels("not-counted").inc)
        draft.status.timeline.append(_record(draft, kube, step, vote.user, outcome, message, vote.approval))


def _record(draft: Draft, kube: Kube, step: Step, actor: str, outcome: str, message: str, approval: str | None = None) -> Any:
    target = f"Approval/{draft.ref.namespace}/{approval}" if approval else f"Incident/{draft.ref.namespace}/{draft.ref.name}"
    record = audit.AuditRecord(draft.status.trace_id or "", draft.incident.spec.tenant, actor, "approval", target,
                               step.name, None, None, outcome, message)
    return audit.emit(kube, draft.body, record, durable=not draft.shadow)
