"""Guards kept in the cluster: rate limit, storm guard, ineffective remediation; runbook readiness."""

from __future__ import annotations

import uuid

import pytest

from tests.support.audit import AuditLog
from tests.support.cluster import TEST_LABELS, apply_docs, get_json, wait_for
from tests.support.incidents import create, incident, steps, wait_phase

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]


def custom_runbook(category: str, steps_: list[dict], **limits) -> str:
    name = f"rb-{category}"
    apply_docs(None, [{"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
                       "metadata": {"name": name, "labels": TEST_LABELS},
                       "spec": {"match": {"category": category}, "limits": limits, "steps": steps_}}])
    wait_for(lambda: any(c["type"] == "Ready" for c in get_json("runbook", name).get("status", {}).get("conditions", [])),
             what=f"runbook {name} status")
    return name


def category() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


def test_rate_limit_escalates_the_incident_past_the_limit(app):
    cat = category()
    custom_runbook(cat, [{"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}}],
                   maxRunsPerHour=2)
    for i in range(2):
        create(app, incident(f"r{i}", category=cat, module="search"))
        wait_phase(app, f"r{i}", "Mitigated")
    audit = AuditLog()
    since = audit.position()
    create(app, incident("r2", category=cat, module="search"))
    st = wait_phase(app, "r2", "Escalated")
    admitted = {c["type"]: c for c in st["conditions"]}["Admitted"]
    assert admitted["status"] == "False" and admitted["reason"] == "RateLimited"
    assert steps(st) == {"flags": "Skipped"}
    # Its step read the flag store while the guards were counted, and wrote nothing once they refused: the
    # apiserver saw the operator write the incident's status and nothing else (no snapshot, flag, record).
    writes = [w.target for w in audit.writes(since, namespace=app, operator=True)]
    assert writes == [f"incidents/status {app}/r2"], writes
    # The state lives in the cluster: a ConfigMap with the tenant's admissions, not the operator's memory.
    guards = get_json("configmap", f"rc-guards-rb-{cat}.tenant-acme", "-n", app)
    assert guards["data"]["admissions"].count('"incident_uid"') == 2


def admitted(namespace: str, name: str) -> dict:
    """The Admitted condition of an incident the operator has finished with (escalated: a Level 3 hand-over)."""
    st = wait_phase(namespace, name, "Escalated", timeout=120)
    return {c["type"]: c for c in st["conditions"]}["Admitted"]


def test_other_tenants_admissions_never_let_a_tenant_at_its_limit_through(namespace):
    # Seen before: the history was the last 200 admissions of all tenants, so 200 other tenants' incidents
    # pushed acme's out and its 11th was admitted. A Level 3 hand-over writes nothing to any app.
    cat = category()
    # maxRefires at its most: the rate limit alone is under test, not ten firings of one fingerprint.
    custom_runbook(cat, [{"name": "human", "level": 3, "action": "escalate"}], maxRunsPerHour=10, maxRefires=100)
    for i in range(10):
        create(namespace, incident(f"acme-{i}", category=cat, tenant="acme"))
    assert [admitted(namespace, f"acme-{i}")["reason"] for i in range(10)] == ["Allowed"] * 10
    create(namespace, incident("acme-10", category=cat, tenant="acme"))
    assert admitted(namespace, "acme-10")["reason"] == "RateLimited"
    for i in range(200):
        create(namespace, incident(f"other-{i}", category=cat, tenant=f"tenant-{i}"))
    assert [admitted(namespace, f"other-{i}")["reason"] for i in range(200)] == ["Allowed"] * 200
    create(namespace, incident("acme-11", category=cat, tenant="acme"))
    refused = admitted(namespace, "acme-11")
    assert refused["status"] == "False" and refused["reason"] == "RateLimited", refused
    assert "10 mitigations for tenant 'acme'" in refused["message"]


def test_the_same_incident_firing_again_after_mitigation_escalates_instead_of_looping(app):
    cat = category()
    custom_runbook(cat, [{"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}}],
                   maxRefires=0)
    create(app, incident("first", category=cat, module="search"))
    wait_phase(app, "first", "Mitigated")
    create(app, incident("again", category=cat, module="search"))
    st = wait_phase(app, "again", "Escalated")
    assert {c["type"]: c for c in st["conditions"]}["Admitted"]["reason"] == "IneffectiveRemediation"


def test_storm_guard_never_isolates_more_than_the_limit(app):
    cat = category()
    custom_runbook(cat, [{"name": "isolate", "level": 1, "action": "isolate-tenant", "takeOwnership": True}],
                   maxIsolatedTenants=2)
    for tenant in ("acme", "globex"):
        create(app, incident(f"iso-{tenant}", category=cat, tenant=tenant))
        wait_phase(app, f"iso-{tenant}", "Mitigated")
    create(app, incident("iso-initech", category=cat, tenant="initech"))
    st = wait_phase(app, "iso-initech", "Escalated")
    step = st["steps"][0]
    assert step["state"] == "Escalated" and step["reason"] == "StormGuard"
    assert "acme, globex" in step["message"]
    assert get_json("configmap", "tenant-initech", "-n", app)["data"]["isolated"] == "false"
    names = {p["metadata"]["name"] for p in get_json("networkpolicies", "-n", app)["items"]}
    assert "rc-isolate-initech" not in names


def test_a_tenant_that_does_not_exist_fails_the_step_with_a_reason(app):
    cat = category()
    custom_runbook(cat, [{"name": "isolate", "level": 1, "action": "isolate-tenant", "takeOwnership": True}])
    create(app, incident("ghost", category=cat, tenant="ghost-tenant"))
    st = wait_phase(app, "ghost", "Failed")
    assert st["steps"][0]["reason"] == "TenantNotFound" and "ghost-tenant" in st["steps"][0]["message"]
    assert "rc-isolate-ghost-tenant" not in {p["metadata"]["name"]
                                             for p in get_json("networkpolicies", "-n", app)["items"]}


@pytest.mark.parametrize("step, reason", [
    ({"name": "x", "level": 1, "action": "no-such-action"}, "UnknownAction"),
    ({"name": "x", "level": 1, "action": "circuit-breaker", "params": {"integration": 42}}, "InvalidParams"),
    ({"name": "x", "level": 1, "action": "run-job", "params": {"cronJob": "j"}}, "LevelNotAllowed"),
])
def test_the_operator_marks_a_bad_runbook_not_ready_with_the_reason(crds, step, reason):
    name = f"bad-{uuid.uuid4().hex[:6]}"
    apply_docs(None, [{"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
                       "metadata": {"name": name, "labels": TEST_LABELS},
                       "spec": {"match": {"category": category()}, "steps": [step]}}])
    ready = wait_for(lambda: next((c for c in get_json("runbook", name).get("status", {}).get("conditions", [])
                                   if c["type"] == "Ready"), None), what="Ready condition")
    assert ready["status"] == "False" and ready["reason"] == reason


def test_the_seed_runbooks_are_ready(operator):
    for name in ("perf", "cross-tenant", "ocr", "billing"):
        rb = get_json("runbook", name)
        ready = {c["type"]: c for c in rb["status"]["conditions"]}["Ready"]
        assert ready["status"] == "True", ready
        assert rb["status"]["maxLevel"] == 3


def test_an_incident_without_a_runbook_is_matched_when_one_becomes_ready(app):
    cat = category()
    create(app, incident("early", category=cat, module="search"))
    wait_for(lambda: any(c["type"] == "Matched" and c["reason"] == "NoRunbookMatched"
                         for c in get_json("incident", "early", "-n", app).get("status", {}).get("conditions", [])),
             what="NoRunbookMatched")
    custom_runbook(cat, [{"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}}])
    st = wait_phase(app, "early", "Mitigated")
    assert st["runbook"] == f"rb-{cat}"
