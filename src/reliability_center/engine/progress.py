"""The step state machine: given an Incident's status and its Runbook, what happens next.

Steps run in runbook order, one at a time, each after the steps it waits for
(every earlier one unless it declares ``after``). Level 1 runs at once; level 2
waits for its approvals (``engine/approvals.py`` weighs them into the step's
status) and its window when the runbook asks for them; level 3 opens a
PatchPlan (or hands over to a human) and never touches the cluster itself.
A step refused by policy (protected data, another incident's hold) is Blocked:
the incident escalates, as the seed sends such changes to level 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any

from reliability_center.api.incident import Incident, IncidentStatus, StepStatus
from reliability_center.api.runbook import Freeze, Runbook, Step, Window, zone
from reliability_center.engine.approvals import ASKED_AGAIN

#: States after which the walk moves on to the next step.
DONE = frozenset({"Succeeded", "Skipped", "Shadowed", "Escalated", "Blocked"})
#: States that hand the incident to a human: it ends Escalated, not Mitigated.
ESCALATING = frozenset({"Escalated", "Blocked", "Rejected"})
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


#: How far ahead a closed window looks for its next opening (a year, and a few days of freeze beyond).
SEARCH_DAYS = 370
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def seconds_until(start: str, now: str) -> float:
    """Seconds from ``now`` to the next time the clock reads ``start`` (HH:MM, UTC); see ``window_state``."""
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    hour, minute = map(int, start.split(":"))
    opens = moment.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if opens <= moment:
        opens += timedelta(days=1)
    return (opens - moment).total_seconds()


def _occurrences(window: Window, moment: datetime, days: int) -> Iterator[tuple[datetime, datetime]]:
    """The window's [opens, closes) intervals in UTC, in order, from the one that began the day before ``moment``.

    Wall times are read in the window's zone: a time that a spring-forward skips is moved on
    by the gap (02:30 → 03:30), an ambiguous one at a fall-back means its first occurrence
    (what ``fold=0`` gives), so a window is 1 h shorter or longer on those nights.
    """
    tz = zone(window.timezone)
    start, end = (time.fromisoformat(window.start), time.fromisoformat(window.end))
    if start == end:
        return  # an empty window never opens (as before zones and days existed)
    first = moment.astimezone(tz).date() - timedelta(days=1)  # yesterday's window may cross midnight
    for offset in range(days + 2):
        day = first + timedelta(days=offset)
        if window.days and WEEKDAYS[day.weekday()] not in window.days:
            continue
        closing_day = day if start < end else day + timedelta(days=1)
        yield (datetime.combine(day, start, tz).astimezone(timezone.utc),
               datetime.combine(closing_day, end, tz).astimezone(timezone.utc))


def active_freeze(window: Window, moment: datetime) -> Freeze | None:
    return next((f for f in window.freeze if f.start <= moment < f.end), None)


def _next_open(window: Window, moment: datetime) -> datetime | None:
    """The first moment at or after ``moment`` inside an occurrence and outside every freeze."""
    for opens, closes in _occurrences(window, moment, SEARCH_DAYS):
        candidate = max(opens, moment)
        while (freeze := active_freeze(window, candidate)) is not None:
            candidate = freeze.end  # freezes may chain or overlap: step past each in turn
        if candidate < closes:
            return candidate
    return None


def next_opening(window: Window, now: str) -> datetime | None:
    """When the window next lets a step start (``now`` itself when open; None: not within SEARCH_DAYS), in UTC."""
    return _next_open(window, datetime.fromisoformat(now.replace("Z", "+00:00")).astimezone(timezone.utc))


def describe(window: Window) -> str:
    """'01:00–05:00 Europe/Paris on mon–fri'."""
    return f"{window.start}–{window.end} {window.timezone} {_days(window.days)}"


def _days(days: list[str]) -> str:
    chosen = sorted(set(days), key=WEEKDAYS.index)
    if not chosen or len(chosen) == 7:
        return "every day"
    runs: list[list[str]] = []
    for day in chosen:  # consecutive days (in week order) read as a range
        if runs and WEEKDAYS.index(day) == WEEKDAYS.index(runs[-1][-1]) + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return "on " + ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(r) for r in runs)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    days, rest = divmod(whole // 60, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n)


def window_state(window: Window, now: str) -> tuple[bool, float | None, str]:
    """(open now, seconds until it next opens — 0 when open, None if not within SEARCH_DAYS, why).

    Pure: ``now`` is given. Open means inside an occurrence of the window and outside every freeze.
    """
    moment = datetime.fromisoformat(now.replace("Z", "+00:00")).astimezone(timezone.utc)
    opens = _next_open(window, moment)
    why = f"may run {describe(window)}"
    freeze = active_freeze(window, moment)
    if freeze is not None:
        why += f"; frozen until {freeze.end.isoformat()} ({freeze.reason})"
    if opens == moment:
        return True, 0.0, why + "; open now"
    if opens is None:
        return False, None, why + f"; does not open in the next {SEARCH_DAYS} days"
    wake_in = (opens - moment).total_seconds()
    return False, wake_in, why + f"; opens in {_duration(wake_in)}"


def _gate_governed(step: Step, index: int, state: StepStatus, incident: Incident, now: str) -> Decision:
    approval = step.approval
    if approval and approval.required and not approved(state):
        again = str((state.evidence or {}).get(ASKED_AGAIN) or "")
        return AwaitStep(index, "AwaitingApproval", "PlanChanged" if again else "ApprovalRequired",
                         (f"asks again: {again}; " if again else "") +
                         f"level 2 step {step.name!r} {(state.approval.missing if state.approval else '') or 'needs approval'}: "
                         f"relctl approve {incident.metadata.name} {step.name} -n {incident.metadata.namespace}")
    window = approval.window if approval else None
    if window is not None:
        is_open, wake_in, why = window_state(window, now)
        if not is_open:
            frozen = active_freeze(window, datetime.fromisoformat(now.replace("Z", "+00:00")))
            return AwaitStep(index, "AwaitingApproval", "Frozen" if frozen else "OutsideWindow",
                             f"step {step.name!r} {why}", wake_in=wake_in)
    return RunStep(index)


def approved(state: StepStatus) -> bool:
    """Enough approvals, for the plan as it stands (a changed plan asks again)."""
    found = state.approval
    return bool(found and found.approved and found.approved_digest == found.plan_digest)


def _waits_for(step: Step, index: int, steps: list[StepStatus], by_name: dict[str, Step]) -> bool:
    """Is one of the steps this one waits for (``after``; every earlier one by default) not done yet?"""
    names = set(step.after) if step.after is not None else {s.name for s in steps[:index]}
    for other in steps[:index]:
        rule = by_name.get(other.name)
        if other.name not in names or rule is None:  # a step the pinned runbook lacks never runs: not waited for
            continue
        moved_on = other.state in ("Failed", "Rejected") and rule.on_failure == "continue"
        if other.state not in DONE and other.state != "Restored" and not moved_on:
            return True
    return False


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
    waiting: AwaitStep | None = None
    for index, state in enumerate(steps):
        step = by_name.get(state.name)
        if step is None or state.state in DONE:
            continue  # (a step the pinned runbook lacks cannot run: only incidents from before pinning)
        if state.state in FAILED or state.state == "Rejected":
            if step.on_failure == "continue":
                continue
            what = "was rejected" if state.state == "Rejected" else "failed"
            if step.on_failure == "escalate" or state.state == "Rejected":  # a human said no: a human takes over
                return Finish("Escalated", "StepRejected" if state.state == "Rejected" else "StepFailed",
                              f"step {step.name!r} {what}: {state.message}")
            return Finish("Failed", "StepFailed", f"step {step.name!r} failed: {state.message}")
        if _waits_for(step, index, steps, by_name):
            continue
        if step.level == 2 and state.state in ("Pending", "AwaitingApproval"):
            decision = _gate_governed(step, index, state, incident, now)
            if isinstance(decision, AwaitStep):
                waiting = waiting or decision  # a step that does not wait for it may run meanwhile
                continue
            return decision
        return RunStep(index)
    return waiting or _settled(steps)


def _settled(steps: list[StepStatus]) -> Finish:
    rejected = next((s for s in steps if s.state == "Rejected"), None)
    if rejected is not None:
        return Finish("Escalated", "StepRejected", f"step {rejected.name!r} was rejected: {rejected.message}")
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


def news(read: dict[str, Any], built: dict[str, Any]) -> bool:
    """Whether a turn's status (``built``, a dumped IncidentStatus) says anything the status as read does
    not: a step polled again counts one more attempt, which alone is not worth a write."""
    def without_attempts(status: dict[str, Any]) -> dict[str, Any]:
        return {**status, "steps": [{k: v for k, v in step.items() if k != "attempts"}
                                    for step in status.get("steps") or []]}

    return without_attempts(read) != without_attempts(built)
