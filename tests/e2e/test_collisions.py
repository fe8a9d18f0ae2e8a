"""Incidents that collide on shared objects: each keeps its own change until its own resolve.

Every Level 1 action that changes a shared object is run by two incidents of two
tenants on the same object; then by two incidents of one tenant on the same
fields; then a Level 2 step after Level 1 on one object. After each resolve the
objects themselves (the oracle) must show exactly the changes of the incidents
still open, and after the last one the app must be exactly as it was.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.cluster import apply_docs, apply_runbook, get_json, wait_for
from tests.support.incidents import (app_content, approve, changed, create, incident, resolve as resolve_incident,
                                     settle_app, status, steps, wait_phase)

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]


def cm(namespace: str, name: str) -> dict[str, str]:
    return get_json("configmap", name, "-n", namespace).get("data") or {}


def resolve(namespace: str, name: str) -> dict:
    resolve_incident(namespace, name)
    return wait_phase(namespace, name, "Verifying")


def one_step_runbook(action: str, params: dict | None = None) -> str:
    category = f"c{uuid.uuid4().hex[:8]}"
    # Isolation and pausing change fields of the app's own field manager: declared, as the seed runbooks do.
    take = action in ("isolate-tenant", "pause-ingestion")
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100, "maxRefires": 100},
                                "steps": [{"name": "act", "level": 1, "action": action, "params": params or {},
                                           "takeOwnership": take}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook status")
    return category


def exprs(namespace: str) -> list[dict]:
    selector = get_json("networkpolicy", "allow-api-from-frontend", "-n", namespace)["spec"]["podSelector"]
    return selector.get("matchExpressions") or []


def not_in(tenant: str) -> dict:
    return {"key": "reliability.center/tenant", "operator": "NotIn", "values": [tenant]}


# (action, params, what the object shows for a tenant whose change holds: probe(namespace, tenant) -> bool)
ACTIONS = {
    "feature-flags-off": ({"modules": ["search"]},
                          lambda ns, t: cm(ns, "flags-search").get(f"search-suggestions.tenant.{t}") == "false"),
    "circuit-breaker": ({"integration": "ocr-provider"},
                        lambda ns, t: cm(ns, "integration-ocr-provider").get(f"circuitBreaker.tenant.{t}") == "open"),
    "human-in-the-loop": ({"modules": ["ocr"]},
                          lambda ns, t: cm(ns, "ocr-pipeline").get(f"mode.tenant.{t}") == "human-in-the-loop"),
    "isolate-tenant": ({}, lambda ns, t: not_in(t) in exprs(ns) and cm(ns, f"tenant-{t}")["isolated"] == "true"),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_two_tenants_on_one_shared_object_each_keep_their_change_until_their_own_resolve(app, action):
    params, holds = ACTIONS[action]
    category = one_step_runbook(action, params)
    settle_app(app)
    before = app_content(app)
    for tenant in ("acme", "globex"):
        create(app, incident(f"{action[:10]}-{tenant}", category=category, tenant=tenant))
    for tenant in ("acme", "globex"):
        wait_phase(app, f"{action[:10]}-{tenant}", "Mitigated")
    assert holds(app, "acme") and holds(app, "globex")
    resolve(app, f"{action[:10]}-acme")
    assert not holds(app, "acme") and holds(app, "globex")  # globex's change survives acme's resolve
    resolve(app, f"{action[:10]}-globex")
    assert not holds(app, "globex")
    assert changed(before, app_content(app)) == set()  # exactly as it was


@pytest.mark.app_at_rest(False)  # it writes workloads: their pods must exist
def test_shared_ingestion_paused_by_two_tenants_resumes_only_when_both_resolve(app):
    category = one_step_runbook("pause-ingestion", {"modules": ["ocr"], "includeShared": True})
    settle_app(app)
    before = app_content(app)
    replicas = lambda: get_json("deployment", "ingest-ocr-shared", "-n", app)["spec"]["replicas"]  # noqa: E731
    for tenant in ("acme", "globex"):
        create(app, incident(f"pause-{tenant}", category=category, tenant=tenant))
        wait_phase(app, f"pause-{tenant}", "Mitigated")
    assert replicas() == 0
    st = resolve(app, "pause-acme")
    assert replicas() == 0  # still held by globex's incident
    assert "kept for other open incidents" in st["steps"][0]["message"]
    resolve(app, "pause-globex")
    assert replicas() == 1
    assert changed(before, app_content(app)) == set()


def test_two_incidents_of_one_tenant_on_the_same_fields_hold_them_until_the_last_resolves(app):
    settle_app(app)
    before = app_content(app)
    for name in ("bill-1", "bill-2"):
        create(app, incident(name, category="billing", module="billing"))
        wait_phase(app, name, "Mitigated")
    keys = ("auto-invoicing.tenant.acme", "auto-dunning.tenant.acme")
    assert all(cm(app, "flags-billing")[k] == "false" for k in keys)
    first = resolve(app, "bill-1")
    assert all(cm(app, "flags-billing")[k] == "false" for k in keys)  # bill-2 still holds them
    assert steps(first)["stop-auto-invoicing"] == "Restored"
    resolve(app, "bill-2")
    assert not any(k in cm(app, "flags-billing") for k in keys)
    assert changed(before, app_content(app)) == set()


def test_a_level_2_step_after_level_1_on_the_same_object_keeps_the_level_1_change(app):
    """Approving billing's disable-dunning used to remove the same incident's level 1 overrides."""
    settle_app(app)
    before = app_content(app)
    create(app, incident("bill", category="billing", module="billing"))
    wait_phase(app, "bill", "Mitigated")
    approve(app, "bill", "disable-dunning")
    wait_for(lambda: steps(status(app, "bill")).get("disable-dunning") == "Succeeded", what="the level 2 step")
    flags = cm(app, "flags-billing")
    assert flags["auto-invoicing.tenant.acme"] == flags["auto-dunning.tenant.acme"] == "false"  # level 1, kept
    assert flags["dunning-retries.tenant.acme"] == "false"  # level 2
    resolve(app, "bill")
    assert changed(before, app_content(app)) == set()


@pytest.mark.app_at_rest(False)  # it writes workloads: their pods must exist
def test_a_level_2_step_on_the_very_fields_of_level_1_joins_their_hold(app):
    """perf: degraded-mode (level 1) and adjust-flags (level 2) turn off the same search flags."""
    settle_app(app)
    before = app_content(app)
    create(app, incident("perf", category="perf", module="search"))
    approve(app, "perf", "adjust-flags")
    wait_for(lambda: steps(status(app, "perf")).get("adjust-flags") == "Succeeded", timeout=90, what="adjust-flags")
    st = status(app, "perf")
    adjust = next(e for e in st["timeline"] if e.get("step") == "adjust-flags" and e["event"].endswith(":applied"))
    assert "joined the hold" in adjust["message"]
    st = resolve(app, "perf")
    assert steps(st)["degraded-mode"] == steps(st)["adjust-flags"] == "Restored"
    assert "search-suggestions.tenant.acme" not in cm(app, "flags-search")
    assert changed(before, app_content(app)) - {"Deployment/cache-search", "Deployment/scheduler-search",
                                                 "Deployment/scheduler-search-2"} == set()  # restarts stay


def test_a_protected_object_met_half_way_escalates_and_the_writes_before_it_are_restored(app):
    """The step wrote flags-billing, then met a ledger-labelled store: refused, escalated, and resolvable."""
    apply_docs(app, [{"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "flags-billing-ledger",
                                   "labels": {"reliability.center/role": "flags", "reliability.center/module": "billing",
                                              "reliability.center/data-class": "ledger"}},
                      "data": {"auto-invoicing": "true"}}])
    settle_app(app)
    before = app_content(app)
    create(app, incident("bill", category="billing", module="billing"))
    st = wait_phase(app, "bill", "Escalated")
    step = next(s for s in st["steps"] if s["name"] == "stop-auto-invoicing")
    assert step["state"] == "Blocked" and step["reason"] == "ProtectedDataClass"
    assert cm(app, "flags-billing")["auto-invoicing.tenant.acme"] == "false"  # written before the refusal
    assert "auto-invoicing.tenant.acme" not in cm(app, "flags-billing-ledger")
    st = resolve(app, "bill")
    assert steps(st)["stop-auto-invoicing"] == "Restored"
    assert changed(before, app_content(app)) == set()


def test_an_incident_that_failed_is_resolved_and_restored_too(app):
    category = f"c{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}},
                           {"name": "breaker", "level": 1, "action": "circuit-breaker",
                            "params": {"integration": "no-such-integration"}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    settle_app(app)
    before = app_content(app)
    create(app, incident("fails", category=category))
    st = wait_phase(app, "fails", "Failed")
    assert steps(st) == {"flags": "Succeeded", "breaker": "Failed"}
    st = resolve(app, "fails")
    assert steps(st)["flags"] == "Restored"
    assert changed(before, app_content(app)) == set()
