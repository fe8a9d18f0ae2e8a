"""The intake's configuration: a YAML file the operator's admins (and security team) own.

It decides what an alert may open before any Runbook is consulted: which namespaces,
which categories, which label carries which field, and the request limits.
"""

from __future__ import annotations

import pathlib
from fnmatch import fnmatchcase

import yaml
from pydantic import Field, ValidationError

from reliability_center.api.common import DNS_LABEL, Model
from reliability_center.api.runbook import Severity


class ConfigError(Exception):
    """The config file is missing or invalid: the receiver does not start."""


class LabelNames(Model):
    """Which alert label carries each incident field."""

    category: str = "category"
    tenant: str = "tenant"
    module: str = "module"
    severity: str = "severity"
    namespace: str = "namespace"


class Defaults(Model):
    severity: Severity = "high"
    tenant: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63,
                               description="None: an alert without a tenant label is refused. Never '*'.")


class RateLimits(Model):
    """How many incidents the intake opens per namespace, and per namespace and category, in a window.

    Counted per namespace and category, never per tenant: the tenant is a string the poster chooses,
    so a limit per tenant is one a poster dodges by varying it."""

    per_namespace: int = Field(default=30, ge=1, le=10_000)
    per_category: dict[str, int] = Field(default_factory=dict, description="fnmatch pattern → limit, per namespace "
                                                                           "and category; the first that matches.")
    window_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    def for_category(self, category: str) -> int | None:
        return next((limit for pattern, limit in self.per_category.items() if fnmatchcase(category, pattern)), None)


class IntakeConfig(Model):
    namespaces: list[str] = Field(default_factory=list, description="fnmatch patterns; empty refuses every namespace.")
    default_namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    labels: LabelNames = Field(default_factory=LabelNames)
    defaults: Defaults = Field(default_factory=Defaults)
    categories: list[str] = Field(default_factory=list, description="fnmatch patterns; empty refuses every category.")
    tenants: list[str] | None = Field(default=None, description="fnmatch patterns; None: any one tenant that is a "
                                                                "DNS label. '*' (every tenant) is always refused.")
    # Prometheus rules commonly say warning/page; Incidents know critical..info.
    severity_map: dict[str, Severity] = Field(
        default_factory=lambda: {"warning": "medium", "error": "high", "page": "critical", "none": "info"})
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_alerts: int = Field(default=100, ge=1, le=10_000)
    max_depth: int = Field(default=16, ge=4, le=64)
    # Posts handled or waiting for a thread at once; past that a 429 (Alertmanager retries): 16 run
    # (the receiver's threads), 48 wait, a few seconds of a storm's work (bench/bench_intake.py).
    max_pending_posts: int = Field(default=64, ge=1, le=10_000)
    # Partitions (namespace, category, tenant) of one post that may fire, each an Incident it may open.
    max_incidents_per_post: int = Field(default=10, ge=1, le=1000)
    rate_limits: RateLimits = Field(default_factory=RateLimits)

    def namespace_allowed(self, namespace: str) -> bool:
        return any(fnmatchcase(namespace, p) for p in self.namespaces)

    def tenant_allowed(self, tenant: str) -> bool:
        # "*" would widen a step to every tenant: an alert speaks for one (an admin opens a "*" incident).
        return tenant != "*" and (self.tenants is None or any(fnmatchcase(tenant, p) for p in self.tenants))

    def category_allowed(self, category: str) -> bool:
        return any(fnmatchcase(category, p) for p in self.categories)


def load(path: str | pathlib.Path) -> IntakeConfig:
    if not str(path):
        raise ConfigError("no config file is set (RC_INTAKE_CONFIG)")
    try:
        raw = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top, got {type(raw).__name__}")
    try:
        return IntakeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
