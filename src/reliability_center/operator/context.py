"""Process-wide handles the Kopf handlers share: the API client, the step runner, the work queue."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

from reliability_center.gateway import Kube
from reliability_center.operator.runner import StepRunner
from reliability_center.operator.settings import Settings
from reliability_center.operator.workqueue import WorkQueue


@functools.cache
def settings() -> Settings:
    return Settings()


@functools.cache
def kube() -> Kube:
    return Kube()


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
