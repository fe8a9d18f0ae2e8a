"""Kopf handlers for Incidents: every event reconciles the Incident (level-triggered, idempotent)."""

from __future__ import annotations

from typing import Any

import kopf

from reliability_center.operator.context import runner


@kopf.on.event("reliability.center", "v1alpha1", "incidents")
def on_incident(body: kopf.Body, type: str | None, runbook_index: kopf.Index, **_: Any) -> None:
    if type == "DELETED":
        return
    runbooks = [rb for values in runbook_index.values() for rb in values]
    runner().reconcile(dict(body), runbooks)
