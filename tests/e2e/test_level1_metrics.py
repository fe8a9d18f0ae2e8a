"""Level 1 reads the metrics it acts on, against the session's real Prometheus (tests/support/monitoring.py).

Values reach Prometheus the way an app's do: a prometheus_client registry served over HTTP (the
harness's exporter), which Prometheus scrapes every second. The oracle for the numbers is Prometheus'
own answer to the same query; for the changes, the cluster's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import prometheus_client
import pytest

from tests.support.cluster import ROOT, apply_runbook, get_json, kubectl, load_yaml, wait_for
from tests.support.incidents import create, incident, status, steps, wait_phase
from tests.support.monitoring import latency_histogram

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

#: The seed perf runbook's blast-radius query (runbooks/perf.yaml), for one namespace.
P99 = ('histogram_quantile(0.99, sum by (le, tenant, module) '
       '(rate(http_request_duration_seconds_bucket{{namespace="{ns}"}}[5m])))')


@pytest.fixture
def latency(monitoring) -> Iterator[prometheus_client.Histogram]:
    """The app's request latency histogram, served by the harness's exporter (registered once a session)."""
    yield latency_histogram(monitoring)


def observe(histogram, monitoring, namespace: str, seconds_by_tenant: dict[str, float]) -> None:
    """Requests of each tenant at that latency, in two batches a scrape apart: ``rate`` needs an increase."""
    for batch in range(2):
        for tenant, seconds in seconds_by_tenant.items():
            for _ in range(20):
                histogram.labels(namespace, tenant, "search").observe(seconds)
        count = 20 * (batch + 1)
        wait_for(lambda: len(monitoring.query(f'http_request_duration_seconds_count{{namespace="{namespace}"}} '
                                              f'>= {count}')) == len(seconds_by_tenant),
                 timeout=30, what=f"Prometheus to scrape batch {batch + 1}")


def runbook_schema_current() -> None:
    """The cluster is shared by sessions of several checkouts, each applying its own CRDs when it starts:
    one older than a step's ``check`` would make the apiserver refuse it. Ours again, if so."""
    def current() -> bool:
        crd = get_json("crd", "runbooks.reliability.center")
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        return "check" in spec["steps"]["items"]["properties"]

    if not current():
        kubectl("apply", "--server-side", "--force-conflicts", "-f",
                str(ROOT / "crds" / "reliability.center_runbooks.yaml"))
        wait_for(current, what="the Runbook CRD with a step's check")


def runbook(steps_: list[dict] | None = None, seed: str | None = None) -> str:
    """A runbook of these steps, or the seed's (runbooks/<seed>.yaml) under a category of this test's: the
    cluster-scoped seed Runbooks are shared with other checkouts' sessions, which apply their own."""
    runbook_schema_current()
    category = f"m{uuid.uuid4().hex[:8]}"
    spec = load_yaml(ROOT / "runbooks" / f"{seed}.yaml")[0]["spec"] if seed else {"steps": steps_}
    apply_runbook(category, {**spec, "match": {"category": category}})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    return category


@pytest.mark.app_at_rest(False)  # the perf runbook restarts schedulers: their pods must exist
def test_a_perf_incident_s_blast_radius_names_the_breaching_tenant_from_prometheus_and_its_breaker_the_alert_s_integration(
        app, monitoring, latency):
    observe(latency, monitoring, app, {"acme": 1.5, "globex": 0.05})
    query = P99.format(ns=app)
    # Prometheus' own numbers: acme's p99 is over the runbook's 0.8 s, globex's is not.
    seen = wait_for(lambda: (r := {s["metric"]["tenant"]: float(s["value"][1]) for s in monitoring.query(query)})
                    and len(r) == 2 and r, timeout=30, what="the p99 per tenant")
    assert seen["acme"] > 0.8 > seen["globex"], seen
    alert = {"source": "alertmanager", "name": "integration_errors",
             "labels": {"alertname": "integration_errors", "integration": "ocr-provider", "tenant": "acme"}}
    create(app, incident("slow", category=runbook(seed="perf"), module="search", signals=[alert]))
    st = wait_phase(app, "slow", {"Mitigated", "Escalated", "Failed"}, timeout=90)
    assert steps(st)["blast-radius"] == "Succeeded" and steps(st)["circuit-breaker"] == "Succeeded", st["steps"]

    blast = next(s for s in st["steps"] if s["name"] == "blast-radius")["evidence"]
    assert blast["source"] == "prometheus" and blast["query"] == query, blast
    assert set(blast["breaching"]["tenant"]) == {"acme"}, blast  # globex is under the threshold
    assert blast["breaching"]["tenant"]["acme"]["value"] == pytest.approx(seen["acme"], rel=1e-3)
    assert blast["breaching"]["tenant"]["acme"]["excess"] == pytest.approx(seen["acme"] - 0.8, rel=1e-3)
    assert set(blast["breaching"]["module"]) == {"search"} and blast["scope"] == "single-tenant"
    # The breaker opened on the integration the alert named, not the one the runbook used to name.
    opened = get_json("configmap", "integration-ocr-provider", "-n", app)["data"]
    assert opened.get("circuitBreaker.tenant.acme") == "open", opened
    untouched = get_json("configmap", "integration-payments-gateway", "-n", app)["data"]
    assert "circuitBreaker.tenant.acme" not in untouched, untouched


def check_step(within: str) -> dict:
    return {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]},
            "check": {"query": 'max(rc_test_error_ratio{namespace="{{ incident.namespace }}"})',
                      "direction": "decrease", "within": within, "interval": "1s"}}


def create_checked(namespace: str, name: str, within: str) -> str:
    """A runbook whose step has a check, and an incident of it; returns the incident's name once its pinned
    runbook shows the check.

    Other checkouts' sessions share this cluster and apply their own, older, Runbook CRD when they start;
    its schema prunes ``check`` from what the operator then lists, and its copy stays pruned until the
    Runbook changes (CI's cluster is its own: no such race). An incident that matched such a copy proves
    nothing: our CRD again, a new Runbook, a new incident."""
    for attempt in range(5):
        made, category = f"{name}-{attempt}", runbook([check_step(within)])
        if "check" not in get_json("runbook", f"rb-{category}")["spec"]["steps"][0]:
            continue  # pruned as the apiserver serves it already
        create(namespace, incident(made, category=category, module="search"))
        pinned = wait_for(lambda: status(namespace, made).get("runbookSpec"), what="the pinned runbook")
        if "check" in pinned["steps"][0]:
            return made
    pytest.fail("five incidents in a row matched a Runbook whose check another session's CRD pruned")


def error_ratio(monitoring, namespace: str, value: float) -> None:
    monitoring.exporter.set(value, namespace=namespace, tenant="acme", module="search", category="check")
    wait_for(lambda: [float(s["value"][1]) for s in monitoring.query(f'rc_test_error_ratio{{namespace="{namespace}"}}')]
             == [value], timeout=30, what=f"Prometheus to read {value}")


def test_a_level_1_step_whose_check_does_not_improve_escalates_with_the_values(app, monitoring):
    error_ratio(monitoring, app, 0.9)
    stuck = create_checked(app, "stuck", "4s")
    st = wait_phase(app, stuck, {"Escalated", "Mitigated", "Failed"}, timeout=60)
    flags = next(s for s in st["steps"] if s["name"] == "flags")
    assert st["phase"] == "Escalated" and (flags["state"], flags["reason"]) == ("Escalated", "CheckNotImproved"), flags
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Escalated"] == "CheckNotImproved"
    check = flags["evidence"]["check"]
    # The values it judged are Prometheus' own: 0.9 before the step, 0.9 at every look after it.
    assert check["baseline"] == 0.9 and check["verdict"] == "not-improved"
    assert len(check["values"]) >= 2 and {v["value"] for v in check["values"]} == {0.9}, check
    assert "baseline 0.9, last 0.9" in flags["message"]
    assert get_json("configmap", "flags-search", "-n", app)["data"]["search-suggestions.tenant.acme"] == "false"
    monitoring.exporter.remove(namespace=app, tenant="acme", module="search", category="check")


def test_a_level_1_step_whose_check_improves_succeeds_once_the_signal_moved(app, monitoring):
    error_ratio(monitoring, app, 0.9)
    better = create_checked(app, "better", "60s")
    # Watching: the action is done, the step waits for its signal (the next steps would wait too).
    wait_for(lambda: next((s for s in status(app, better).get("steps") or [] if s["name"] == "flags"
                           and s["state"] == "Running" and (s.get("evidence") or {}).get("check")), None),
             timeout=30, what="the check to be watched")
    error_ratio(monitoring, app, 0.2)
    st = wait_phase(app, better, {"Escalated", "Mitigated", "Failed"}, timeout=60)
    flags = next(s for s in st["steps"] if s["name"] == "flags")
    assert st["phase"] == "Mitigated" and flags["state"] == "Succeeded", flags
    check = flags["evidence"]["check"]
    assert check["baseline"] == 0.9 and check["values"][-1]["value"] == 0.2 and check["verdict"] == "improved"
    monitoring.exporter.remove(namespace=app, tenant="acme", module="search", category="check")
