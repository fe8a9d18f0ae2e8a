"""Prometheus metrics of the operator (served on RC_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INCIDENT_PHASES = Counter("reliability_center_incident_phase_transitions_total",
                          "Incident phase transitions", ["category", "phase"])
STEP_RESULTS = Counter("reliability_center_step_results_total", "Step outcomes", ["action", "state"])
STEP_SECONDS = Histogram("reliability_center_step_seconds", "Time a step call took", ["action"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
WRITES = Counter("reliability_center_gateway_writes_total", "Audited gateway writes", ["action", "outcome"])
