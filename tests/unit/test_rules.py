"""The shipped detection rules (manifests/prometheus/detection-rules.yaml; the chart links to it).

Oracles: Prometheus' own ``promtool`` (check and unit tests, tests/rules/*.test.yaml, with the rules'
real windows), the intake's mapping (what an alert with each rule's labels opens) and the seed
Runbooks' own match (which one takes it).
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from reliability_center.api.incident import Incident
from reliability_center.api.runbook import Runbook
from reliability_center.engine.matching import _answers
from reliability_center.intake.config import IntakeConfig
from reliability_center.intake.mapping import plans
from reliability_center.intake.payload import Webhook

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "manifests" / "prometheus" / "detection-rules.yaml"
IN_CHART = ROOT / "charts" / "reliability-center" / "files" / "detection-rules.yaml"
RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.test.yaml"))
SEED = {doc["metadata"]["name"]: Runbook.model_validate(doc)
        for doc in (yaml.safe_load(p.read_text()) for p in sorted((ROOT / "runbooks").glob("*.yaml")))}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian's prometheus package, "
                                                              "hack/install-deps.sh): the rules' unit tests cannot run")


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def firing_cases() -> list[dict[str, Any]]:
    """Every expected firing alert of the promtool tests, with its alertname."""
    return [{**expected, "alertname": case["alertname"]}
            for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
            for case in test.get("alert_rule_test", []) for expected in case["exp_alerts"]]


@needs_promtool
def test_promtool_checks_the_rules_file_and_the_charts_link_to_it():
    for path in (RULES, IN_CHART):
        result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass():
    assert RULE_TESTS, "no tests/rules/*.test.yaml"
    result = subprocess.run([PROMTOOL, "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_the_chart_ships_the_plain_rules_file_itself():
    """One source: the chart's files/detection-rules.yaml is a link to manifests/prometheus/detection-rules.yaml."""
    assert IN_CHART.is_symlink() and IN_CHART.resolve() == RULES.resolve()


def test_every_alert_has_a_promtool_test_where_it_fires():
    tested = {case["alertname"] for case in firing_cases()}
    assert {rule["alert"] for rule in alerts()} - tested == set()


def test_every_alert_opens_the_matching_seed_runbooks_incident_with_its_tenant_and_module():
    """Each firing alert of the promtool tests (its labels and annotations as Prometheus computed them),
    posted as Alertmanager would, becomes a plan of the intake's whose Incident a seed Runbook takes."""
    config = IntakeConfig(namespaces=["shop"], categories=["perf", "cross-tenant", "ocr", "billing"])
    for case in firing_cases():
        labels = {"alertname": case["alertname"], **case["exp_labels"]}
        body = {"version": "4", "groupKey": f"{{}}:{{alertname={case['alertname']!r}}}", "truncatedAlerts": 0,
                "status": "firing", "receiver": "intake", "groupLabels": {}, "commonLabels": labels,
                "commonAnnotations": case["exp_annotations"], "externalURL": "http://alertmanager:9093",
                "alerts": [{"status": "firing", "labels": labels, "annotations": case["exp_annotations"],
                            "startsAt": "2026-01-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                            "generatorURL": "http://prometheus/graph", "fingerprint": "0123456789abcdef"}]}
        (plan,) = plans(Webhook.model_validate(body), config)
        assert (plan.namespace, plan.tenant, plan.module) == ("shop", labels["tenant"], labels["module"])
        assert plan.summary == case["exp_annotations"]["summary"]
        assert plan.signals[0]["value"] == float(case["exp_annotations"]["value"])
        incident = Incident.model_validate(plan.manifest(plan.base_name))
        takers = [name for name, runbook in SEED.items() if _answers(runbook, incident)]
        assert takers == [labels["category"]], (case["alertname"], takers)


def test_each_contract_violation_alert_names_the_service_account_the_seed_cross_tenant_runbook_revokes():
    """The alerts that carry a service_account are exactly those the seed's revoke-access step runs on
    (its when.signals), and each, through the intake's mapping, makes the step take out that account."""
    from reliability_center.actions.base import resolve_params
    from reliability_center.actions.revoke_access import RevokeParams
    from reliability_center.engine.plan import Facts, when_holds

    revoke = next(s for s in SEED["cross-tenant"].spec.steps if s.action == "revoke-access")
    naming = {rule["alert"] for rule in alerts() if "service_account" in rule["expr"]}
    assert revoke.when is not None and set(revoke.when.signals) == naming
    cases = [c for c in firing_cases() if c["alertname"] in naming]
    assert {c["alertname"] for c in cases} == naming
    config = IntakeConfig(namespaces=["shop"], categories=["cross-tenant"])
    for case in cases:
        labels = {"alertname": case["alertname"], **case["exp_labels"]}
        body = {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "intake",
                "groupLabels": {}, "commonLabels": labels, "commonAnnotations": case["exp_annotations"],
                "externalURL": "http://alertmanager:9093",
                "alerts": [{"status": "firing", "labels": labels, "annotations": case["exp_annotations"],
                            "startsAt": "2026-01-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                            "generatorURL": "http://prometheus/graph", "fingerprint": "0123456789abcdef"}]}
        (plan,) = plans(Webhook.model_validate(body), config)
        incident = Incident.model_validate(plan.manifest(plan.base_name))
        assert when_holds(revoke, incident, Facts(now="2026-01-01T10:00:00Z")) == (True, ""), case["alertname"]
        params = resolve_params(RevokeParams, revoke, incident)
        assert params.role_binding == f"{labels['module']}-data-readers"
        assert [(s.kind, s.name, s.namespace) for s in params.subjects] == [
            ("ServiceAccount", labels["service_account"], None)], case["alertname"]


def test_the_seed_runbooks_every_category_has_rules():
    assert {rule["labels"]["category"] for rule in alerts()} == {rb.spec.match.category for rb in SEED.values()}


def test_the_end_to_end_transform_only_divides_ranges_and_fors_by_60(tmp_path: pathlib.Path):
    """tests/support/sample_app.scaled: what the e2e test changes in the shipped rules, and nothing else."""
    from tests.support.sample_app import seconds, scaled

    shipped = yaml.safe_load(RULES.read_text())
    fast = scaled(shipped)
    for group, short in zip(shipped["groups"], fast["groups"], strict=True):
        for rule, quick in zip(group["rules"], short["rules"], strict=True):
            ranges = re.findall(r"\[(\w+)\]", str(rule["expr"]))
            assert [seconds(r) / 60 for r in ranges] == [seconds(r) for r in re.findall(r"\[(\w+)\]", quick["expr"])]
            assert re.sub(r"\[\w+\]", "[]", str(rule["expr"])) == re.sub(r"\[\w+\]", "[]", quick["expr"])
            assert {k: v for k, v in rule.items() if k not in ("expr", "for")} == {
                k: v for k, v in quick.items() if k not in ("expr", "for")}
            assert seconds(rule.get("for", "0s")) / 60 == seconds(quick.get("for", "0s"))
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds("5 minutes")
    if PROMTOOL:
        path = tmp_path / "fast.yaml"
        path.write_text(yaml.safe_dump(fast))
        result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
