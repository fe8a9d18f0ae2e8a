"""The Alertmanager intake's pure parts: config, raw-body checks, alerts → incident plans, signal merges.

Oracles: the CRD's own pydantic models (what the apiserver would accept), hashlib for the
names, json.loads for nesting depth, engine.matching for which Runbook would take a plan.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reliability_center.api.incident import Incident, Signal
from reliability_center.api.runbook import Runbook
from reliability_center.engine.matching import match_runbook
from reliability_center.intake.config import ConfigError, IntakeConfig, load
from reliability_center.intake.incidents import _answers
from reliability_center.intake.mapping import GROUP_LABEL, MAX_SIGNALS, Refused, merge_signals, plans
from reliability_center.intake.payload import Webhook, too_deep
from reliability_center.intake.server import bearer_matches

CONFIG = IntakeConfig(namespaces=["shop", "t-*"], categories=["perf", "billing", "alert-*"])
DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def alert(fingerprint: str = "a1", status: str = "firing", starts: str = "2026-01-01T10:00:00Z",
          ends: str = "0001-01-01T00:00:00Z", annotations: dict[str, str] | None = None, **labels: str) -> dict:
    return {"status": status, "labels": {"alertname": "HighLatency", **labels}, "annotations": annotations or {},
            "startsAt": starts, "endsAt": ends, "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def payload(*alerts: dict, common: dict[str, str] | None = None, group_key: str = '{}:{alertname="HighLatency"}',
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    alerts = alerts or (alert(),)
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": 0,
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "receiver": "reliability-center", "groupLabels": {"alertname": "HighLatency"},
            "commonLabels": {"category": "perf", "tenant": "acme", "namespace": "shop", **(common or {})},
            "commonAnnotations": annotations or {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def plan_of(body: dict, config: IntakeConfig = CONFIG):
    return plans(Webhook.model_validate(body), config)


def refusal(body: dict, config: IntakeConfig = CONFIG) -> tuple[int, str]:
    with pytest.raises(Refused) as info:
        plan_of(body, config)
    return info.value.status, info.value.reason


# ------------------------------------------------------------------------------ config


def test_config_defaults_refuse_everything_until_allowed():
    config = IntakeConfig()
    assert (config.max_body_bytes, config.max_alerts, config.max_depth, config.max_pending_posts) == (
        256 * 1024, 100, 16, 64)
    assert IntakeConfig.model_validate({"maxPendingPosts": 3}).max_pending_posts == 3
    assert config.defaults.severity == "high" and config.defaults.tenant is None
    assert config.labels.category == "category" and config.labels.namespace == "namespace"
    assert not config.category_allowed("perf") and not config.namespace_allowed("shop")


def test_config_is_loaded_from_yaml_with_patterns(tmp_path):
    path = tmp_path / "intake.yaml"
    path.write_text("namespaces: ['shop-*']\ndefaultNamespace: shop-eu\ncategories: [perf, 'alert-*']\n"
                    "labels: {tenant: customer}\ndefaults: {severity: low, tenant: shared}\nmaxAlerts: 5\n"
                    "tenants: [acme, 'team-*']\nmaxIncidentsPerPost: 3\n")
    config = load(path)
    assert config.namespace_allowed("shop-eu") and not config.namespace_allowed("shopping")
    assert config.category_allowed("alert-x1") and not config.category_allowed("billing")
    assert (config.labels.tenant, config.labels.category, config.defaults.tenant, config.max_alerts) == (
        "customer", "category", "shared", 5)
    assert config.tenants == ["acme", "team-*"] and config.max_incidents_per_post == 3


@pytest.mark.parametrize("text", ["namespaces: shop: [", "- a list\n", "maxAlerts: many\n", "unknown: 1\n",
                                  "defaults: {tenant: 'Not A Label'}\n", "maxDepth: 1000\n",
                                  "defaults: {tenant: '*'}\n", "maxIncidentsPerPost: 0\n"])
def test_an_invalid_config_is_an_error_that_says_why(tmp_path, text):
    path = tmp_path / "intake.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        load(path)


def test_a_missing_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="RC_INTAKE_CONFIG"):
        load("")


# ------------------------------------------------------------------------------ raw body


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(alphabet='[]{}"\\ab'), inner, max_size=3), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=8))
def test_the_depth_scan_agrees_with_the_parsed_document(value, limit):
    body = json.dumps(value).encode()
    assert too_deep(body, limit) == (depth(json.loads(body)) > limit)


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000, b'[[' + b'{"x": [' * 30_000])
def test_hostile_nesting_is_seen_without_parsing(body):
    start = time.perf_counter()
    assert too_deep(body, 16)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("body", [b'"' + b'\\"' * 128_000, b'"\\' * 128_000, b'"' * 256_000,
                                  b'["' + b"[" * 250_000 + b'"]'])
def test_the_depth_scan_stays_linear_on_hostile_strings(body):
    start = time.perf_counter()
    assert not too_deep(body, 16)  # brackets inside strings do not count; an unclosed string is json's to refuse
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------------------ payload → plans


def test_one_group_makes_one_plan_named_from_its_group_key():
    (plan,) = plan_of(payload())
    digest = hashlib.sha256(b'{}:{alertname="HighLatency"}').hexdigest()[:10]
    assert plan.base_name == f"perf-acme-{digest}" and plan.group == digest
    assert (plan.namespace, plan.category, plan.tenant, plan.severity, plan.module) == ("shop", "perf", "acme",
                                                                                        "high", None)
    manifest = plan.manifest(plan.name(1))
    assert manifest["metadata"]["labels"] == {"reliability.center/source": "alertmanager", GROUP_LABEL: digest}
    Incident.model_validate(manifest)  # what the CRD accepts
    assert plan_of(payload())[0] == plan  # the same post, the same plan: idempotent by construction


def test_tenant_star_is_refused_whatever_the_allow_list_says():
    for config in (CONFIG, CONFIG.model_copy(update={"tenants": ["*"]})):
        with pytest.raises(Refused) as info:
            plan_of(payload(alert("a1"), alert("b2", tenant="*"), common={"tenant": "acme"}), config)
        assert (info.value.status, info.value.reason) == (422, "TenantNotAllowed")
        assert "'*'" in info.value.message and "b2" in info.value.message  # which alert, which tenant


def test_tenants_outside_the_allow_list_are_refused_naming_the_alert():
    config = CONFIG.model_copy(update={"tenants": ["acme", "team-*"]})
    assert [p.tenant for p in plan_of(payload(common={"tenant": "team-eu"}), config)] == ["team-eu"]
    assert [p.tenant for p in plan_of(payload(), config)] == ["acme"]
    with pytest.raises(Refused) as info:
        plan_of(payload(alert("a1"), alert("c3", tenant="globex")), config)
    assert (info.value.status, info.value.reason) == (422, "TenantNotAllowed")
    assert "'globex'" in info.value.message and "c3" in info.value.message and "HighLatency" in info.value.message
    # Absent (the default): any single tenant name that is a DNS label.
    assert CONFIG.tenants is None and [p.tenant for p in plan_of(payload(common={"tenant": "globex"}))] == ["globex"]


def test_one_post_opens_at_most_max_incidents_per_post():
    body = payload(*(alert(f"a{i}", tenant=f"t{i}") for i in range(4)))
    del body["commonLabels"]["tenant"]
    assert len(plan_of(body, CONFIG.model_copy(update={"max_incidents_per_post": 4}))) == 4
    assert refusal(body, CONFIG.model_copy(update={"max_incidents_per_post": 3})) == (422, "TooManyIncidents")
    assert IntakeConfig().max_incidents_per_post == 10


def test_long_categories_and_tenants_still_make_valid_distinct_names_with_room_for_episodes():
    config = IntakeConfig(namespaces=["shop"], categories=["*"])
    long_a, long_b = "c" * 63, "t" * 62 + "a"
    names = {p.base_name for p in (plan_of(payload(common={"category": long_a, "tenant": t}), config)[0]
                                   for t in (long_b, "t" * 62 + "b"))}
    assert len(names) == 2
    for name in names:
        for episode in (1, 2, 999):
            full = f"{name}-{episode}" if episode > 1 else name
            assert len(full) <= 63 and DNS.match(full), full


def test_episode_names_are_recognised_and_nothing_else():
    (plan,) = plan_of(payload())
    base = plan.base_name
    assert [plan.episode(n) for n in (base, f"{base}-2", f"{base}-17", f"{base}-1", f"{base}-x", base + "2",
                                      "other")] == [1, 2, 17, None, None, None, None]
    opened = plan.manifest(f"{base}-3")
    assert plan.owns(opened)
    assert not plan.owns({**opened, "spec": {"category": "perf", "tenant": "other"}})


def test_only_an_incident_recorded_for_the_whole_group_key_is_the_groups():
    (plan,) = plan_of(payload())
    opened = plan.manifest(plan.base_name)
    meta = opened["metadata"]
    assert meta["annotations"]["reliability.center/alert-group-sha256"] == hashlib.sha256(
        plan.group_key.encode()).hexdigest()
    # The same name and place, made by someone else (no source label, no record), or recorded for another
    # key (a collision of the name's 10-hex hash): not this group's, so its posts and resolves never reach it.
    unlabelled = {**opened, "metadata": {**meta, "labels": {}}}
    unrecorded = {**opened, "metadata": {**meta, "annotations": {"reliability.center/alert-group-key": plan.group_key}}}
    other_key = {**opened, "metadata": {**meta, "annotations": {"reliability.center/alert-group-sha256": "0" * 64}}}
    assert [plan.owns(i) for i in (opened, unlabelled, unrecorded, other_key)] == [True, False, False, False]


def test_a_group_with_two_tenants_makes_two_plans():
    body = payload(alert("a1", tenant="acme"), alert("b2", tenant="globex"), common={"tenant": ""})
    del body["commonLabels"]["tenant"]
    by_tenant = {p.tenant: p for p in plan_of(body)}
    assert sorted(by_tenant) == ["acme", "globex"]
    assert [s["fingerprint"] for s in by_tenant["acme"].signals] == ["a1"]
    assert by_tenant["acme"].base_name != by_tenant["globex"].base_name
    assert by_tenant["acme"].group == by_tenant["globex"].group


def test_fields_come_from_common_labels_then_the_first_firing_alert_then_defaults():
    body = payload(alert("a1", status="resolved", severity="low", module="search"),
                   alert("b2", severity="critical", module="billing"))
    (plan,) = plan_of(body)
    assert (plan.severity, plan.module) == ("critical", "billing")  # the first *firing* alert
    (plan,) = plan_of(payload(alert(severity="critical"), common={"severity": "info"}))
    assert plan.severity == "info"  # commonLabels first
    (plan,) = plan_of(payload(alert(severity="warning")))
    assert plan.severity == "medium"  # Prometheus' warning, through the severity map
    config = CONFIG.model_copy(update={"defaults": CONFIG.defaults.model_copy(update={"tenant": "shared"}),
                                       "default_namespace": "t-default"})
    body = payload()
    for key in ("tenant", "namespace"):
        del body["commonLabels"][key]
    (plan,) = plan_of(body, config)
    assert (plan.tenant, plan.namespace) == ("shared", "t-default")


def test_summary_and_signals_come_from_annotations_and_alerts():
    body = payload(alert("a1", annotations={"value": "0.93", "summary": "p99 up"}),
                   alert("b2", annotations={"value": "not a number"}),
                   alert("c3", annotations={"value": "NaN"}),
                   alert("a1", status="resolved", ends="2026-01-01T10:05:00+02:00", annotations={"value": "1e3"}),
                   annotations={"summary": "Search is slow", "description": "p99 over 2 s for acme"})
    (plan,) = plan_of(body)
    assert plan.summary == "Search is slow — p99 over 2 s for acme"
    signals = {s["fingerprint"]: s for s in plan.signals}
    assert list(signals) == ["a1", "b2", "c3"]  # one per fingerprint; a repeated one: the last wins
    assert signals["a1"]["resolved"] and signals["a1"]["resolvedAt"] == "2026-01-01T08:05:00.000000Z"
    assert signals["a1"]["value"] == 1000.0 and "value" not in signals["b2"] and "value" not in signals["c3"]
    assert signals["b2"]["time"] == "2026-01-01T10:00:00.000000Z" and not signals["b2"]["resolved"]
    assert signals["b2"]["name"] == "HighLatency" and signals["b2"]["source"] == "alertmanager"
    for s in plan.signals:
        Signal.model_validate(s)


def test_hostile_label_values_are_capped_and_still_valid():
    labels = {f"k{i:04d}": "x" * 10_000 for i in range(1000)}
    body = payload(alert("a1", **labels, pod="p\n\u202e\x00", alertname="A" * 5000),
                   annotations={"summary": "s" * 100_000}, group_key="{}:" + "g" * 100_000)
    (plan,) = plan_of(body)
    (sig,) = plan.signals
    assert len(sig["labels"]) <= 16 and all(len(k) <= 128 and len(v) <= 256 for k, v in sig["labels"].items())
    assert len(sig["name"]) <= 253 and len(plan.summary) <= 1024
    manifest = plan.manifest(plan.name(2))
    assert len(manifest["metadata"]["annotations"]["reliability.center/alert-group-key"]) <= 1024
    assert len(json.dumps(manifest)) < 16_000
    Incident.model_validate(manifest)


@pytest.mark.parametrize("change,expected", [
    ({"category": ""}, (422, "MissingLabels")),
    ({"tenant": ""}, (422, "MissingLabels")),
    ({"category": "ocr"}, (422, "CategoryNotAllowed")),
    ({"category": "Perf"}, (422, "InvalidCategory")),
    ({"category": "alert-X"}, (422, "InvalidCategory")),  # allowed by the pattern, not a valid name
    ({"tenant": "Acme Corp"}, (422, "InvalidTenant")),
    ({"tenant": "../etc"}, (422, "InvalidTenant")),
    ({"tenant": "a" * 64}, (422, "InvalidTenant")),
    ({"namespace": "kube-system"}, (422, "NamespaceNotAllowed")),
    ({"namespace": "t-X"}, (422, "NamespaceNotAllowed")),
    ({"namespace": ""}, (422, "NamespaceNotAllowed")),
    ({"module": "Search!"}, (422, "InvalidModule")),
    ({"severity": "apocalyptic"}, (422, "InvalidSeverity")),
])
def test_alerts_that_may_not_open_an_incident_are_refused(change, expected):
    body = payload(alert(**{k: v for k, v in change.items() if v}))
    for key, value in change.items():
        if not value:
            body["commonLabels"].pop(key, None)
        elif key in body["commonLabels"]:
            body["commonLabels"][key] = value
    assert refusal(body) == expected


def test_one_bad_alert_refuses_the_whole_post():
    assert refusal(payload(alert("a1"), alert("b2", namespace="kube-system"),
                           common={"namespace": ""})) == (422, "NamespaceNotAllowed")


@pytest.mark.parametrize("change", [{"version": "3"}, {"groupKey": ""}, {"alerts": "many"},
                                    {"alerts": [{**alert(), "fingerprint": "NOT-HEX"}]},
                                    {"alerts": [{**alert(), "fingerprint": "f" * 65}]},
                                    {"alerts": [{**alert(), "startsAt": "yesterday"}]},
                                    {"alerts": [{**alert(), "status": "pending"}]},
                                    {"alerts": [{**alert(), "labels": {"a": 1}}]}])
def test_a_payload_not_shaped_like_alertmanagers_is_invalid(change):
    with pytest.raises(ValidationError):
        Webhook.model_validate({**payload(), **change})


# ------------------------------------------------------------------------------ merging later posts


def signals_of(*alerts: dict) -> list[dict]:
    return plan_of(payload(*alerts))[0].signals


def test_a_later_alert_adds_a_signal_and_the_same_post_changes_nothing():
    first = signals_of(alert("a1"))
    merged, dropped = merge_signals(first, signals_of(alert("a1"), alert("b2")))
    assert [s["fingerprint"] for s in merged] == ["a1", "b2"] and dropped == 0
    again, _ = merge_signals(merged, signals_of(alert("a1"), alert("b2")))
    assert again == merged


def test_a_resolve_marks_the_signal_and_a_refire_fires_it_again():
    stored = signals_of(alert("a1"))
    resolved, _ = merge_signals(stored, signals_of(alert("a1", status="resolved", ends="2026-01-01T10:07:00Z")))
    assert resolved[0]["resolved"] and resolved[0]["resolvedAt"] == "2026-01-01T10:07:00.000000Z"
    late_retry, _ = merge_signals(resolved, signals_of(alert("a1")))  # the first post, delivered again
    assert late_retry == resolved
    refired, _ = merge_signals(resolved, signals_of(alert("a1", starts="2026-01-01T11:00:00Z")))
    assert not refired[0]["resolved"] and "resolvedAt" not in refired[0]
    assert refired[0]["time"] == "2026-01-01T11:00:00.000000Z"
    stale, _ = merge_signals(refired, signals_of(alert("a1", status="resolved", ends="2026-01-01T10:07:00Z")))
    assert stale == refired  # the resolve of the earlier firing does not end the new one


def test_each_refire_after_a_resolve_is_counted_and_nothing_else_is():
    stored = signals_of(alert("a1"))
    assert "refires" not in stored[0]
    later_unresolved, _ = merge_signals(stored, signals_of(alert("a1", starts="2026-01-01T10:30:00Z")))
    assert "refires" not in later_unresolved[0]  # no resolve between them: not a flap
    signals, started = stored, "2026-01-01T10:00:00Z"
    for n, hour in enumerate(("11", "12"), start=1):
        signals, _ = merge_signals(signals, signals_of(alert("a1", status="resolved", starts=started,
                                                             ends=f"2026-01-01T{hour}:00:00Z")))
        started = f"2026-01-01T{hour}:30:00Z"
        signals, _ = merge_signals(signals, signals_of(alert("a1", starts=f"2026-01-01T{hour}:30:00Z")))
        again, _ = merge_signals(signals, signals_of(alert("a1", starts=f"2026-01-01T{hour}:30:00Z")))  # a re-send
        assert signals[0]["refires"] == again[0]["refires"] == n
    Incident.model_validate({"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                             "metadata": {"name": "x", "namespace": "shop"},
                             "spec": {"category": "perf", "severity": "high", "tenant": "acme", "signals": signals}})


def test_signals_stop_at_the_crd_limit_and_the_rest_are_counted():
    stored = signals_of(*(alert(f"{i:x}0") for i in range(MAX_SIGNALS - 2)))
    incoming = signals_of(*(alert(f"{i:x}1") for i in range(5)))
    merged, dropped = merge_signals(stored, incoming)
    assert len(merged) == MAX_SIGNALS and dropped == 3
    # a resolve of a stored one still applies when full
    resolved, dropped = merge_signals(merged, signals_of(alert("00", status="resolved",
                                                               ends="2026-01-01T10:09:00Z")))
    assert dropped == 0 and resolved[0]["resolved"]


def test_a_post_with_more_fingerprints_than_the_limit_plans_the_limit():
    (plan,) = plan_of(payload(*(alert(f"{i:x}") for i in range(MAX_SIGNALS + 7))))
    assert len(plan.signals) == MAX_SIGNALS and plan.dropped == 7
    Incident.model_validate(plan.manifest(plan.base_name))


def test_signals_people_added_without_a_fingerprint_are_kept():
    human = {"source": "oncall", "name": "customer-report"}
    merged, _ = merge_signals([human], signals_of(alert("a1")))
    assert merged[0] == human and merged[1]["fingerprint"] == "a1"


# ------------------------------------------------------------------------------ which Runbook would take it


@pytest.mark.parametrize("match", [{"category": "perf"}, {"category": "billing"},
                                   {"category": "perf", "severities": ["critical"]},
                                   {"category": "perf", "severities": ["high", "low"]},
                                   {"category": "perf", "labels": {"reliability.center/source": "alertmanager"}},
                                   {"category": "perf", "labels": {"team": "search"}}])
def test_the_unhandled_check_agrees_with_the_engines_matching(match):
    (plan,) = plan_of(payload())
    doc = {"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook", "metadata": {"name": "rb"},
           "spec": {"match": match, "steps": [{"name": "b", "level": 1, "action": "blast-radius"}]},
           "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": "",
                                      "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    engine = match_runbook(Incident.model_validate(plan.manifest(plan.base_name)), [Runbook.model_validate(doc)])
    assert _answers(doc, plan) == (engine.runbook is not None)


# ------------------------------------------------------------------------------ what the real Alertmanager sends


FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def test_the_real_alertmanagers_firing_then_resolved_posts_make_one_incident_resolved():
    """Posts captured from Alertmanager 0.25 (tests/unit/fixtures)."""
    config = IntakeConfig(namespaces=["t-*"], categories=["alert-*"])
    firing = json.loads((FIXTURES / "alertmanager_firing.json").read_text())
    resolved = json.loads((FIXTURES / "alertmanager_resolved.json").read_text())
    (opened,) = plan_of(firing, config)
    assert (opened.namespace, opened.category, opened.tenant, opened.module, opened.severity) == (
        "t-shop", "alert-error-ratio", "acme", "billing", "critical")
    assert opened.base_name == "alert-error-ratio-acme-" + hashlib.sha256(firing["groupKey"].encode()).hexdigest()[:10]
    assert opened.summary == "error ratio 0.9" and opened.firing
    Incident.model_validate(opened.manifest(opened.base_name))
    (closing,) = plan_of(resolved, config)
    assert closing.base_name == opened.base_name and not closing.firing
    merged, _ = merge_signals(opened.signals, closing.signals)
    assert [(s["fingerprint"], s["resolved"], s.get("resolvedAt")) for s in merged] == [
        ("f217dd46736374fd", True, "2026-11-28T15:39:34.248000Z")]


# ------------------------------------------------------------------------------ the apiserver away


def test_an_apiserver_that_is_away_is_a_503_alertmanager_retries(tmp_path):
    """The real receiver, over HTTP, with a client whose apiserver is a port nothing listens on."""
    import asyncio
    import socket

    import httpx
    from kubernetes import client

    from reliability_center.gateway.kube import Kube
    from reliability_center.intake.server import start

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # the discard port: refused
    (tmp_path / "token").write_text("secret\n")
    (tmp_path / "intake.yaml").write_text("namespaces: [shop]\ncategories: [perf]\n")

    async def post() -> httpx.Response:
        runner = await start(Kube(client.ApiClient(configuration)), port, str(tmp_path / "token"),
                             str(tmp_path / "intake.yaml"), host="127.0.0.1", allow_plain_http=True)
        try:
            async with httpx.AsyncClient() as http:
                return await http.post(f"http://127.0.0.1:{port}/alerts", json=payload(),
                                       headers={"Authorization": "Bearer secret"}, timeout=60)
        finally:
            await runner.cleanup()

    response = asyncio.run(post())
    assert response.status_code == 503 and response.json()["error"] == "ApiserverUnavailable", response.text


# ------------------------------------------------------------------------------ the Authorization header


@pytest.mark.parametrize("header", ["Bearer \udcff", "Bearer s3cr3t\u00e9", "s3cr3t", "Bearer", "Basic s3cr3t",
                                    "Bearer s3cr3", "", "Bearer  s3cr3t\udc80"])
def test_a_malformed_or_wrong_authorization_header_is_not_the_token(header):
    assert not bearer_matches(header, "s3cr3t")


@pytest.mark.parametrize("header", ["Bearer s3cr3t", "bearer s3cr3t", "BEARER  s3cr3t "])
def test_the_bearer_token_matches_whatever_the_scheme_case(header):
    assert bearer_matches(header, "s3cr3t")


# ------------------------------------------------------------------------------ rate limits


def opened(*made: tuple[str, str, str]) -> list[dict[str, Any]]:
    """Incidents the intake made: (category, tenant, creationTimestamp)."""
    return [{"metadata": {"name": f"i{n}", "creationTimestamp": at}, "spec": {"category": c, "tenant": t}}
            for n, (c, t, at) in enumerate(made)]


def test_rate_limits_count_per_namespace_and_category_whatever_the_tenant_strings():
    from datetime import datetime, timezone

    from reliability_center.intake.mapping import rate_limited

    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    config = CONFIG.model_copy(update={"rate_limits": CONFIG.rate_limits.model_copy(
        update={"per_namespace": 3, "per_category": {"perf": 2, "bill*": 5}})})
    (plan,) = plan_of(payload(common={"tenant": "fresh-tenant-name"}), config)
    # Two perf incidents for two other tenants in the last hour: a third tenant string does not dodge the limit.
    two = opened(("perf", "t1", "2026-01-01T11:30:00Z"), ("perf", "t2", "2026-01-01T11:59:00Z"))
    refused = rate_limited(two, plan, config, now)
    assert refused is not None and (refused.status, refused.reason) == (429, "RateLimited")
    assert "perCategory" in refused.message
    # Older than the window: not counted.
    assert rate_limited(opened(("perf", "t1", "2026-01-01T10:59:00Z"), ("perf", "t2", "2026-01-01T11:59:00Z")),
                        plan, config, now) is None
    # The namespace's limit counts every category.
    (billing,) = plan_of(payload(common={"category": "billing", "tenant": "x"}), config)
    three = opened(("perf", "a", "2026-01-01T11:50:00Z"), ("ocr", "b", "2026-01-01T11:50:00Z"),
                   ("other", "c", "2026-01-01T11:50:00Z"))
    refused = rate_limited(three, billing, config, now)
    assert refused is not None and "perNamespace" in refused.message
    assert rate_limited(three[:2], billing, config, now) is None
    assert IntakeConfig().rate_limits.per_namespace == 30 and IntakeConfig().rate_limits.window_seconds == 3600
    loaded = IntakeConfig.model_validate({"rateLimits": {"perCategory": {"perf": 1}}})
    assert loaded.rate_limits.for_category("perf") == 1 and loaded.rate_limits.for_category("ocr") is None


def test_without_certificate_files_the_receiver_serves_plain_http_only_when_allowed(tmp_path):
    from reliability_center.intake.server import tls_context

    absent = (str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))  # an optional Secret that is not there
    for cert, key in (("", ""), absent):
        assert tls_context(cert, key, allow_plain_http=True) is None
        with pytest.raises(ConfigError, match="RC_INTAKE_ALLOW_PLAIN_HTTP=true"):
            tls_context(cert, key, allow_plain_http=False)
    (tmp_path / "tls.crt").write_text("not a certificate")
    with pytest.raises(ConfigError, match="go together"):
        tls_context(absent[0], "", allow_plain_http=True)
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        tls_context(*absent, allow_plain_http=True)
