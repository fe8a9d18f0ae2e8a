"""Prometheus metrics of the operator (served on RC_METRICS_PORT). The intake's are in intake/metrics.py.

An incident's metrics (phases, step results and durations, writes, refusals, gates) are recorded when the
status that holds what they count is saved (``Draft.count``, operator/draft.py): a turn redone after a conflict
counts nothing twice, and a poll that changed nothing (not saved) is not a step call recorded anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
