"""Phase: Mitigating, one step. Runs (or continues) one step's action through the gateway and
writes its result into the step's status: its writes, snapshots and targets, what its selection
left out, an approved step's move outside its plan, a write an Argo CD self-heal may undo."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from reliability_center.actions import REGISTRY
from reliability_center.actions.base import (ActionContext, Escalate, Failed, MetricsSource, OutsidePlan, Running,
                                             Skipped, Succeeded, resolve_params)
from reliability_center.api.common import now_iso
from reliability_center.api.incident import ApprovalState, StepStatus
from reliability_center.api.runbook import Runbook, Step
from reliability_center.engine.approvals import ASKED_AGAIN, ask_again, planned_targets
from reliability_center.engine.plan import Facts
from reliability_center.engine.templates import TemplateError
from reliability_center.gateway import Kube, PolicyDenied, Ref, WriteGateway
from reliability_center.gateway.kube import KINDS, Invalid, NotFound
from reliability_center.gateway.tracking import ARGO_NAMESPACE
from reliability_center.gitops import argocd
from reliability_center.operator import checks, metrics
from reliability_center.operator.draft import Draft, seconds_since
from reliability_center.operator.workqueue import Wakes
from reliability_center.policy import limits as guard
from reliability_center.policy.writes import Verdict


def planned_of(status: StepStatus) -> dict[str, Any]:
    """The plan a governed step showed its approvers: kept in its evidence once it runs."""
    return {k: v for k, v in (status.evidence or {}).items() if k == "plan"}


def run_step(draft: Draft, runbook: Runbook, index: int, facts: Facts, *, kube: Kube, gateway: WriteGateway,
             wakes: Wakes, prometheus: MetricsSource | None = None, admitted: Callable[[], None] | None = None) -> float:
    """Run (or continue) one step; returns the seconds to wait before calling it again (0: go on).
    ``admitted``: the gate its writes wait on while the incident's guards are counted (its first step)."""
    status = draft.status.steps[index]
    step = next(s for s in runbook.spec.steps if s.name == status.name)
    spec = REGISTRY[step.action]
    now = now_iso()
    if status.state in ("Pending", "AwaitingApproval"):
        status.state, status.started_at, status.reason = "Running", status.started_at or now, ""
        draft.note("step:started", f"{step.action} (level {step.level})", step.name)
    status.attempts += 1
    write = draft.write_context(step.name, step.level, step.take_ownership)
    # An approved step writes only what its approved plan shows: a target outside it asks again.
    approved = planned_targets((status.evidence or {}).get("plan")) if step.approval and step.approval.required \
        else None
    ctx = ActionContext(gateway=gateway, read=kube, incident=draft.incident, write=write,
                        step=step, status=status, limits=runbook.spec.limits, facts=facts, action=step.action,
                        approved=approved, metrics=prometheus, admitted=admitted)
    clock = datetime.now(timezone.utc)
    wait = 0.0
    try:
        params = resolve_params(spec.params, step, draft.incident)
        result = checks.checked(ctx, lambda: spec.run(ctx, params))
    except TemplateError as exc:
        result = Failed(exc.reason, str(exc)[:1024])
    except PolicyDenied as denied:
        # Refused by policy (protected data, another incident's hold): a human takes over.
        ctx.entries.append(denied.entry)
        draft.count(metrics.REFUSALS.labels(denied.verdict.reason).inc)
        result = Escalate(denied.verdict.reason, denied.verdict.message)
        status.state = "Blocked"
    except (Invalid, NotFound, ValidationError) as exc:
        result = Failed("InvalidChange", str(exc)[:1024])
    except OutsidePlan as outside:
        # The writes before it (in the plan) were made: kept as any step's are.
        draft.status.timeline.extend(ctx.entries)
        status.snapshots += [s for s in ctx.snapshots if s not in status.snapshots]
        draft.status.snapshots += [s for s in ctx.snapshots if s not in draft.status.snapshots]
        status.targets += [t for t in ctx.touched if t not in status.targets]
        plan_moved(draft, step, status, outside.target)
        return 0.0
    took = (datetime.now(timezone.utc) - clock).total_seconds()
    draft.count(lambda: metrics.STEP_SECONDS.labels(step.action).observe(took))
    if ctx.left_out:
        ctx.admit()  # their refusals are audited: written, so admitted first
    report_left_out(gateway, ctx, status)
    draft.status.timeline.extend(ctx.entries)
    for entry in ctx.entries:
        outcome = (entry.event or ":").split(":", 1)[1]
        draft.count(metrics.WRITES.labels(step.action, outcome).inc)
        if outcome in ("applied", "created", "proposed") and not draft.status.times.first_action:
            draft.status.times.first_action = entry.time
            if draft.status.times.detected:
                seconds = seconds_since(draft.status.times.detected)
                draft.count(lambda: metrics.TIME_TO_FIRST_ACTION.labels(draft.incident.spec.category).observe(
                    seconds))
    warn_self_heal(draft, kube, ctx)
    status.snapshots += [s for s in ctx.snapshots if s not in status.snapshots]
    draft.status.snapshots += [s for s in ctx.snapshots if s not in draft.status.snapshots]
    status.targets += [t for t in ctx.touched if t not in status.targets]
    if isinstance(result, Succeeded):
        status.state = "Shadowed" if draft.shadow else "Succeeded"
        status.message, status.finished_at = result.message, now_iso()
        status.evidence = {**planned_of(status), **(result.evidence or {})}
    elif isinstance(result, Running):
        status.message = result.message
        status.evidence = {**planned_of(status), **result.evidence} if result.evidence else status.evidence
        wait = result.retry_after
        for target in result.wake_on:
            wakes.wait_on(target, (draft.ref.namespace, draft.ref.name))
        if timed_out(step.timeout, status):
            status.state, status.reason = "Failed", "Timeout"
            status.message = f"did not finish within {step.timeout}: {result.message}"
            wait = 0.0
    elif isinstance(result, Skipped):
        status.state, status.reason, status.message = "Skipped", result.reason, result.message
        status.finished_at = now_iso()
    elif isinstance(result, Escalate):
        if status.state != "Blocked":
            status.state = "Escalated"
        status.reason, status.message, status.finished_at = result.reason, result.message, now_iso()
        draft.status.times.escalated = draft.status.times.escalated or now_iso()
        if step.action == "patch-plan":
            draft.status.patch_plans += [t.split("/")[-1] for t in ctx.touched
                                         if t.startswith("PatchPlan/") and t.split("/")[-1] not in draft.status.patch_plans]
    else:
        status.state = "Failed"
        status.reason, status.message, status.finished_at = result.reason, result.message, now_iso()
    if status.state != "Running":
        draft.count(metrics.STEP_RESULTS.labels(step.action, str(step.level), status.state).inc)
        draft.note(f"step:{status.state}", status.message, step.name)
    # Written with the rest of the turn (``Draft.flush``); a step only polled again (nothing new) is not.
    return wait


def plan_moved(draft: Draft, step: Step, status: StepStatus, target: str) -> None:
    """The approved step reached a write its plan did not show: back to AwaitingApproval, its rest planned
    again (``govern.review``, next in this turn) and approved again."""
    state = status.approval or ApprovalState()
    why = ask_again(target, state.approved_digest)
    status.approval = ApprovalState(needed=state.needed)  # no plan, no votes: review plans the rest afresh
    status.evidence = {**(status.evidence or {}), ASKED_AGAIN: why}
    status.state, status.reason, status.message = "AwaitingApproval", "PlanChanged", why  # type: ignore[assignment]
    draft.note("plan:changed", why, step.name)
    draft.condition("AwaitingApproval", "True", "PlanChanged", f"step {step.name!r}: {why}")


def warn_self_heal(draft: Draft, kube: Kube, ctx: ActionContext) -> None:
    """A write on an object an Argo CD Application syncs, without what lets it hold (gitops/argocd.py):
    said in a condition and the timeline, not refused (the change is made; self-heal may undo it)."""
    written = {e.target for e in ctx.entries if e.target and (e.event or "").endswith((":applied", ":created"))}
    for target in sorted(written):
        kind, namespace, name = target.split("/", 2)
        if kind not in KINDS:
            continue
        # Which Application tracks the object (its tracking annotation or instance label) is not what a step
        # writes: the object as the step listed it just before its write says it, without a read of it again
        # (a shared flags store in a storm: a round trip and the whole object encoded again, per step).
        obj = ctx.planned_on.get(target) or kube.get(Ref(kind, namespace, name))
        problem = argocd.check(kube, obj, ARGO_NAMESPACE) if obj else None
        if problem:
            draft.condition("SelfHealSafe", "False", "IgnoreDifferencesMissing", problem)
            draft.note("argocd:will-revert", problem, ctx.step.name)


def report_left_out(gateway: WriteGateway, ctx: ActionContext, status: StepStatus) -> None:
    """Targets the step's selection matched but may not write: in its status, and audited once each."""
    for target, why in ctx.left_out.items():
        line = f"{target}: {why}"
        if line in status.left_out or len(status.left_out) >= 200:
            continue
        status.left_out.append(line)
        ctx.entries.append(gateway.refuse(
            ctx.write, ctx.action, target, Verdict(False, "TenantScope", f"left out: {why}")))


def timed_out(timeout: str, status: StepStatus) -> bool:
    if not status.started_at:
        return False
    started = datetime.fromisoformat(status.started_at.replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - started).total_seconds() > guard.seconds(timeout)
