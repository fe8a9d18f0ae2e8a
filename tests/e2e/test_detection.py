"""The shipped detection rules on real parts: the sample application's metrics breach, the real Prometheus
fires the shipped rule, the real Alertmanager posts it, the session operator's intake opens the seed
Runbook's Incident with the alert's tenant and module; the values back to normal resolve the alert,
the intake marks the Incident's signal resolved, and the incident resolves where its runbook says so.

One Prometheus and Alertmanager for the four playbooks, which breach at once, billing by two rules for the
same tenant and module (one Incident, two signals). The rules are
manifests/prometheus/detection-rules.yaml with one transform (tests/support/sample_app.scaled): every
range and ``for`` divided by 60, as this Prometheus scrapes and evaluates every second; their real
windows are unit-tested by promtool (tests/rules/detection-rules.test.yaml). The seed Runbooks are this
checkout's, applied under categories of this module's own, which the rules' category labels are set to.

Of the seed Runbooks only perf sets resolveWhenSignalsResolve (README, "Closing an incident"): its
incident is resolved by the operator and its changes restored (phase Verifying or further); cross-tenant,
ocr and billing keep their phase, unresolved, with the signal resolved: a person resolves them.

Oracles: Prometheus' and Alertmanager's own APIs (what fired, what is active), the cluster's Incidents.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import ALERT_CATEGORY_PREFIX, INTAKE_TOKEN_FILE, INTAKE_URL, WORKER
from tests.support.cluster import CACHE, ROOT, apply_docs, get_json, load_yaml, runbook_doc, wait_for
from tests.support.monitoring import Monitoring
from tests.support.sample_app import SampleApp, scaled

RULES = ROOT / "manifests" / "prometheus" / "detection-rules.yaml"
SEEDS = ("perf", "cross-tenant", "ocr", "billing")
#: The seeds as this checkout ships them, under categories of this module's own: sessions of other checkouts on
#: the shared cluster apply theirs under the seeds' names, and an incident pins the runbook it matched.
SUFFIX = uuid.uuid4().hex[:6]


def ours(seed: str) -> str:
    return f"{ALERT_CATEGORY_PREFIX}{seed}-{SUFFIX}"


def seed_of(category: str) -> str:
    return category.removeprefix(ALERT_CATEGORY_PREFIX).removesuffix(f"-{SUFFIX}")


def relabelled(rules: dict[str, Any]) -> dict[str, Any]:
    """The rules with each alert's category label one of ours (the only change besides ``scaled``)."""
    out = copy.deepcopy(rules)
    for group in out["groups"]:
        for rule in group["rules"]:
            if "category" in rule.get("labels", {}):
                rule["labels"]["category"] = ours(rule["labels"]["category"])
    return out


@pytest.fixture(scope="module")
def detection(operator) -> Iterator[Monitoring]:
    """A Prometheus of its own scraping the sample application, with the shipped rules, posting to the operator."""
    for seed in SEEDS:
        spec = {k: v for k, v in load_yaml(ROOT / "runbooks" / f"{seed}.yaml")[0]["spec"].items() if k != "match"}
        apply_docs(None, [runbook_doc(ours(seed), spec)])
    for seed in SEEDS:
        wait_for(lambda: get_json("runbook", f"rb-{ours(seed)}").get("status", {}).get("conditions"),
                 what=f"the operator to see runbook {seed}")
    with Monitoring(intake_url=INTAKE_URL, token_file=INTAKE_TOKEN_FILE, directory=CACHE / f"detection-{WORKER}",
                    exporter=SampleApp()) as running:
        running.add_rules("detection-rules", relabelled(scaled(yaml.safe_load(RULES.read_text()))))
        yield running


def breach(app: SampleApp, ns: str) -> None:
    """One breach per playbook, each for a rule of its own and a tenant and module of its own."""
    perf = {"namespace": ns, "tenant": "acme", "module": "api"}
    # 90 % of requests over 0.3 s: the p95 SLO burns at 18x its budget (the page is at 14.4x).
    app.count("http_request_duration_seconds_count", 10, **perf)
    app.count("http_request_duration_seconds_bucket", 1, le="0.3", **perf)
    app.count("http_request_duration_seconds_bucket", 10, le="1", **perf)
    # Another tenant of the same module, within its SLO: no incident for it.
    healthy = {**perf, "tenant": "initech"}
    app.count("http_request_duration_seconds_count", 10, **healthy)
    app.count("http_request_duration_seconds_bucket", 10, le="0.3", **healthy)
    app.count("http_request_duration_seconds_bucket", 10, le="1", **healthy)
    # globex's exports module reads acme's data.
    # (as its exports service account, which the scanner names: the access the runbook would revoke)
    app.count("contract_violations_total", 1, namespace=ns, tenant="globex", module="exports",
              kind="cross_tenant_access", target_tenant="acme", service_account="exports-globex")
    app.count("ocr_model_errors_total", 1, namespace=ns, tenant="initech", module="ocr", model="invoice-reader",
              version="2.3.0")
    # acme's billing refuses for quota while acme uses 60 % of it.
    app.gauge("billing_quota_usage_ratio", 0.6, namespace=ns, tenant="acme", module="billing")
    app.count("billing_quota_exceeded_total", 1, namespace=ns, tenant="acme", module="billing")
    # A second rule of the same playbook, tenant and module: its invoices fail too.
    app.count("billing_invoices_total", 1, namespace=ns, tenant="acme", module="billing", outcome="error")


def recover(app: SampleApp, ns: str) -> None:
    perf = {"namespace": ns, "tenant": "acme", "module": "api"}
    app.count("http_request_duration_seconds_bucket", 10, le="0.3", **perf)
    app.count("contract_violations_total", 0, namespace=ns, tenant="globex", module="exports",
              kind="cross_tenant_access", target_tenant="acme", service_account="exports-globex")
    app.count("ocr_model_errors_total", 0, namespace=ns, tenant="initech", module="ocr", model="invoice-reader",
              version="2.3.0")
    app.count("billing_quota_exceeded_total", 0, namespace=ns, tenant="acme", module="billing")
    app.count("billing_invoices_total", 0, namespace=ns, tenant="acme", module="billing", outcome="error")


#: category (= the seed Runbook) → (alertname, tenant, module, severity, the summary's start)
EXPECTED = {
    "perf": ("PerfLatencyP95BudgetBurn", "acme", "api", "critical",
             "p95 latency SLO (95 % within 0.3 s) burning fast for tenant acme, module api: "),
    "cross-tenant": ("CrossTenantAccess", "globex", "exports", "critical",
                     "contract violation: tenant globex, module exports reached data of tenant acme "),
    "ocr": ("OcrModelErrors", "initech", "ocr", "high", "OCR model invoice-reader version 2.3.0: "),
    "billing": ("BillingQuotaIncoherent", "acme", "billing", "high", " quota-exceeded refusals for tenant acme while "
                                                                       "under its quota"),
}
#: A second rule of one playbook firing for the same tenant and module: (alertname, its summary's start). Alertmanager
#: groups it with the first (group_by category, tenant, module), so the intake adds it to the same Incident.
SECOND = {"billing": ("BillingInvoicingErrors", " invoices failed for tenant acme ")}


def alertnames(category: str) -> list[str]:
    return sorted([EXPECTED[category][0], *(SECOND[category][:1] if category in SECOND else [])])


def by_category(ns: str) -> dict[str, dict[str, Any]]:
    """The namespace's Incidents by the seed their category stands for."""
    return {seed_of(i["spec"]["category"]): i for i in get_json("incidents", "-n", ns)["items"]}


def test_each_playbooks_shipped_rule_opens_its_seed_incident_then_resolves(detection: Monitoring, app: str) -> None:
    sample = detection.exporter
    assert isinstance(sample, SampleApp)
    breach(sample, app)

    # 1. Prometheus fires the shipped rules, Alertmanager holds them: one per playbook, and billing's second.
    def active() -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for a in detection.alerts():
            if a["labels"].get("namespace") == app and a["status"]["state"] == "active":
                out.setdefault(seed_of(a["labels"]["category"]), []).append(a["labels"])
        return out

    wait_for(lambda: {c: sorted(a["alertname"] for a in alerts) for c, alerts in active().items()} == {
        c: alertnames(c) for c in EXPECTED}, 60, "the five rules to fire in Alertmanager")
    for category, alerts in active().items():
        assert {(a["tenant"], a["module"]) for a in alerts} == {EXPECTED[category][1:3]}, category

    # 2. The operator opened the matching seed Runbook's Incident for each, with the alert's tenant and module.
    found = wait_for(lambda: (found := by_category(app)) and all(
        (found.get(c, {}).get("status") or {}).get("runbook") and len(found[c]["spec"]["signals"]) == len(alertnames(c))
        for c in EXPECTED) and found, 60, "an Incident per playbook, taken by its seed Runbook, with its signals")
    assert found.keys() == EXPECTED.keys()  # none for initech's healthy api
    for category, (alertname, tenant, module, severity, summary) in EXPECTED.items():
        spec, status = found[category]["spec"], found[category]["status"]
        assert status["runbook"] == f"rb-{ours(category)}", (category, status.get("runbook"))
        assert (spec["tenant"], spec.get("module"), spec["severity"]) == (tenant, module, severity), category
        # The first alert's summary: with two in one post, either.
        assert any(s in spec["summary"] for s in (summary, *SECOND.get(category, ())[1:])), (category, spec["summary"])
        assert sorted(s["name"] for s in spec["signals"]) == alertnames(category), category
        for signal in spec["signals"]:
            assert signal["resolved"] is False and signal["labels"]["alertname"] == signal["name"], category
            assert signal["value"] > 0 and signal["labels"]["tenant"] == tenant, category
    xt_labels = found["cross-tenant"]["spec"]["signals"][0]["labels"]
    assert (xt_labels["target_tenant"], xt_labels["service_account"]) == ("acme", "exports-globex")

    # 3. Back to normal: the alerts resolve in Alertmanager and the intake resolves each Incident's signal.
    recover(sample, app)
    wait_for(lambda: not active(), 90, "the five alerts to resolve in Alertmanager")
    resolved = wait_for(lambda: (now := by_category(app)) and all(
        s["resolved"] for c in EXPECTED for s in now[c]["spec"]["signals"]) and now, 60, "the signals to resolve")
    for category, incident in resolved.items():
        assert incident["metadata"]["name"] == found[category]["metadata"]["name"]  # the same incident, no other
        assert sorted(s["name"] for s in incident["spec"]["signals"]) == alertnames(category), category
        assert all(s["resolvedAt"] > s["time"] for s in incident["spec"]["signals"]), category

    # 4. perf resolves with its alert (resolveWhenSignalsResolve): the operator sets spec.resolved and restores.
    perf = found["perf"]["metadata"]["name"]
    try:
        done = wait_for(lambda: (i := get_json("incident", perf, "-n", app)) and (i.get("status") or {}).get(
            "phase") in ("Verifying", "Closed") and i, 60, "perf's incident resolved by its signal")
    except AssertionError as error:
        now = get_json("incident", perf, "-n", app)
        st = now.get("status") or {}
        raise AssertionError(f"{error}: phase {st.get('phase')}, resolved {now['spec'].get('resolved')}, steps "
                             f"{[(x['name'], x['state'], x.get('reason')) for x in st.get('steps') or []]}, "
                             f"timeline {[(e['event'], e.get('message', '')[:200]) for e in st.get('timeline', [])[-6:]]}"
                             ) from None
    assert done["spec"]["resolved"] is True and done["status"]["times"]["resolved"]
    assert any(e["event"] == "resolved" and "resolveWhenSignalsResolve" in e.get("message", "")
               for e in done["status"]["timeline"]), done["status"]["timeline"]
    # The others wait for a person, though their signal resolved before perf's incident was resolved.
    for category, incident in by_category(app).items():
        if category != "perf":
            status = incident.get("status") or {}
            assert not incident["spec"].get("resolved") and not (status.get("times") or {}).get("resolved"), category
            assert status.get("phase") not in ("Verifying", "Closed"), (category, status.get("phase"))
