"""Operator settings: a small tree of dataclasses, each field read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def namespace_patterns(value: str) -> tuple[str, ...]:
    """``a,b`` is two namespaces (two Kopf patterns: one pattern ``a,b`` would match ``a`` alone, Kopf's
    later globs only re-admit what a ``!`` excluded); with a ``!`` the whole value is one Kopf pattern,
    as Kopf reads exclusions (``shop-*,!shop-pr-*``)."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if any(part.startswith("!") for part in parts):
        return (",".join(parts),)
    return tuple(parts)


@dataclass(frozen=True)
class WatchSettings:
    namespaces: tuple[str, ...] = field(default_factory=lambda: namespace_patterns(_env("RC_NAMESPACES", "")))
    """Kopf namespace patterns for Incidents and PatchPlans (``shop,billing``, ``shop-*,!shop-pr-*``);
    empty means cluster-wide. Runbooks are cluster-scoped and always watched."""

    workers: int = int(_env("RC_WORKERS", "16"))
    """Threads that run incident reconciles (and the Kopf executor's size). A step that waits
    returns and is looked at again later, so waiting incidents hold no thread."""


@dataclass(frozen=True)
class SafetySettings:
    safe_mode: bool = _env("RC_SAFE_MODE", "false").lower() == "true"
    """Default SAFE_MODE when the namespace's settings ConfigMap does not say."""

    shadow: bool = _env("RC_MODE", "enforce").strip().lower() == "shadow"
    """``RC_MODE=shadow``: every incident runs in shadow mode (server-side dry-runs, nothing written),
    whatever its ``spec.mode``; for trying the operator on a live cluster. A namespace can do the
    same alone with ``mode: shadow`` in its reliability-center-settings ConfigMap."""

    operator_namespace: str = _env("RC_OPERATOR_NAMESPACE", "") or _env("RC_LOCK_NAMESPACE", "")
    """The operator's own namespace (an install sets RC_LOCK_NAMESPACE to it): never written by a step,
    whatever RBAC grants (policy.writes.check_place)."""


@dataclass(frozen=True)
class ServingSettings:
    metrics_port: int = int(_env("RC_METRICS_PORT", "0"))
    """Port of the Prometheus /metrics endpoint; 0 disables it (tests run several operators)."""

    health_url: str = _env("RC_HEALTH_URL", "")
    """Kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz; empty disables it."""


@dataclass(frozen=True)
class IntakeSettings:
    port: int = int(_env("RC_INTAKE_PORT", "0"))
    """Port of the Alertmanager webhook receiver (POST /alerts); 0 disables it."""

    token_file: str = _env("RC_INTAKE_TOKEN_FILE", "")
    """File holding the bearer token Alertmanager sends (a mounted Secret; read again when it changes).
    Without a token the receiver refuses every request."""

    config_file: str = _env("RC_INTAKE_CONFIG", "")
    """YAML mapping alerts to Incidents (intake/config.py): namespaces, label names, defaults, the
    allow-list of categories and the request limits."""

    tls_cert_file: str = _env("RC_INTAKE_TLS_CERT_FILE", "")
    tls_key_file: str = _env("RC_INTAKE_TLS_KEY_FILE", "")
    """The receiver's TLS certificate and key (a mounted kubernetes.io/tls Secret's tls.crt and tls.key)."""

    allow_plain_http: bool = _env("RC_INTAKE_ALLOW_PLAIN_HTTP", "false").lower() == "true"
    """Without a certificate the receiver serves nothing, unless this says plain HTTP is meant."""


@dataclass(frozen=True)
class ForgeHookSettings:
    port: int = int(_env("RC_FORGE_HOOKS_PORT", "0"))
    """Port of the forge webhook receiver (POST /forge/gitea, /forge/github, /forge/gitlab,
    intake/forge_hooks.py): a pull request's merge or close wakes its PatchPlan at once; 0 disables it."""

    secret_file: str = _env("RC_FORGE_HOOKS_SECRET_FILE", "")
    """File holding the webhook secret set in the forge (a mounted Secret; read again when it changes):
    Gitea's and GitHub's HMAC key, GitLab's secret token. Without it every post is refused."""

    tls_cert_file: str = _env("RC_FORGE_HOOKS_TLS_CERT_FILE", "")
    tls_key_file: str = _env("RC_FORGE_HOOKS_TLS_KEY_FILE", "")
    allow_plain_http: bool = _env("RC_FORGE_HOOKS_ALLOW_PLAIN_HTTP", "false").lower() == "true"
    """As the intake's: GitLab sends its secret token as is, so plain HTTP only when said outright."""


@dataclass(frozen=True)
class GateSettings:
    prometheus_url: str = _env("RC_PROMETHEUS_URL", "").rstrip("/")
    """Prometheus HTTP API the SLO gate, ``blast-radius`` and step checks query; empty: the SLO gate fails and
    a check escalates, saying so, and ``blast-radius`` counts signal labels."""

    interval: float = float(_env("RC_GATE_INTERVAL", "10"))
    """Seconds between two evaluations of a resolved incident's failing post-repair gates."""


@dataclass(frozen=True)
class LeadershipSettings:
    enabled: bool = _env("RC_LEADER_ELECTION", "false").lower() == "true"
    """Run as one of several replicas: only the holder of the Lease acts (operator/leadership.py).
    Off, the process acts alone (a local run, the tests' operators). The manifests turn it on."""

    namespace: str = _env("RC_LEADER_NAMESPACE", "") or _env("RC_LOCK_NAMESPACE", "") or "default"
    """Where the Lease lives: the operator's own namespace in an install."""

    name: str = _env("RC_LEADER_LEASE", "reliability-center-leader")

    lease_duration: float = float(_env("RC_LEADER_LEASE_SECONDS", "15"))
    """Seconds a standby waits, seeing the Lease unchanged, before it takes over (the failover bound)."""

    renew_deadline: float = float(_env("RC_LEADER_RENEW_DEADLINE", "10"))
    """Seconds without a renewal after which the leader stops writing; below the lease duration."""

    retry_period: float = float(_env("RC_LEADER_RETRY_PERIOD", "2"))

    service: str = _env("RC_LEADER_SERVICE", "")
    """A selector-less Service of the Lease's namespace that the leader points at itself (its EndpointSlice),
    so that posts (Alertmanager's, the forges') reach the replica that acts; needs ``POD_NAME`` and ``POD_IP``."""


@dataclass(frozen=True)
class AdmissionSettings:
    namespace: str = (_env("RC_ADMISSION_CHECK_NAMESPACE", "") or _env("RC_LEADER_NAMESPACE", "")
                      or _env("RC_LOCK_NAMESPACE", "") or "default")
    """Where the dry-run checks of the admission policies are made (nothing is stored there):
    the operator's own namespace in an install."""

    every: float = float(_env("RC_ADMISSION_CHECK_EVERY", "30"))
    """Seconds a verdict on the admission policies stands before it is asked again (when votes are
    weighed or /healthz is read; before a step is approved it is asked afresh anyway)."""


@dataclass(frozen=True)
class Settings:
    watch: WatchSettings = field(default_factory=WatchSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    leadership: LeadershipSettings = field(default_factory=LeadershipSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    forge_hooks: ForgeHookSettings = field(default_factory=ForgeHookSettings)
    gates: GateSettings = field(default_factory=GateSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)


SETTINGS_CONFIGMAP = "reliability-center-settings"
