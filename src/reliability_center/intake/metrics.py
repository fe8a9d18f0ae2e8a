"""Prometheus metrics of the Alertmanager intake (the operator's default registry, RC_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter("reliability_center_intake_requests_total",
                   "Webhook requests by result: accepted, or the refusal's reason", ["result"])
ALERTS = Counter("reliability_center_intake_alerts_total",
                 "Alerts of accepted requests by outcome: created, updated, unchanged, unhandled, dropped",
                 ["outcome"])
FORGE_HOOKS = Counter("reliability_center_forge_hooks_total",
                      "Forge webhook posts by result: woke (a PatchPlan), no_plan, ignored (not a pull request "
                      "event), or the refusal's reason", ["result"])
