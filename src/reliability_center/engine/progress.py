"""The step state machine: given an Incident's status and its Runbook, what happens next.

Steps run in runbook order, one at a time. Level 1 runs at once; level 2 waits
for an approval and a window when the runbook asks for them; level 3 opens a
PatchPlan (or hands over to a human) and never touches the cluster itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reliability_center.api.incident import Incident, IncidentStatus, StepStatus
from reliability_center.api.runbook import Runbook, Step

#: States after which the walk moves on to the next step.
DONE = frozenset({"Succeeded", "Skipped", "Shadowed", "Escalated"})
#: States that count as a failure for ``onFailure``.
FAILED = frozenset({"Failed", "Blocked"})
#: Level 1 and 2 writes are reversible; these states hold a change to restore on resolution.
RESTORABLE = frozenset({"Succeeded"})


@dataclass(frozen=True)
class RunStep:
    index: int


@dataclass(frozen=True)
class AwaitStep:
    """The step cannot run yet (approval, window): record why, and wait for the Incident to change."""

    index: int
    state: str  # AwaitingApproval
    reason: str
    message: str


@dataclass(frozen=True)
class RestoreStep:
    index: int


@dataclass(frozen=True)
class Finish:
    phase: str
    reason: str
    message: str = ""


Decision = RunStep | AwaitStep | RestoreStep | Finish


def in_window(start: str, end: str, now: str) -> bool:
    clock = datetime.fromisoformat(now.replace("Z", "+00:00")).strftime("%H:%M")
    if start <= end:
        return start <= clock < end
    return clock >= start or clock < end  # a window across midnight


def _gate_governed(step: Step, index: int, incident: Incident, now: str) -> Decision:
    approval = step.approval
    if approval and approval.required and step.name not in incident.spec.approvals:
        who = f" by one of {', '.join(approval.approvers)}" if approval.approvers else ""
        return AwaitStep(index, "AwaitingApproval", "ApprovalRequired",
                         f"level 2 step {step.name!r} needs approval{who}: relctl approve {step.name}")
    if approval and approval.window and not in_window(approval.window.start, approval.window.end, now):
        return AwaitStep(index, "AwaitingApproval", "OutsideWindow",
                         f"step {step.name!r} may run between {approval.window.start} and {approval.window.end} UTC")
    return RunStep(index)


def condition_is(status: IncidentStatus, type_: str, value: str) -> bool:
    return any(c.type == type_ and c.status == value for c in status.conditions)


def next_decision(incident: Incident, runbook: Runbook, status: IncidentStatus, now: str) -> Decision:
    """The one thing to do next for this Incident."""
    steps = status.steps
    if incident.spec.resolved:
        return _next_restore(steps)
    if condition_is(status, "Admitted", "False"):
        refusal = next(c for c in status.conditions if c.type == "Admitted")
        return Finish("Escalated", refusal.reason, refusal.message)
    by_name = {s.name: s for s in runbook.spec.steps}
    escalated = False
    for index, status in enumerate(steps):
        step = by_name[status.name]
        if status.state in DONE:
            escalated = escalated or status.state == "Escalated"
            continue
        if status.state in FAILED:
            if step.on_failure == "continue":
                continue
            if step.on_failure == "escalate":
                return Finish("Escalated", "StepFailed", f"step {step.name!r} failed: {status.message}")
            return Finish("Failed", "StepFailed", f"step {step.name!r} failed: {status.message}")
        if step.level == 2:
            return _gate_governed(step, index, incident, now)
        return RunStep(index)
    if escalated:
        return Finish("Escalated", "EscalatedToHuman", "a level 3 step handed the incident to a human")
    return Finish("Mitigated", "AllStepsDone", "every step ran")


def _next_restore(steps: list[StepStatus]) -> Decision:
    # Restore in reverse order, the way a stack of changes is unwound.
    for index in range(len(steps) - 1, -1, -1):
        status = steps[index]
        if status.state in RESTORABLE and status.level in (1, 2) and status.snapshots:
            return RestoreStep(index)
    return Finish("Verifying", "Restored", "level 1 and 2 changes restored from their snapshots")


def highest_level(steps: list[StepStatus]) -> int | None:
    acted = [s.level for s in steps if s.state in DONE - {"Skipped"} or s.state in {"AwaitingApproval", "Restored"}]
    return max(acted) if acted else None


def window_opened(runbook: Runbook, steps: list[StepStatus], now: str) -> str | None:
    """The step waiting for its window whose window is open now, if any (a wake-up is due)."""
    by_name = {s.name: s for s in runbook.spec.steps}
    for status in steps:
        step = by_name.get(status.name)
        if status.state != "AwaitingApproval" or status.reason != "OutsideWindow" or step is None:
            continue
        window = step.approval.window if step.approval else None
        if window and in_window(window.start, window.end, now):
            return status.name
    return None
