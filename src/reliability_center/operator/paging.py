"""Kopf glue for the paging series (operator/metrics.py ``PAGING``, read by
manifests/prometheus/paging-rules.yaml): an index of each open Incident's and each moving
PatchPlan's samples, which the collector reads at each scrape, and the leader gauge.

An object's entry goes when it is deleted (Kopf drops it from its indexes) or when it has no
samples (an Incident Closed, a PatchPlan done): the series' labels stay bounded by the objects open now.
"""

from __future__ import annotations

from typing import Any

import kopf

from reliability_center.operator import context, metrics

metrics.LEADER.set_function(lambda: 1.0 if context.leading() else 0.0)


@kopf.index("reliability.center", "v1alpha1", "incidents")
def incident_pages(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], Any]:
    samples = metrics.incident_samples(namespace, name, body)
    return {(namespace, name): samples} if samples else {}  # {}, not None: None keeps the old entry


@kopf.index("reliability.center", "v1alpha1", "patchplans")
def patchplan_pages(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], Any]:
    samples = metrics.patchplan_samples(namespace, name, body)
    return {(namespace, name): samples} if samples else {}


@kopf.on.event("reliability.center", "v1alpha1", "incidents")
async def read_incident_pages(incident_pages: kopf.Index, **_: Any) -> None:
    """Hands the live index to the collector (Kopf passes indexes to handlers only)."""
    metrics.PAGING.indexes["incidents"] = incident_pages


@kopf.on.event("reliability.center", "v1alpha1", "patchplans")
async def read_patchplan_pages(patchplan_pages: kopf.Index, **_: Any) -> None:
    metrics.PAGING.indexes["patchplans"] = patchplan_pages
