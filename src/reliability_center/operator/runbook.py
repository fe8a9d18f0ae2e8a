"""Kopf handlers for Runbooks: validate each one and say Ready or NotReady, with the reason."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from pydantic import ValidationError

from reliability_center.actions.validate import check_runbook
from reliability_center.api.common import Condition, set_condition
from reliability_center.api.runbook import RunbookSpec
from reliability_center.gateway import Ref, records
from reliability_center.gateway.kube import Conflict
from reliability_center.operator.context import elector, kube, leading, queue


def runbook_status(spec_body: dict[str, Any], status_body: dict[str, Any], generation: int | None) -> dict[str, Any]:
    """The status a Runbook should have (pure, apart from the registry lookup)."""
    conditions = [Condition.model_validate(c) for c in status_body.get("conditions") or []]
    try:
        spec = RunbookSpec.model_validate(spec_body)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        conditions = set_condition(conditions, "Ready", "False", "InvalidSpec", message, generation)
        return {"observedGeneration": generation, "conditions": [c.wire() for c in conditions]}
    problems = check_runbook(spec)
    if problems:
        message = "; ".join(p.message for p in problems)
        conditions = set_condition(conditions, "Ready", "False", problems[0].reason, message, generation)
    else:
        conditions = set_condition(conditions, "Ready", "True", "Validated",
                                   f"{len(spec.steps)} steps, levels {sorted({s.level for s in spec.steps})}",
                                   generation)
    return {"observedGeneration": generation, "steps": len(spec.steps),
            "maxLevel": max(s.level for s in spec.steps), "conditions": [c.wire() for c in conditions]}


@kopf.on.event("reliability.center", "v1alpha1", "runbooks")
async def on_runbook(body: kopf.Body, unmatched_incidents: kopf.Index, **_: Any) -> None:
    await report(dict(body), unmatched_incidents)


async def report(body: dict[str, Any], unmatched_incidents: kopf.Index) -> None:
    meta = body["metadata"]
    status = runbook_status(dict(body.get("spec") or {}), dict(body.get("status") or {}), meta.get("generation"))
    current = dict(body.get("status") or {})
    # Level-triggered: our own status patch comes back as an event and writes nothing more.
    # A standby writes nothing; the leader reports on every Runbook when it takes over.
    if {k: current.get(k) for k in status} != status and leading():
        try:  # on the Runbook as this event saw it; a newer one brings its own event
            await asyncio.to_thread(records.patch_status, kube(), Ref("Runbook", None, meta["name"]), status,
                                    meta["resourceVersion"])
        except Conflict:
            return
    if _ready(status):
        # Incidents that found no runbook get another try, whoever wrote the Runbook's status: Runbooks
        # are cluster-wide, and an operator sharded on other namespaces may have reported it Ready first
        # (the index holds only this operator's namespaces). A pass that still finds none writes nothing.
        for key in list(unmatched_incidents.get(None, [])):
            queue().add(key)


def _ready(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


@kopf.on.startup()
async def catch_up_when_leading(runbook_index: kopf.Index, unmatched_incidents: kopf.Index, **_: Any) -> None:
    """A standby skipped the Runbooks' status: when it becomes the leader, it reports on them all."""
    election = elector()
    if election is None:
        return

    async def catch_up() -> None:
        for values in list(runbook_index.values()):
            for body in list(values):
                await report(dict(body), unmatched_incidents)

    election.on_lead.append(catch_up)


@kopf.index("reliability.center", "v1alpha1", "runbooks")
async def runbook_index(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """In-memory view of every Runbook (kept by the watch), so matching needs no API call."""
    return {name: {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": dict(body["metadata"]),
                   "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}}
