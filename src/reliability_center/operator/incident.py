"""Kopf glue for Incidents: every event queues the Incident; the queue's passes reconcile it.

Reconciling is level-triggered and idempotent (``operator/runner.py``); a pass
returns when it wants another look, and the queue (``operator/workqueue.py``)
comes back then: for a rollout to settle, a window to open, a retry's backoff.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from reliability_center.gateway import Ref
from reliability_center.gateway.kube import describe, transient
from reliability_center.operator import context, metrics
from reliability_center.operator.settings import SETTINGS_CONFIGMAP
from reliability_center.operator.workqueue import Key, Retry, WorkQueue

log = logging.getLogger("reliability_center.incident")
#: Seconds before a pass that could not read its Incident (the apiserver away) tries again.
READ_RETRY = 1.0

RUNBOOKS: dict[str, kopf.Index] = {}
"""The runbook index, as Kopf passes it to handlers (a live view kept by the watch)."""
SETTINGS: dict[str, kopf.Index] = {}
"""The namespaces' settings ConfigMaps (``namespace_settings``), as Kopf passes the index at startup."""

# The index functions here (and of Runbooks and PatchPlans) are async though they await nothing: Kopf runs
# a sync handler on its executor, a thread hop per index per event, and an Incident's three indexes run
# before ``on_incident`` queues it. They are pure and quick, so they run on the event loop.


@kopf.index("v1", "configmaps")
async def namespace_settings(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, str]]:
    """Each served namespace's reliability-center-settings (SAFE_MODE, mode, the GitOps repository), kept by
    the watch, so that a turn reads them without a request. The watch asks the apiserver for that name only
    (``operator/main.py`` sets the field selector): the app's ConfigMaps never reach the operator this way."""
    return {namespace: dict(body.get("data") or {})} if name == SETTINGS_CONFIGMAP else {}


@kopf.index("reliability.center", "v1alpha1", "incidents")
async def unmatched_incidents(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[None, Key]:
    """Incidents that found no runbook: matched again when a runbook becomes Ready."""
    return {} if status.get("runbook") else {None: (namespace, name)}  # {}, not None: None keeps the old entry


@kopf.index("reliability.center", "v1alpha1", "incidents")
async def incidents_by_phase(spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[tuple[str, str], None]:
    """What the reliability_center_incidents gauge counts at each scrape."""
    return {(str(spec.get("category") or ""), str(status.get("phase") or "Pending")): None}


@kopf.index("reliability.center", "v1alpha1", "incidents")
async def incident_pages(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], Any]:
    """What the paging series (metrics.PAGING) say of this incident; none once it is Closed (or deleted:
    Kopf drops it), so their labels stay bounded by the incidents open now."""
    samples = metrics.incident_samples(namespace, name, body)
    return {(namespace, name): samples} if samples else {}


@kopf.on.event("reliability.center", "v1alpha1", "incidents")
async def on_incident(body: kopf.Body, type: str | None, namespace: str, name: str, runbook_index: kopf.Index,
                      incidents_by_phase: kopf.Index, incident_pages: kopf.Index, **_: Any) -> None:
    RUNBOOKS["index"] = runbook_index
    metrics.INCIDENTS.index = incidents_by_phase
    metrics.PAGING.indexes["incidents"] = incident_pages
    if type == "DELETED":
        context.queue().forget((namespace, name))
        context.runner().forget(body.metadata.uid)
        return
    if context.runner().echoes.ours(body.metadata.uid, body.metadata.get("resourceVersion")):
        return  # the echo of our own status patch: nothing new to act on
    # A brand-new incident (no phase yet) goes before the passes of incidents that only wait.
    context.queue().add((namespace, name), dict(body), urgent=not (body.get("status") or {}).get("phase"))


@kopf.on.event("apps", "v1", "deployments")
@kopf.on.event("apps", "v1", "statefulsets")
async def on_workload(body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    """A change of a workload some incident's step waits on (a rollout): wake that incident."""
    queue = context.QUEUE
    if queue is None:
        return
    for key in context.runner().wakes.woken(f"{body['kind']}/{namespace}/{name}"):
        queue.add(key)


@kopf.on.event("reliability.center", "v1alpha1", "patchplans")
async def on_patchplan_of_incident(body: kopf.Body, namespace: str, **_: Any) -> None:
    """A PatchPlan moved (proposed, merged, verified, rolled back): its incident follows it."""
    if context.QUEUE is None:
        return
    for owner in body.metadata.get("ownerReferences") or []:
        if owner.get("kind") == "Incident":
            context.QUEUE.add((namespace, owner["name"]))


@kopf.on.event("reliability.center", "v1alpha1", "approvals")
async def on_approval(spec: kopf.Spec, namespace: str, type: str | None, **_: Any) -> None:
    """An approval or a rejection: its incident weighs it now rather than at its next planned look."""
    if context.QUEUE is None or type == "DELETED" or not spec.get("incident"):
        return
    context.QUEUE.add((namespace, str(spec["incident"])))


async def reconcile(key: Key, body: dict[str, Any] | None) -> float | None:
    """One pass: the runbooks and the namespace's settings are read here, on the event loop that updates them;
    the reconcile runs on a thread."""
    runbooks = [dict(rb) for values in RUNBOOKS["index"].values() for rb in values]
    settings = dict(next(iter(SETTINGS["index"].get(key[0], ())), {}))  # none: the namespace has no settings
    return await asyncio.get_running_loop().run_in_executor(context.executor(), _reconcile, key, body, runbooks,
                                                            settings)


def _reconcile(key: Key, body: dict[str, Any] | None, runbooks: list[dict[str, Any]],
               settings: dict[str, str]) -> float | None:
    if body is None:  # a timer's pass: the newest state is read
        try:
            body = context.kube().get(Ref("Incident", *key))
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("incident %s/%s: %s; reading it again in %ss", *key, describe(exc), READ_RETRY)
            return Retry(READ_RETRY)  # the apiserver is away: the next pass reads it again
        if body is None:
            return None
    return context.runner().reconcile(body, runbooks, settings)


@kopf.on.startup()
async def start_queue(namespace_settings: kopf.Index, **_: Any) -> None:
    SETTINGS["index"] = namespace_settings
    context.QUEUE = WorkQueue(reconcile, context.settings().watch.workers, context.gate())
    context.QUEUE.start()


@kopf.on.cleanup()
async def stop_queue(**_: Any) -> None:
    if context.QUEUE is not None:
        await context.QUEUE.stop()
