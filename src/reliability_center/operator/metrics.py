"""Prometheus metrics of the operator (served on RC_METRICS_PORT). The intake's are in intake/metrics.py.

An incident's metrics (phases, step results and durations, writes, refusals, gates) are recorded when the
status that holds what they count is saved (``Draft.count``, operator/draft.py): a turn redone after a conflict
counts nothing twice, and a poll that changed nothing (not saved) is not a step call recorded anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

INCIDENT_PHASES = Counter("reliability_center_incident_phase_transitions_total",
                          "Incident phase transitions", ["category", "phase"])
STEP_RESULTS = Counter("reliability_center_step_results_total", "Step outcomes", ["action", "level", "state"])
STEP_SECONDS = Histogram("reliability_center_step_seconds", "Time a step call took", ["action"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
WRITES = Counter("reliability_center_gateway_writes_total", "Audited gateway writes", ["action", "outcome"])
REFUSALS = Counter("reliability_center_gateway_refusals_total", "Writes the gateway refused, by reason", ["reason"])
APPROVALS = Counter("reliability_center_approvals_total",
                    "Level 2 approval outcomes: approved (enough counted), rejected, expired, not-counted votes",
                    ["outcome"])
GATES = Counter("reliability_center_gate_results_total", "Post-repair gate verdicts that changed", ["gate", "passed"])

# The work queues' (operator/workqueue.py), with client-go's names, labels and buckets (10 ns to 10 s).
_QUEUE_BUCKETS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
QUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of workqueue", ["name"])
QUEUE_ADDS = Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ["name"])
QUEUE_LATENCY = Histogram("workqueue_queue_duration_seconds",
                          "How long in seconds an item stays in workqueue before being requested.", ["name"],
                          buckets=_QUEUE_BUCKETS)
QUEUE_WORK_DURATION = Histogram("workqueue_work_duration_seconds",
                                "How long in seconds processing an item from workqueue takes.", ["name"],
                                buckets=_QUEUE_BUCKETS)
QUEUE_RETRIES = Counter("workqueue_retries_total", "Total number of retries handled by workqueue", ["name"])

_INCIDENT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)
TIME_TO_FIRST_ACTION = Histogram("reliability_center_time_to_first_action_seconds",
                                 "From detection to the first write", ["category"], buckets=_INCIDENT_BUCKETS)
TIME_TO_MITIGATE = Histogram("reliability_center_time_to_mitigate_seconds",
                             "From detection to Mitigated", ["category"], buckets=_INCIDENT_BUCKETS)
TIME_TO_CLOSE = Histogram("reliability_center_time_to_close_seconds",
                          "From detection to Closed", ["category"], buckets=_INCIDENT_BUCKETS)


class IncidentsByPhase(Collector):
    """How many Incidents are in each phase now, counted from the operator's Kopf index at each scrape
    (a gauge kept by increments would be wrong after a restart)."""

    def __init__(self) -> None:
        self.index: Mapping[Any, Any] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("reliability_center_incidents", "Incidents by phase and category",
                                   labels=["category", "phase"])
        for _ in range(3):  # the index may change while it is read (the watch runs on another thread)
            try:
                counts = [(key, len(list(store))) for key, store in list((self.index or {}).items())]
                break
            except RuntimeError:
                continue
        else:
            counts = []
        for (category, phase), count in counts:
            family.add_metric([category, phase], count)
        yield family


INCIDENTS = IncidentsByPhase()
REGISTRY.register(INCIDENTS)


# -- Paging (manifests/prometheus/paging-rules.yaml): per-incident and per-PatchPlan series ------------
#
# Read from the operator's Kopf indexes at each scrape (operator/incident.py, operator/patchplan.py),
# not kept by set/remove: a restarted operator, or a standby, exports the same series from the
# cluster's objects. The per-object labels stay bounded: an Incident's series exist only while it
# is open (none once Closed or deleted), a PatchPlan's only while it is in a phase that still moves
# (none once Verified, Rejected, RolledBack, Failed or deleted).

#: PatchPlan phases the operator still moves on: a plan that stays long in one of them is stuck.
MOVING_PLAN_PHASES = ("Pending", "Proposed", "Merged", "Synced", "RollingBack")

Sample = tuple[str, dict[str, str], float]
"""A series of the paging families: its family's name, its labels, its value."""

PAGING_FAMILIES = {
    "reliability_center_approval_waiting_since_timestamp_seconds":
        ("When a level 2 step's plan was put to approval, while it waits for it (unix seconds)",
         ("namespace", "incident", "step", "digest")),
    "reliability_center_approval_expired_timestamp_seconds":
        ("When a level 2 step's approval expired (ApprovalTimeout), while its incident is open (unix seconds)",
         ("namespace", "incident", "step")),
    "reliability_center_incident_escalated_info":
        ("1 while an open incident is at level 3; pull_request: its fix PatchPlan's pull request URL, or empty",
         ("namespace", "incident", "category", "tenant", "pull_request")),
    "reliability_center_gate_failing_resolved_timestamp_seconds":
        ("A post-repair gate not passing on a resolved, not yet closed incident: when it was resolved (unix seconds)",
         ("namespace", "incident", "gate")),
    "reliability_center_patchplan_phase":
        ("1 for a PatchPlan in a phase the operator still moves on (Pending, Proposed, Merged, Synced, RollingBack)",
         ("namespace", "patchplan", "incident", "phase")),
}

LEADER = Gauge("reliability_center_leader", "1 while this replica leads (or runs alone), else 0")


def epoch(timestamp: str | None) -> float | None:
    """RFC 3339 (the status' times) to unix seconds; None when absent or unreadable."""
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def incident_samples(namespace: str, name: str, body: Mapping[str, Any]) -> list[Sample]:
    """The paging series of one Incident, from its spec and status (pure)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if status.get("phase") == "Closed":
        return []
    out: list[Sample] = []
    for step in status.get("steps") or []:
        approval = step.get("approval") or {}
        asked = epoch(approval.get("requestedAt"))
        if step.get("state") == "AwaitingApproval" and approval.get("planDigest") and not approval.get("approved") \
                and asked is not None:
            out.append(("reliability_center_approval_waiting_since_timestamp_seconds",
                        {"namespace": namespace, "incident": name, "step": step["name"],
                         "digest": approval["planDigest"]}, asked))
        if step.get("reason") == "ApprovalTimeout":
            out.append(("reliability_center_approval_expired_timestamp_seconds",
                        {"namespace": namespace, "incident": name, "step": step["name"]},
                        epoch(step.get("finishedAt")) or epoch(approval.get("deadline")) or 0.0))
    if (status.get("level") or 0) >= 3:
        url = next((p.get("pullRequest") for p in status.get("plans") or []
                    if p.get("purpose", "fix") == "fix" and p.get("pullRequest")), "")
        out.append(("reliability_center_incident_escalated_info",
                    {"namespace": namespace, "incident": name, "category": str(spec.get("category") or ""),
                     "tenant": str(spec.get("tenant") or ""), "pull_request": url}, 1.0))
    resolved = epoch((status.get("times") or {}).get("resolved"))  # the operator's record of the resolve
    if resolved is not None:
        for gate in status.get("gates") or []:
            if not gate.get("passed"):
                out.append(("reliability_center_gate_failing_resolved_timestamp_seconds",
                            {"namespace": namespace, "incident": name, "gate": gate["name"]}, resolved))
    return out


def patchplan_samples(namespace: str, name: str, body: Mapping[str, Any]) -> list[Sample]:
    """The paging series of one PatchPlan (pure)."""
    phase = (body.get("status") or {}).get("phase") or "Pending"
    if phase not in MOVING_PLAN_PHASES:
        return []
    incident = str((body.get("spec") or {}).get("incidentRef") or "")
    return [("reliability_center_patchplan_phase",
             {"namespace": namespace, "patchplan": name, "incident": incident, "phase": phase}, 1.0)]


class Paging(Collector):
    """The paging series, computed at each scrape from what the Kopf indexes hold now (each object's
    samples: operator/incident.py's ``incident_pages``, operator/patchplan.py's ``patchplan_pages``)."""

    def __init__(self) -> None:
        self.indexes: dict[str, Mapping[Any, Any]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {name: GaugeMetricFamily(name, help_, labels=list(labels))
                    for name, (help_, labels) in PAGING_FAMILIES.items()}
        for index in list(self.indexes.values()):
            for _ in range(3):  # the index may change while it is read (the watch runs on another thread)
                try:
                    samples = [s for store in list(index.values()) for many in list(store) for s in many]
                    break
                except RuntimeError:
                    continue
            else:
                samples = []
            for family, labels, value in samples:
                families[family].add_metric([labels[k] for k in PAGING_FAMILIES[family][1]], value)
        yield from families.values()


PAGING = Paging()
REGISTRY.register(PAGING)
