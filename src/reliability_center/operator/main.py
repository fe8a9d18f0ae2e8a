"""Start the operator: Kopf with our settings, JSON logs and Prometheus metrics.

``relctl operator run`` and ``python -m reliability_center.operator`` both land in ``run``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import kopf

from reliability_center.operator import context
from reliability_center.operator import incident as _incident  # noqa: F401  (registers handlers)
from reliability_center.operator import runbook as _runbook  # noqa: F401  (registers handlers)

log = logging.getLogger("reliability_center.operator")

# The PatchPlan controller (gitops) registers its handlers when its module exists.
try:
    importlib.import_module("reliability_center.operator.patchplan")
except ModuleNotFoundError as exc:  # pragma: no cover - only before the gitops module lands
    if exc.name != "reliability_center.operator.patchplan":
        raise


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = context.settings()
    settings.batching.batch_window = ours.watch.batch_window
    settings.posting.enabled = False  # audit Events are ours, posted by the gateway
    settings.peering.standalone = True
    # Watches can go silent on some networks; bounded timeouts make Kopf re-list (Kopf docs, "Watching").
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = ours.watch.workers
    if ours.serving.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(ours.serving.metrics_port)
    context.kube()  # fail fast on a bad kubeconfig
    log.info("operator started", extra={"namespaces": list(ours.watch.namespaces) or "cluster-wide"})


def run() -> None:
    ours = context.settings()
    kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON, log_prefix=False)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    namespaces = list(ours.watch.namespaces)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=ours.serving.health_url or None,
    )
