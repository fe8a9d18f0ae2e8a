"""Start the operator: Kopf with our settings, JSON logs and Prometheus metrics.

``relctl operator run`` and ``python -m reliability_center.operator`` both land in ``run``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import importlib
import logging
import os
import threading
from typing import Any

import kopf

from reliability_center.gateway.kube import describe
from reliability_center.operator import context, metrics
from reliability_center.operator import incident as _incident  # noqa: F401  (registers handlers)
from reliability_center.operator import runbook as _runbook  # noqa: F401  (registers handlers)
from reliability_center.operator import scope
from reliability_center.operator.leadership import Timing
from reliability_center.operator.settings import SETTINGS_CONFIGMAP

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
    settings.posting.enabled = False  # audit Events are ours, posted by the gateway
    settings.peering.standalone = True
    # Watches can go silent on some networks; bounded timeouts make Kopf re-list (Kopf docs, "Watching").
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # ConfigMaps are watched for the namespaces' settings alone (operator/incident.py, namespace_settings):
    # the apiserver sends those, not every flag store's writes.
    settings.watching.field_selectors["v1", "configmaps"] = f"metadata.name={SETTINGS_CONFIGMAP}"
    settings.execution.max_workers = ours.watch.workers
    if ours.serving.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(ours.serving.metrics_port)
    metrics.LEADER.set_function(lambda: 1.0 if context.leading() else 0.0)  # read at each scrape
    context.kube()  # fail fast on a bad kubeconfig
    log.info("operator started", extra={"namespaces": list(ours.watch.namespaces) or "cluster-wide",
                                        "replica": context.me()})


_tasks: set[asyncio.Task[None]] = set()  # a reference, so the running task is not garbage-collected

STOP: concurrent.futures.Future[str] = concurrent.futures.Future()
"""Kopf's stop flag: set with the reason when the process must end (leader election lost or failed),
or with "" once Kopf stops for another cause (a signal): see ``release_stop_flag``."""
EXIT_GRACE = 10.0
"""Seconds the operator has to stop cleanly once the election ended it; then the process exits regardless."""


@kopf.on.startup()
async def elect(**_: Any) -> None:
    """With several replicas, campaign for the Lease; the queues' workers wait for it."""
    election = context.elector()
    if election is None:
        return
    election.on_lead.insert(0, election.take_posts)  # first: posts reach the new leader before it catches up
    task = asyncio.get_running_loop().create_task(election.run(), name="leader-election")
    _tasks.add(task)
    task.add_done_callback(_election_ended)


def _election_ended(task: asyncio.Task[None]) -> None:
    """The election ended: on a clean shutdown, nothing to do; otherwise the process exits, as
    controller-runtime's does when leadership is lost, instead of living on without campaigning."""
    _tasks.discard(task)
    election = context.elector()
    if election is not None and election.stopped:
        return
    if task.cancelled():
        reason = "leader election cancelled"
    elif task.exception() is not None:
        reason = f"leader election failed: {task.exception()!r}"
        log.error(reason, exc_info=task.exception())
    else:
        reason = "leader election lost"
    stop(reason)


def stop(reason: str) -> None:
    """End the operator: Kopf stops (its cleanup handlers run), and ``run`` exits non-zero."""
    if STOP.done():
        return
    log.error("the operator exits: %s", reason)
    STOP.set_result(reason)
    # A stop that hangs (a request stuck in a worker thread) must not keep a process that may not write.
    watchdog = threading.Timer(EXIT_GRACE, os._exit, args=(1,))
    watchdog.daemon = True
    watchdog.start()


@kopf.on.cleanup()
async def release_stop_flag(**_: Any) -> None:
    """Kopf waits for a concurrent Future's result in a thread of the default executor, which
    ``asyncio.run`` joins at exit: after a SIGTERM, nothing else would ever set it and the process
    would hang until killed."""
    if not STOP.done():
        STOP.set_result("")


@kopf.on.cleanup()
async def resign(**_: Any) -> None:
    """A clean shutdown hands the Lease over at once (a SIGKILL leaves it to expire)."""
    election = context.elector()
    if election is not None:
        await asyncio.to_thread(election.release)


_intake: list[Any] = []  # the receiver's aiohttp runner, while it serves


@kopf.on.startup()
async def intake(**_: Any) -> None:
    """The Alertmanager receiver (intake/), when RC_INTAKE_PORT is set. A missing or invalid
    config, or a port in use, leaves it off and says why; the operator runs on."""
    ours = context.settings().intake
    if not ours.port:
        return
    from reliability_center.intake.config import ConfigError
    from reliability_center.intake.server import start

    try:
        _intake.append(await start(context.kube(), ours.port, ours.token_file, ours.config_file,
                                   tls_cert_file=ours.tls_cert_file, tls_key_file=ours.tls_key_file,
                                   allow_plain_http=ours.allow_plain_http))
    except (ConfigError, OSError) as exc:
        log.error("the Alertmanager receiver is NOT serving: %s", exc, extra={"port": ours.port})


@kopf.on.startup()
async def forge_hooks(patchplan_pull_requests: kopf.Index, **_: Any) -> None:
    """The forges' pull request webhooks (intake/forge_hooks.py), when RC_FORGE_HOOKS_PORT is set: a merge
    or close wakes the PatchPlan that waits on it. Off (a TLS error, a port in use), the poll still sees it."""
    ours = context.settings().forge_hooks
    if not ours.port:
        return
    from reliability_center.intake.config import ConfigError
    from reliability_center.intake.forge_hooks import start
    from reliability_center.operator import patchplan

    try:
        _intake.append(await start(ours.port, ours.secret_file,
                                   functools.partial(patchplan.wake, patchplan_pull_requests),
                                   tls_cert_file=ours.tls_cert_file, tls_key_file=ours.tls_key_file,
                                   allow_plain_http=ours.allow_plain_http))
    except (ConfigError, OSError) as exc:
        log.error("the forge webhook receiver is NOT serving: %s", exc, extra={"port": ours.port})


@kopf.on.cleanup()
async def stop_intake(**_: Any) -> None:
    while _intake:
        await _intake.pop().cleanup()


@kopf.on.probe(id="apiserver")
async def apiserver_reachable(**_: Any) -> str:
    """Reported at the health endpoint; an outage is reported there, not a failure of liveness
    (restarting the operator would not bring the apiserver back)."""
    try:
        await asyncio.to_thread(context.kube().readyz)
    except Exception as exc:
        return f"unreachable: {describe(exc)}"
    return "ok"


@kopf.on.probe(id="namespaces")
def namespaces(**_: Any) -> dict[str, Any]:
    """Which watched namespaces exist (served) and which do not yet (operator/scope.py)."""
    return scope.served.report()


@kopf.on.startup()
async def check_admission(**_: Any) -> None:
    """Does the apiserver vouch for approvals (operator/admission.py)? Logged either way; asked again later."""
    try:
        await asyncio.to_thread(context.runner().admission.verdict)
    except Exception as exc:  # noqa: BLE001 - the operator runs on; no vote counts until a check succeeds
        log.error("could not check the admission policies at startup: %s", describe(exc))


@kopf.on.probe(id="admission")
def admission_in_force(**_: Any) -> str:
    """At the health endpoint: whether votes can count. Not a liveness failure (a restart would not
    install the policies); the steps that wait for approval say the same."""
    try:
        verdict = context.runner().admission.verdict()
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the probe says what is wrong
        return f"NOT in force (CannotCheck): {describe(exc)}"
    return "in force" if verdict.in_force else f"NOT in force ({verdict.reason}): {verdict.message}"


@kopf.on.probe(id="leader")
def leader(**_: Any) -> bool:
    return context.leading()


def bound_malloc_arenas(arenas: int = 2) -> None:
    """Let glibc's malloc keep at most ``arenas`` arenas (M_ARENA_MAX) instead of up to eight per CPU.

    Each of the operator's threads that allocates gets an arena of its own; the workers parse and drop big
    bodies (a flags store holding 5,000 tenants is about 1 MB), and what they free stays scattered over their
    arenas. Python allocates under the GIL, so two arenas are not contended. Measured with
    bench/bench_holds_operator.py (README, "Tests": "Operator memory"). Called before Kopf starts any thread; a libc
    without mallopt (not glibc) keeps its own behaviour.
    """
    try:
        ctypes.CDLL(None).mallopt(-8, arenas)  # -8: M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        pass


def run() -> None:
    ours = context.settings()
    bound_malloc_arenas()
    if ours.leadership.enabled:
        try:
            Timing(ours.leadership.lease_duration, ours.leadership.renew_deadline, ours.leadership.retry_period)
        except ValueError as exc:
            raise SystemExit(f"invalid leader election timings (RC_LEADER_LEASE_SECONDS, RC_LEADER_RENEW_DEADLINE, "
                             f"RC_LEADER_RETRY_PERIOD): {exc}") from None
    kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON, log_prefix=False)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    namespaces = list(ours.watch.namespaces)
    if namespaces:
        scope.install(namespaces)  # Runbooks are served even before any watched namespace exists
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=ours.serving.health_url or None,
        stop_flag=STOP,
    )
    if STOP.done() and STOP.result():
        raise SystemExit(f"reliability-center operator: {STOP.result()}")
