"""Audit records: one per write, in three places — the Incident timeline, a Kubernetes Event, a JSON log line."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from reliability_center.api.common import now_iso, now_micro
from reliability_center.api.incident import TimelineEntry
from reliability_center.gateway.kube import Conflict, Kube

log = logging.getLogger("reliability_center.audit")


@dataclass(frozen=True)
class AuditRecord:
    trace_id: str
    tenant: str
    actor: str
    action: str
    target: str
    step: str
    before_digest: str | None
    after_digest: str | None
    outcome: str  # applied, dry-run, unchanged, restored, conflict, denied, created
    message: str = ""

    def timeline(self) -> TimelineEntry:
        return TimelineEntry(
            time=now_iso(), event=f"{self.action}:{self.outcome}", message=self.message, step=self.step,
            actor=self.actor, target=self.target, before_digest=self.before_digest, after_digest=self.after_digest,
        )

    def fields(self) -> dict[str, Any]:
        return {
            "traceId": self.trace_id, "tenant": self.tenant, "actor": self.actor, "action": self.action,
            "target": self.target, "step": self.step, "before": self.before_digest, "after": self.after_digest,
            "outcome": self.outcome,
        }


def emit(kube: Kube, incident: dict[str, Any], record: AuditRecord) -> TimelineEntry:
    """Log and post the Event; return the timeline entry the caller stores with the step's state."""
    log.info("audit %s %s %s", record.action, record.outcome, record.target, extra={"audit": record.fields()})
    meta = incident["metadata"]
    # A deterministic name makes the Event exactly-once when a step is retried after a crash.
    # "exists" is the retry of a "created": the same write, so the same Event.
    outcome = {"exists": "created"}.get(record.outcome, record.outcome)
    key = "|".join([meta["uid"], record.step, record.action, record.target, outcome, record.after_digest or ""])
    name = f"{meta['name']}.{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": {"reliability.center/trace-id": record.trace_id[:63]}},
        "involvedObject": {"apiVersion": incident["apiVersion"], "kind": "Incident", "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"]},
        "reason": "Audit" if record.outcome not in ("denied", "conflict") else "AuditRefused",
        "message": (f"traceId={record.trace_id} tenant={record.tenant} actor={record.actor} action={record.action} "
                    f"target={record.target} outcome={record.outcome} before={record.before_digest} "
                    f"after={record.after_digest} {record.message}")[:1024],
        "type": "Normal" if record.outcome not in ("denied", "conflict") else "Warning",
        "source": {"component": "reliability-center", **({"host": kube.identity} if kube.identity else {})},
        "reportingComponent": "reliability-center",
        "reportingInstance": kube.identity or "reliability-center",
        "eventTime": now_micro(),
        "action": record.action[:128],
        "firstTimestamp": now_iso(),
        "lastTimestamp": now_iso(),
        "count": 1,
    }
    try:
        kube.create(event)
    except Conflict:
        pass  # already posted by an earlier attempt
    return record.timeline()
