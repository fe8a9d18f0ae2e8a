"""The step state machine: given an Incident's status and its Runbook, what happens next.

Steps run in runbook order, one at a time. Level 1 runs at once; level 2 waits
for an approval and a window when the runbook asks for them; level 3 opens a
PatchPlan (or hands over to a human) and never touches the cluster itself.
A step refused by policy (protected data, another incident's hold) is Blocked:
the incident escalates, as the seed sends such changes to level 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reliability_center.api.incident import Incident, IncidentStatus, StepStatus
from reliability_center.api.runbook import Runbook, Step

#: States after which the walk moves on to the next step.
DONE = frozenset({"Succeeded", "Skipped", "Shadowed", "Escalated", "Blocked"})
#: States that hand the incident to a human: it ends Escalated, not Mitigated.
ESCALATING = frozenset({"Escalated", "Blocked"})
#: States that count as a failure for ``onFailure``.
FAILED = frozenset({"Failed"})


@dataclass(frozen=True)
class RunStep:
    index: int


@dataclass(frozen=True)
class AwaitStep:
    """The step cannot run yet (approval, window): record why, and wait for the Incident to change
    (or, for a window, ``wake_in`` seconds)."""

    index: int
    state: str  # AwaitingApproval
    reason: str
    message: str
    wake_in: float | None = None


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


def seconds_until(start: str, now: str) -> float:
    """Seconds from ``now`` to the next time the clock reads ``start`` (HH:MM, UTC)."""
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    hour, minute = map(int, start.split(":"))
    opens = moment.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if opens <= moment:
        opens += timedelta(days=1)
    return (opens - moment).total_seconds()


def _gate_governed(step: Step, index: int, incident: Incident, now: str) -> Decision:
    approval = step.approval
    if approval and approval.required and step.name not in incident.spec.approvals:
        who = f" by one of {', '.join(approval.approvers)}" if approval.approvers else ""
        return AwaitStep(index, "AwaitingApproval", "ApprovalRequired",
                         f"level 2 step {step.name!r} needs approval{who}: relctl approve {step.name}")
    if approval and approval.window and not in_window(approval.window.start, approval.window.end, now):
        return AwaitStep(index, "AwaitingApproval", "OutsideWindow",
                         f"step {step.name!r} may run between {approval.window.start} and {approval.window.end} UTC",
                         wake_in=seconds_until(approval.window.start, now))
    return RunStep(index)


def condition_is(status: IncidentStatus, type_: str, value: str) -> bool:
    return any(c.type == type_ and c.status == value for c in status.conditions)


def next_decision(incident: Incident, runbook: Runbook, status: IncidentStatus, now: str,
                  restorable: set[str] | None = None) -> Decision:
    """The one thing to do next for this Incident.

    ``restorable``: the steps that hold snapshots (read from the cluster when resolved).
    """
    steps = status.steps
    if incident.spec.resolved:
        return _next_restore(steps, restorable or set())
    if condition_is(status, "Admitted", "False"):
        refusal = next(c for c in status.conditions if c.type == "Admitted")
        return Finish("Escalated", refusal.reason, refusal.message)
    by_name = {s.name: s for s in runbook.spec.steps}
    for index, state in enumerate(steps):
        step = by_name.get(state.name)
        if step is None or state.state in DONE:
            continue  # (a step the pinned runbook lacks cannot run: only incidents from before pinning)
        if state.state in FAILED:
            if step.on_failure == "continue":
                continue
            if step.on_failure == "escalate":
                return Finish("Escalated", "StepFailed", f"step {step.name!r} failed: {state.message}")
            return Finish("Failed", "StepFailed", f"step {step.name!r} failed: {state.message}")
        if step.level == 2:
            return _gate_governed(step, index, incident, now)
        return RunStep(index)
    return _settled(steps)


def _settled(steps: list[StepStatus]) -> Finish:
    blocked = next((s for s in steps if s.state == "Blocked"), None)
    if blocked is not None:
        return Finish("Escalated", blocked.reason or "Blocked",
                      f"step {blocked.name!r} was refused by policy; a human takes over: {blocked.message}")
    escalated = next((s for s in steps if s.state == "Escalated"), None)
    if escalated is not None:
        return Finish("Escalated", escalated.reason or "EscalatedToHuman",
                      escalated.message or f"a level {escalated.level} step handed the incident to a human")
    return Finish("Mitigated", "AllStepsDone", "every step ran")


def waiting_phase(steps: list[StepStatus]) -> Finish | None:
    """Where the incident stands while a later step waits: once level 1 is done, Mitigated,
    or Escalated (with the reason) if a step escalated."""
    level1 = [s for s in steps if s.level == 1]
    if any(s.state in ("Pending", "Running") for s in level1):
        return None
    settled = _settled(steps)
    return Finish("Mitigated", "LevelOneDone", "level 1 ran; a later step waits") if settled.phase == "Mitigated" \
        else settled


def _next_restore(steps: list[StepStatus], restorable: set[str]) -> Decision:
    # Restore in reverse order, the way a stack of changes is unwound; a step's state does not
    # matter (a step that failed half-way holds its first writes all the same).
    for index in range(len(steps) - 1, -1, -1):
        if steps[index].state != "Restored" and steps[index].name in restorable:
            return RestoreStep(index)
    return Finish("Verifying", "Restored", "level 1 and 2 changes restored from their snapshots")


def highest_level(steps: list[StepStatus]) -> int | None:
    acted = [s.level for s in steps if s.state in DONE - {"Skipped"} or s.state in {"AwaitingApproval", "Restored"}]
    return max(acted) if acted else None
