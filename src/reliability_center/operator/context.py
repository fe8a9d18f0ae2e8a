"""Process-wide handles the Kopf handlers share: the API client, the step runner, the queues, the elector."""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor

from reliability_center.gateway import Kube
from reliability_center.operator.leadership import Elector, Route, Timing, identity
from reliability_center.operator.runner import StepRunner
from reliability_center.operator.settings import Settings
from reliability_center.operator.workqueue import WorkQueue


@functools.cache
def settings() -> Settings:
    return Settings()


@functools.cache
def me() -> str:
    return identity()


@functools.cache
def elector() -> Elector | None:
    """The leader election, when several replicas run (settings.leadership.enabled)."""
    ours = settings().leadership
    if not ours.enabled:
        return None
    return Elector(Kube(identity=me()), ours.namespace, ours.name, me(),
                   Timing(ours.lease_duration, ours.renew_deadline, ours.retry_period), route=route())


def route() -> Route | None:
    """Where posts reach this replica, when it runs in a pod and a Service is named (RC_LEADER_SERVICE)."""
    ours, pod, ip = settings(), os.environ.get("POD_NAME", ""), os.environ.get("POD_IP", "")
    if not (ours.leadership.service and pod and ip):
        return None
    ports = tuple((name, port) for name, port in (("intake", ours.intake.port), ("forge-hooks", ours.forge_hooks.port))
                  if port)
    return Route(ours.leadership.service, pod, ip, ports)


@functools.cache
def kube() -> Kube:
    """The client every write goes through: fenced by the leadership when there is one."""
    election = elector()
    return Kube(identity=me(), fence=election.fence if election else None)


def leading() -> bool:
    election = elector()
    return election is None or election.leading.is_set()


def gate() -> asyncio.Event | None:
    """What the work queues' workers wait for: this replica leading (None: a single replica, always)."""
    election = elector()
    return election.leading if election else None


@functools.cache
def runner() -> StepRunner:
    return StepRunner(kube(), settings())


@functools.cache
def executor() -> ThreadPoolExecutor:
    """The threads incident reconciles run on (the sync client must never block the event loop)."""
    return ThreadPoolExecutor(settings().watch.workers, thread_name_prefix="rc-incident")


QUEUE: WorkQueue | None = None
"""The incidents' work queue; made by the startup handler, on the operator's event loop."""


def queue() -> WorkQueue:
    if QUEUE is None:
        raise RuntimeError("the incident work queue starts with the operator")
    return QUEUE
