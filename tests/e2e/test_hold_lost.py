"""A hold annotation someone removed: the restore says so instead of "restored", and the gate sees it.

Oracles: the flags ConfigMap as kubectl reads it (the field stays at the value the step set), and
the incident's durable audit log; then a person puts the field back and the gate passes.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.cluster import apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import create, incident, resolve, status, wait_phase

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

FLAG = "auto-invoicing.tenant.acme"


def rollback_gate(app: str, name: str) -> dict | None:
    return next((g for g in status(app, name).get("gates") or [] if g["name"] == "rollback-tested"), None)


def test_a_hold_annotation_removed_by_someone_is_reported_lost_and_keeps_the_incident_open(app):
    category = f"hl{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [{"name": "stop-invoicing", "level": 1, "action": "feature-flags-off",
                                        "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(app, incident("bill", category=category))
    wait_phase(app, "bill", "Mitigated")
    annotations = get_json("configmap", "flags-billing", "-n", app)["metadata"]["annotations"]
    held = [k for k in annotations if k.startswith("reliability.center/holds-")]
    assert len(held) == 1 and len(annotations[held[0]]) == 12  # the premise: the step holds its one key, alone
    kubectl("annotate", "configmap", "flags-billing", "-n", app, *(f"{k}-" for k in held))

    resolve(app, "bill")
    st = wait_phase(app, "bill", {"Verifying", "Closed"})
    field = f"ConfigMap/{app}/flags-billing/data/{FLAG}"
    (step,) = st["steps"]
    assert (step["state"], step["reason"]) == ("Restored", "HoldLost"), step
    assert field in step["message"]
    lost = next(c for c in st["conditions"] if c["type"] == "HoldLost")
    assert lost["status"] == "True" and field in lost["message"]
    assert get_json("configmap", "flags-billing", "-n", app)["data"][FLAG] == "false"  # nothing was restored
    log = get_json("configmap", st["auditLog"], "-n", app)["data"]
    outcomes = {(r["action"], r["outcome"]) for r in map(json.loads, log.values())}
    assert ("restore:feature-flags-off", "hold-lost") in outcomes and \
        ("restore:feature-flags-off", "restored") not in outcomes
    gate = wait_for(lambda: rollback_gate(app, "bill"), what="the rollback-tested gate")
    assert not gate["passed"] and gate["reason"] == "HoldLost", gate
    assert any(m.startswith(field) for m in gate["missing"]), gate
    assert status(app, "bill")["phase"] == "Verifying"

    # A person who knows the value is no longer needed puts it back: the gate sees it on its next look.
    kubectl("patch", "configmap", "flags-billing", "-n", app, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": f"/data/{FLAG}"}]))
    wait_for(lambda: (g := rollback_gate(app, "bill")) and g["passed"] and g, timeout=30,
             what="the rollback-tested gate to pass once the field is back")
