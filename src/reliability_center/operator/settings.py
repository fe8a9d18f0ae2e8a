"""Operator settings: a small tree of dataclasses, each field read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class WatchSettings:
    namespaces: tuple[str, ...] = field(
        default_factory=lambda: tuple(p for p in [_env("RC_NAMESPACES", "").strip()] if p))
    """Kopf namespace pattern for Incidents and PatchPlans (``shop``, ``shop-*,!shop-pr-*``);
    empty means cluster-wide. Runbooks are cluster-scoped and always watched."""

    batch_window: float = float(_env("RC_BATCH_WINDOW", "0.005"))
    """Seconds Kopf waits for more events of one object before handling it. Kopf's default
    (0.1 s) would be most of the time to a first Level 1 write; our handlers are
    level-triggered and idempotent, so handling an intermediate state costs nothing."""

    workers: int = int(_env("RC_WORKERS", "32"))
    """Threads for the sync handlers: steps that wait for rollouts hold one each."""


@dataclass(frozen=True)
class SafetySettings:
    safe_mode: bool = _env("RC_SAFE_MODE", "false").lower() == "true"
    """Default SAFE_MODE when the namespace's settings ConfigMap does not say."""

    step_retry_limit: int = int(_env("RC_STEP_RETRIES", "3"))
    """Transient apiserver errors tolerated per step before it is marked Failed."""


@dataclass(frozen=True)
class ServingSettings:
    metrics_port: int = int(_env("RC_METRICS_PORT", "0"))
    """Port of the Prometheus /metrics endpoint; 0 disables it (tests run several operators)."""

    health_url: str = _env("RC_HEALTH_URL", "")
    """Kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz; empty disables it."""


@dataclass(frozen=True)
class Settings:
    watch: WatchSettings = field(default_factory=WatchSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    serving: ServingSettings = field(default_factory=ServingSettings)


SETTINGS_CONFIGMAP = "reliability-center-settings"
