"""Alerts → incident plans, and how a later post merges into an Incident's signals. Pure.

One plan per Alertmanager group and (namespace, category, tenant): a group whose
``group_by`` leaves the tenant out may hold several tenants' alerts, and one tenant's
alert must never open (or widen) another tenant's incident.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from reliability_center.api.common import API_VERSION, DNS_LABEL
from reliability_center.intake.config import IntakeConfig
from reliability_center.intake.payload import Alert, Webhook

SOURCE = "alertmanager"
SOURCE_LABEL = "reliability.center/source"
GROUP_LABEL = "reliability.center/alert-group"
GROUP_KEY_ANNOTATION = "reliability.center/alert-group-key"  # for people: cut to 1024 characters
#: The whole group key's sha256: the group an Incident was opened for. The intake alone may write it,
#: and the source label (admission policy reliability-center-intake-incidents).
GROUP_SHA_ANNOTATION = "reliability.center/alert-group-sha256"
MAX_SIGNALS = 50  # the CRD's maxItems
#: A signal keeps this many of its alert's labels, each cut to these lengths (50 signals stay small).
LABELS_PER_SIGNAL, LABEL_KEY_MAX, LABEL_VALUE_MAX = 16, 128, 256
SUMMARY_MAX = 1024
#: Room after the prefix for "-<hash10>" and an episode suffix up to "-999".
PREFIX_MAX = 63 - 11 - 4


class Refused(Exception):
    """The post cannot be accepted as it is: an HTTP status, a CamelCase reason, a message."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message[:512]


@dataclass(frozen=True)
class Plan:
    """What one group of alerts asks of the cluster: an Incident to open or update."""

    namespace: str
    category: str
    tenant: str
    module: str | None
    severity: str
    summary: str
    group: str  # sha256(groupKey)[:10], the alert-group label
    group_key: str
    base_name: str
    signals: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0  # alerts beyond the signal limit

    @property
    def firing(self) -> bool:
        return any(not s["resolved"] for s in self.signals)

    def name(self, episode: int) -> str:
        return self.base_name if episode == 1 else f"{self.base_name}-{episode}"

    def episode(self, name: str) -> int | None:
        """1 for the base name, N for ``<base>-N``; None for a name that is not one of this plan's."""
        if name == self.base_name:
            return 1
        rest = name.removeprefix(self.base_name + "-")
        return int(rest) if rest != name and rest.isdigit() and int(rest) >= 2 else None

    @property
    def group_sha(self) -> str:
        return hashlib.sha256(self.group_key.encode()).hexdigest()

    def owns(self, incident: dict[str, Any]) -> bool:
        """Whether the intake opened this Incident for this plan's group (the whole key, not the name's 10-hex
        hash) and place: only then may the group's posts, and its resolves, reach it."""
        meta, spec = incident["metadata"], incident.get("spec") or {}
        return (self.episode(meta["name"]) is not None
                and (meta.get("labels") or {}).get(SOURCE_LABEL) == SOURCE
                and (meta.get("annotations") or {}).get(GROUP_SHA_ANNOTATION) == self.group_sha
                and (spec.get("category"), spec.get("tenant")) == (self.category, self.tenant))

    def manifest(self, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"category": self.category, "severity": self.severity, "tenant": self.tenant,
                                "summary": self.summary, "signals": self.signals}
        if self.module:
            spec["module"] = self.module
        return {"apiVersion": API_VERSION, "kind": "Incident",
                "metadata": {"name": name, "namespace": self.namespace,
                             "labels": {SOURCE_LABEL: SOURCE, GROUP_LABEL: self.group},
                             "annotations": {GROUP_KEY_ANNOTATION: self.group_key[:1024],
                                             GROUP_SHA_ANNOTATION: self.group_sha}},
                "spec": spec}


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(moment: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(moment) if moment else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed and parsed.tzinfo is None else parsed


def _value(text: str | None) -> float | None:
    try:
        number = float(text) if text is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def signal(alert: Alert) -> dict[str, Any]:
    """One signal in the wire form the CRD stores."""
    kept = sorted(alert.labels.items())[:LABELS_PER_SIGNAL]
    out: dict[str, Any] = {
        "source": SOURCE,
        "name": _short(alert.labels.get("alertname") or "alert", 253),
        "labels": {_short(k, LABEL_KEY_MAX): _short(v, LABEL_VALUE_MAX) for k, v in kept},
        "time": iso(alert.starts_at),
        "fingerprint": alert.fingerprint,
        "resolved": alert.status == "resolved",
    }
    value = _value(alert.annotations.get("value"))
    if value is not None:
        out["value"] = value
    if alert.status == "resolved" and alert.ends_at is not None and alert.ends_at.year > 1:
        out["resolvedAt"] = iso(alert.ends_at)
    return out


def name_for(group_key: str, category: str, tenant: str) -> str:
    """``<category>-<tenant or all>-<sha256(groupKey)[:10]>``: the same group always gets the same name.

    When the prefix is cut to fit, or the tenant is literally "all" (the word "*" becomes),
    the hash also covers category and tenant, so that two plans never share a name.
    """
    prefix = f"{category}-{'all' if tenant == '*' else tenant}"
    key = group_key
    if len(prefix) > PREFIX_MAX or tenant == "all":
        prefix = prefix[:PREFIX_MAX].rstrip("-")
        key = f"{group_key}\n{category}\n{tenant}"
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _check(value: str, pattern: str, what: str, reason: str) -> str:
    if len(value) > 63 or not re.fullmatch(pattern, value):
        raise Refused(422, reason, f"{what} {value[:80]!r} is not a DNS label (lowercase, digits, '-', ≤ 63)")
    return value


def _where(alert: Alert, config: IntakeConfig) -> tuple[str, str, str]:
    """(namespace, category, tenant) of one alert (its labels merged with the common ones), or the refusal."""
    labels, names = alert.labels, config.labels
    category, tenant = labels.get(names.category), labels.get(names.tenant) or config.defaults.tenant
    missing = [n for n, v in ((names.category, category), (names.tenant, tenant)) if not v]
    if missing:
        raise Refused(422, "MissingLabels", f"alert {labels.get('alertname', '?')[:80]!r} lacks label(s) "
                                            f"{', '.join(missing)}")
    assert category is not None and tenant is not None
    _check(category, DNS_LABEL, "category", "InvalidCategory")
    if not config.category_allowed(category):
        raise Refused(422, "CategoryNotAllowed", f"category {category!r} is not in the intake's allow-list")
    if not config.tenant_allowed(tenant):
        raise Refused(422, "TenantNotAllowed", f"alert {labels.get('alertname', '?')[:80]!r} (fingerprint "
                                               f"{alert.fingerprint}): tenant {tenant[:80]!r} is not one the intake "
                                               "may open incidents for" + (" ('*' never is)" if tenant == "*" else ""))
    _check(tenant, DNS_LABEL, "tenant", "InvalidTenant")
    namespace = labels.get(names.namespace) or config.default_namespace
    if not namespace:
        raise Refused(422, "NamespaceNotAllowed", f"no {names.namespace!r} label and no defaultNamespace")
    if len(namespace) > 63 or not re.fullmatch(DNS_LABEL, namespace) or not config.namespace_allowed(namespace):
        raise Refused(422, "NamespaceNotAllowed", f"namespace {namespace[:80]!r} is not one the intake may open "
                                                  "incidents in")
    return namespace, category, tenant


def _field(name: str, common: dict[str, str], first: Alert) -> str | None:
    return common.get(name) or first.labels.get(name)


def plans(webhook: Webhook, config: IntakeConfig) -> list[Plan]:
    """The incident plans of one post; Refused when any alert in it may not be accepted (nothing is then done)."""
    parts: dict[tuple[str, str, str], list[Alert]] = {}
    for alert in webhook.alerts:
        labels = {**webhook.common_labels, **alert.labels}
        alert = alert.model_copy(update={"labels": labels})
        parts.setdefault(_where(alert, config), []).append(alert)
    firing = sum(any(a.status == "firing" for a in alerts) for alerts in parts.values())
    if firing > config.max_incidents_per_post:
        raise Refused(422, "TooManyIncidents", f"the post would open {firing} incidents (namespace, category, "
                                               f"tenant); at most {config.max_incidents_per_post} "
                                               "(maxIncidentsPerPost; group_by namespace, category and tenant)")
    group = hashlib.sha256(webhook.group_key.encode()).hexdigest()[:10]
    out = []
    for (namespace, category, tenant), alerts in parts.items():
        first = next((a for a in alerts if a.status == "firing"), alerts[0])
        module = _field(config.labels.module, webhook.common_labels, first)
        if module is not None:
            _check(module, DNS_LABEL, "module", "InvalidModule")
        raw = _field(config.labels.severity, webhook.common_labels, first)
        severity = config.severity_map.get(raw, raw) if raw else config.defaults.severity
        if severity not in ("critical", "high", "medium", "low", "info"):
            raise Refused(422, "InvalidSeverity", f"severity {raw[:40]!r} is none of critical, high, medium, low, "
                                                  "info (nor in the intake's severityMap)")
        by_fingerprint = {a.fingerprint: signal(a) for a in alerts}  # a repeated fingerprint: the last wins
        signals = list(by_fingerprint.values())
        annotations = {**first.annotations, **webhook.common_annotations}
        text = " — ".join(t for t in (annotations.get("summary"), annotations.get("description")) if t)
        summary = text or f"{first.labels.get('alertname', 'alert')}: {len(alerts)} alert(s) from Alertmanager"
        out.append(Plan(namespace=namespace, category=category, tenant=tenant, module=module, severity=severity,
                        summary=_short(summary, SUMMARY_MAX), group=group, group_key=webhook.group_key,
                        base_name=name_for(webhook.group_key, category, tenant), signals=signals[:MAX_SIGNALS],
                        dropped=max(0, len(signals) - MAX_SIGNALS)))
    return out


def merge_signals(existing: list[dict[str, Any]], incoming: list[dict[str, Any]],
                  limit: int = MAX_SIGNALS) -> tuple[list[dict[str, Any]], int]:
    """The signals after a post, and how many new ones did not fit.

    Matched by fingerprint. A resolve applies to the firing it ends (same or later start);
    a firing with a later start than the stored one (a re-fire) makes the signal firing
    again, and one after a resolve counts in ``refires``; anything older (a late retry of an
    earlier post) changes nothing.
    """
    merged = [dict(s) for s in existing]
    index = {s.get("fingerprint"): i for i, s in enumerate(merged) if s.get("fingerprint")}
    dropped = 0
    for new in incoming:
        i = index.get(new["fingerprint"])
        if i is None:
            if len(merged) >= limit:
                dropped += 1
                continue
            index[new["fingerprint"]] = len(merged)
            merged.append(dict(new))
            continue
        old = merged[i]
        old_time, new_time = _parse(old.get("time")), _parse(new.get("time"))
        if old_time and new_time and new_time < old_time:
            continue  # an earlier episode of this alert
        later = bool(old_time and new_time and new_time > old_time)
        if new["resolved"] or later or not old.get("resolved"):
            updated = {**old, **new}
            if not new["resolved"]:
                updated.pop("resolvedAt", None)
                if later and old.get("resolved"):  # resolved, then fired again: the postmortem's flap count
                    updated["refires"] = old.get("refires", 0) + 1
            merged[i] = updated
    return merged, dropped


def rate_limited(opened: list[dict[str, Any]], plan: Plan, config: IntakeConfig, now: datetime) -> Refused | None:
    """Whether opening the plan's Incident would pass the intake's limits (None) or not (a 429, retried later).

    ``opened``: the Incidents the intake made in the plan's namespace (any category, any tenant, closed too).
    """
    limits = config.rate_limits
    since = now.timestamp() - limits.window_seconds
    recent = [i for i in opened if (_parse(i["metadata"].get("creationTimestamp")) or now).timestamp() > since]
    per = f"per {limits.window_seconds} s"
    if len(recent) >= limits.per_namespace:
        return Refused(429, "RateLimited", f"{len(recent)} incidents opened in namespace {plan.namespace} {per}: "
                                           f"at most {limits.per_namespace} (rateLimits.perNamespace)")
    limit = limits.for_category(plan.category)
    same = sum((i.get("spec") or {}).get("category") == plan.category for i in recent)
    if limit is not None and same >= limit:
        return Refused(429, "RateLimited", f"{same} incidents of category {plan.category} opened in namespace "
                                           f"{plan.namespace} {per}: at most {limit} (rateLimits.perCategory)")
    return None
