"""Process-wide handles the Kopf handlers share: the API client and the step runner (made once)."""

from __future__ import annotations

import functools

from reliability_center.gateway import Kube
from reliability_center.operator.runner import StepRunner
from reliability_center.operator.settings import Settings


@functools.cache
def settings() -> Settings:
    return Settings()


@functools.cache
def kube() -> Kube:
    return Kube()


@functools.cache
def runner() -> StepRunner:
    return StepRunner(kube(), settings())
