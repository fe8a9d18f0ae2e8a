"""Level 1 of the four seed playbooks on the sample app: exactly the intended objects change.

Each test applies the sample app into its own namespace, records what a person
configured on every object, applies one Incident, waits for the phase, and
asserts the exact set of objects that changed — so other tenants' objects and
protected data classes are proven untouched.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.audit import AuditLog
from tests.support.cluster import apply_runbook, get_json, kubectl, load_yaml, wait_for
from tests.support.incidents import (app_content, audit_targets, changed, create, incident, settle_app, status, steps,
                                     wait_phase)
from tests.support.jobs import failed_job

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]


def run_incident(app: str, name: str, **spec) -> tuple[dict, set[str], dict[str, str]]:
    settle_app(app)
    before = app_content(app)
    create(app, incident(name, **spec))
    st = wait_phase(app, name, {"Mitigated", "Escalated", "Failed"})
    after = app_content(app)
    return st, changed(before, after), after


def cm(namespace: str, name: str) -> dict[str, str]:
    return get_json("configmap", name, "-n", namespace)["data"]


def audit_events(namespace: str) -> list[dict]:
    return [e for e in get_json("events", "-n", namespace)["items"] if e["reason"] == "Audit"]


@pytest.mark.app_at_rest(False)  # it writes workloads: their pods must exist
def test_perf_incident_degrades_search_purges_cache_and_restarts_its_schedulers(app):
    st, diff, _ = run_incident(app, "perf-1", category="perf", module="search", summary="p99 over SLO",
                               signals=[{"source": "prometheus", "name": "latency_p99_slo_breach", "value": 2.4,
                                         "threshold": 0.8, "labels": {"tenant": "acme", "module": "search"}}])
    assert st["phase"] == "Mitigated" and st["runbook"] == "perf"
    assert diff == {"ConfigMap/flags-search", "Deployment/cache-search", "Deployment/scheduler-search",
                    "Deployment/scheduler-search-2"}
    flags = cm(app, "flags-search")
    assert flags["search-suggestions.tenant.acme"] == flags["search-recommendations.tenant.acme"] == "false"
    assert flags["search-core"] == "true" and "search-core.tenant.acme" not in flags  # critical flag kept
    assert flags["search-suggestions"] == "true"  # other tenants keep the feature
    assert steps(st) == {"blast-radius": "Succeeded", "degraded-mode": "Succeeded", "circuit-breaker": "Skipped",
                         "purge-cache": "Succeeded", "restart-schedulers": "Succeeded",
                         "adjust-flags": "AwaitingApproval", "rebuild-index": "Pending", "patch-plan": "Pending"}
    evidence = next(s for s in st["steps"] if s["name"] == "blast-radius")["evidence"]
    assert evidence["signalsByTenant"] == {"acme": 1} and evidence["scope"] == "single-tenant"
    # One audit record per write: timeline, Event, with trace id and digests.
    targets = audit_targets(st)
    assert sorted(targets) == sorted(f"{k.split('/')[0]}/{app}/{k.split('/')[1]}" for k in diff)
    events = audit_events(app)
    for target in targets:
        assert any(f"target={target} " in e["message"] and f"traceId={st['traceId']}" in e["message"]
                   and "tenant=acme" in e["message"] for e in events), target
    assert st["times"]["detected"] and st["times"]["mitigated"]


def test_cross_tenant_incident_blocks_the_feature_and_isolates_only_that_tenant(app):
    readers = get_json("rolebinding", "exports-data-readers", "-n", app)["subjects"]
    alert = {"source": "alertmanager", "name": "CrossTenantQueryWithoutTenantId", "value": 3,
             "labels": {"tenant": "acme", "module": "exports", "service_account": "exports-acme"}}
    st, diff, _ = run_incident(app, "xt-1", category="cross-tenant", severity="critical", module="exports",
                               summary="query without tenant_id", signals=[alert])
    # Level 1 done, and the mandatory PatchPlan hands over to a human (here: no GitOps repository to
    # propose it to) while security reviews revoke-access: Escalated, not held back behind the approval.
    assert st["phase"] == "Escalated" and steps(st)["revoke-access"] == "AwaitingApproval"
    assert get_json("rolebinding", "exports-data-readers", "-n", app)["subjects"] == readers  # not before review
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Escalated"] == "NoGitOpsRepository"
    assert diff == {"ConfigMap/flags-exports", "ConfigMap/tenant-acme", "NetworkPolicy/allow-api-from-frontend",
                    "NetworkPolicy/rc-isolate-acme"}
    assert cm(app, "tenant-acme")["isolated"] == "true"
    assert cm(app, "tenant-globex")["isolated"] == "false"
    isolation = get_json("networkpolicy", "rc-isolate-acme", "-n", app)["spec"]
    assert isolation["podSelector"] == {"matchLabels": {"reliability.center/tenant": "acme"}}
    shared = get_json("networkpolicy", "allow-api-from-frontend", "-n", app)["spec"]["podSelector"]
    assert {"key": "reliability.center/tenant", "operator": "NotIn", "values": ["acme"]} in shared["matchExpressions"]
    assert shared["matchLabels"] == {"reliability.center/module": "api"}  # the rest of the policy is kept


@pytest.mark.app_at_rest(False)  # it writes workloads: their pods must exist
def test_ocr_incident_breaks_the_circuit_pauses_its_ingestion_replays_and_goes_human_in_the_loop(app):
    # Two of the OCR replay CronJob's Jobs failed (labelled as its jobTemplate labels them): the queue.
    ocr_replay = load_yaml("examples/protected-app/app.yaml")
    labels = next(d for d in ocr_replay if d["metadata"]["name"] == "ocr-replay")["spec"]["jobTemplate"]["metadata"]
    for name in ("ocr-replay-29650001", "ocr-replay-29650011"):
        failed_job(app, name, labels["labels"])
    st, diff, _ = run_incident(app, "ocr-1", category="ocr", module="ocr", summary="OCR failure rate 30%")
    assert st["phase"] == "Mitigated"
    jobs = {k for k in diff if k.startswith("Job/")}
    assert len(jobs) == 2 and {j.rsplit("-replay-", 1)[0] for j in jobs} == {"Job/ocr-replay-29650001",
                                                                        "Job/ocr-replay-29650011"}, jobs
    assert diff - jobs == {"ConfigMap/integration-ocr-provider", "Deployment/ingest-ocr-acme", "ConfigMap/ocr-pipeline"}
    assert get_json("deployment", "ingest-ocr-acme", "-n", app)["spec"]["replicas"] == 0
    assert get_json("deployment", "ingest-ocr-globex", "-n", app)["spec"]["replicas"] == 2
    assert cm(app, "ocr-pipeline")["mode.tenant.acme"] == "human-in-the-loop"
    assert cm(app, "integration-ocr-provider")["circuitBreaker.tenant.acme"] == "open"
    job = get_json("job", jobs.pop().split("/")[1], "-n", app)
    assert job["spec"]["backoffLimit"] == 2
    pause = next(s for s in st["steps"] if s["name"] == "pause-ingestion")
    assert pause["evidence"]["hpa"]["ingest-ocr-acme"] == {"hpa": "ingest-ocr-acme", "minReplicas": 2, "maxReplicas": 6}
    # The other tenants' ingestion was selected by the step but left out: said in status and in the audit.
    assert sorted(pause["leftOut"]) == [f"Deployment/{app}/ingest-ocr-{t}: belongs to tenant {t!r}, not 'acme'"
                                        for t in ("globex", "initech")]
    refused = [e for e in get_json("events", "-n", app)["items"] if e["reason"] == "AuditRefused"]
    for tenant in ("globex", "initech"):
        assert any(f"target=Deployment/{app}/ingest-ocr-{tenant} " in e["message"] and "TenantScope" in e["message"]
                   for e in refused), tenant


def test_billing_incident_stops_auto_invoicing_and_never_touches_billing_data(app):
    st, diff, _ = run_incident(app, "bill-1", category="billing", module="billing", summary="dunning failing")
    assert st["phase"] == "Mitigated"
    assert diff == {"ConfigMap/flags-billing"}
    flags = cm(app, "flags-billing")
    assert flags["auto-invoicing.tenant.acme"] == flags["auto-dunning.tenant.acme"] == "false"
    assert "billing-core.tenant.acme" not in flags and "dunning-retries.tenant.acme" not in flags


def test_a_protected_data_class_is_refused_by_the_gateway_with_an_audit_record(app, kube):
    """A runbook that would degrade the 'billing' module's data ConfigMaps is stopped by policy."""
    kubectl("label", "configmap", "flags-billing", "-n", app, "reliability.center/data-class=ledger", "--overwrite")
    st, diff, _ = run_incident(app, "bill-2", category="billing", module="billing")
    assert diff == set()
    step = next(s for s in st["steps"] if s["name"] == "stop-auto-invoicing")
    assert step["state"] == "Blocked" and step["reason"] == "ProtectedDataClass"
    # The seed sends a change to protected data to level 3: the incident escalates, it does not fail.
    assert st["phase"] == "Escalated"
    escalated = {c["type"]: c for c in st["conditions"]}["Escalated"]
    assert escalated["reason"] == "ProtectedDataClass"
    refused = [e for e in get_json("events", "-n", app)["items"] if e["reason"] == "AuditRefused"]
    assert any("ProtectedDataClass" in e["message"] for e in refused)


def test_an_incident_for_one_tenant_never_changes_another_tenants_objects(app):
    st, diff, after = run_incident(app, "xt-globex", category="cross-tenant", tenant="globex", module="exports")
    assert st["phase"] == "Escalated" and steps(st)["isolate-tenant"] == "Succeeded"
    assert not any("acme" in k or "initech" in k for k in diff)
    assert cm(app, "tenant-acme")["isolated"] == "false"


def test_no_runbook_for_the_category_is_a_clear_condition(app):
    create(app, incident("nothing", category="unheard-of"))
    st = wait_for(lambda: (s := status(app, "nothing")) and s.get("conditions") and s, what="a condition")
    matched = {c["type"]: c for c in st["conditions"]}["Matched"]
    assert matched["status"] == "False" and matched["reason"] == "NoRunbookMatched"
    assert "unheard-of" in matched["message"]


def test_a_simple_level_1_incident_gets_one_status_patch_from_creation_to_mitigated(app):
    """The turn that walks both steps to Mitigated writes the Incident's status once, at its end (not once per
    step and once more for the phase): counted from the apiserver's audit log, which logs every status patch,
    not from the operator."""
    category = f"one{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
        {"name": "degraded-mode", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}},
        {"name": "breaker", "level": 1, "action": "circuit-breaker", "params": {"integration": "payments-gateway"}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    settle_app(app)
    audit = AuditLog()
    since = audit.position()
    create(app, incident("one-write", category=category, module="search"))
    st = wait_phase(app, "one-write", "Mitigated")
    assert steps(st) == {"degraded-mode": "Succeeded", "breaker": "Succeeded"}
    assert cm(app, "flags-search")["search-suggestions.tenant.acme"] == "false"
    assert cm(app, "integration-payments-gateway")["circuitBreaker.tenant.acme"] == "open"
    writes = audit.writes(since, namespace=app)
    patches = [w for w in writes if w.resource == "incidents" and w.subresource == "status" and w.name == "one-write"]
    assert [(w.verb, w.code) for w in patches] == [("patch", 200)], \
        [f"{w.verb} {w.code} {w.replica} {w.received.time()}" for w in patches]
    # Its two writes' durable audit records reach its audit log in one request (gateway/audit.one_append), not a
    # create and then an update: one record per audit Event the apiserver has for it.
    log = [w for w in writes if w.resource == "configmaps" and w.name == st["auditLog"]]
    assert [(w.verb, w.code) for w in log] == [("create", 201)], [f"{w.verb} {w.code}" for w in log]
    posted = [e for e in audit_events(app) if e["involvedObject"]["name"] == "one-write"]
    assert len(posted) == 2 and len(cm(app, st["auditLog"])) == len(posted)
