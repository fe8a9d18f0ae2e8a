"""The Incident's status as one turn builds it, and its one write at the turn's end (``Draft.flush``).

Owns no phase: each phase module (``start``, ``govern``, ``mitigate``, ``restore``,
``follow_plans``, ``close``) is handed the Draft and the few clients it needs, and
changes the status through these helpers: a condition, a timeline line, a phase, a
person's act (a durable audit record), a metric counted only once the status holding
its decision is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from reliability_center.api.common import now_iso, set_condition
from reliability_center.api.incident import RESOLVED_BY, TIMELINE_LIMIT, Incident, IncidentStatus, TimelineEntry
from reliability_center.engine.progress import highest_level, news
from reliability_center.gateway import Kube, Ref, WriteContext, audit, records
from reliability_center.gateway.kube import Conflict, NotFound
from reliability_center.operator import metrics
from reliability_center.operator.workqueue import Echoes


def seconds_since(moment: str) -> float:
    return (datetime.now(timezone.utc) - datetime.fromisoformat(moment.replace("Z", "+00:00"))).total_seconds()


class Stale(Exception):
    """The Incident changed under us: read it again and take another turn."""


class Draft:
    """One Incident as read, and the status this turn is building for it."""

    def __init__(self, kube: Kube, echoes: Echoes, body: dict[str, Any]):
        self.kube = kube
        self.echoes = echoes
        self.body = body
        self.incident = Incident.model_validate(body)
        self.status = self.incident.status or IncidentStatus()
        self.ref = Ref("Incident", body["metadata"]["namespace"], body["metadata"]["name"])
        self.rv = body["metadata"].get("resourceVersion")
        self.generation = body["metadata"].get("generation")
        self.seen = self.status.model_dump()
        """The status as read: a turn that changed nothing writes nothing."""
        self.decided: list[Callable[[], None]] = []
        """Metrics of this turn's decisions, recorded once the status holding them is saved."""

    @property
    def shadow(self) -> bool:
        return self.status.mode == "shadow"

    def changed(self) -> bool:
        """Anything new to write (a step only polled again, its attempts counted and nothing else, is not)."""
        return news(self.seen, self.status.model_dump())

    def flush(self) -> None:
        """The turn's one status write, at its end, when there is news (or a reported failure to clear).

        Phases change the Draft and write nothing of the status themselves: no status write has to
        precede an effect the turn makes outside the Incident (see ``operator/runner.py``), so a turn
        that walks three steps to Mitigated patches the status once, not once per step.
        """
        if self.changed() or self.failure_reported():
            self.save()

    def failure_reported(self) -> bool:
        """A turn failed and said so (Reconciling True): the next one that completes clears it."""
        return any(c.type == "Reconciling" and c.status == "True" for c in self.status.conditions)

    def checkpoint(self) -> tuple[IncidentStatus, int]:
        """The status and the metrics as they are now, to go back to (``rollback``)."""
        return self.status.model_copy(deep=True), len(self.decided)

    def rollback(self, checkpoint: tuple[IncidentStatus, int]) -> None:
        self.status = checkpoint[0]
        del self.decided[checkpoint[1]:]

    def condition(self, type_: str, status: str, reason: str, message: str = "") -> None:
        self.status.conditions = set_condition(self.status.conditions, type_, status, reason, message,  # type: ignore[arg-type]
                                               self.generation)

    def note(self, event: str, message: str = "", step: str | None = None) -> None:
        self.status.timeline.append(TimelineEntry(time=now_iso(), event=event, message=message[:1024], step=step))

    def count(self, record: Callable[[], None]) -> None:
        """A metric of a decision (a phase, a step's result, a gate): recorded when the status that holds
        the decision is saved, so a turn redone after a conflict does not count it twice."""
        self.decided.append(record)

    def phase(self, phase: str) -> None:
        if self.shadow and phase in ("Mitigated", "Escalated"):
            phase = "Shadowed"  # nothing was changed: it would have been mitigated or escalated
        if self.status.phase != phase:
            self.status.phase = phase  # type: ignore[assignment]
            category = self.incident.spec.category
            self.count(metrics.INCIDENT_PHASES.labels(category, phase).inc)
            self.note(f"phase:{phase}")
            since = {"Mitigated": metrics.TIME_TO_MITIGATE, "Closed": metrics.TIME_TO_CLOSE}.get(phase)
            if since is not None and self.status.times.detected:
                seconds = seconds_since(self.status.times.detected)
                self.count(lambda: since.labels(category).observe(seconds))

    def save(self) -> None:
        self.status.timeline = self.status.timeline[-TIMELINE_LIMIT:]
        self.status.level = highest_level(self.status.steps)
        self.status.observed_generation = self.generation
        if self.failure_reported():
            self.condition("Reconciling", "False", "Succeeded", "the last turn completed")
        wire = self.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        try:
            updated = records.patch_status(self.kube, self.ref, wire, self.rv)
        except (Conflict, NotFound) as exc:
            raise Stale(str(exc)) from None
        self.rv = updated["metadata"]["resourceVersion"]
        self.echoes.wrote(updated["metadata"]["uid"], self.rv)
        self.body = {**self.body, "metadata": updated["metadata"]}
        self.seen = self.status.model_dump()
        for record in self.decided:
            record()
        self.decided.clear()

    def act(self, actor: str, action: str, target: str, outcome: str, message: str) -> None:
        """A person's act on the incident (its resolve, a merge, a rollback request), by whom the apiserver
        or the forge says: a durable audit record, not only a timeline entry (the timeline keeps 100)."""
        record = audit.AuditRecord(self.status.trace_id or "", self.incident.spec.tenant, actor, action, target, "",
                                   None, None, outcome, message[:1024])
        self.status.timeline.append(audit.emit(self.kube, self.body, record, durable=not self.shadow))

    def mark_resolved(self) -> None:
        """Resolved from now (once): when, and who turned ``spec.resolved`` true, as admission stamped it."""
        if self.status.times.resolved:
            return
        self.status.times.resolved = now_iso()
        who = (self.body["metadata"].get("annotations") or {}).get(RESOLVED_BY)
        self.act(who or "unknown", "resolve", str(self.ref), "resolved",
                 f"spec.resolved set by {who}" if who else
                 f"spec.resolved set; by whom is unknown: no {RESOLVED_BY} annotation (the admission policy "
                 "reliability-center-incident-resolver that stamps it is not installed)")

    def write_context(self, step: str, level: int, take_ownership: bool = False) -> WriteContext:
        return WriteContext(incident=self.body, trace_id=self.status.trace_id or "", tenant=self.incident.spec.tenant,
                            step=step, level=level, shadow=self.shadow, take_ownership=take_ownership)
