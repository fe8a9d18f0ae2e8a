"""The post-repair gates on the real cluster: each fails for its own reason, with the evidence an
independent reader finds too (the durable audit ConfigMap, the object's managedFields, kubectl).

The full loop to Closed (an alert in, the postmortem merged in Gitea) is tests/e2e/test_close_loop.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from reliability_center.gateway import audit
from tests.support.cluster import apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import (APPROVERS, approval_schema_current, create, incident, settle_app, status,
                                     wait_phase)

pytestmark = pytest.mark.app_at_rest

RELCTL = [str(Path(sys.executable).with_name("relctl"))]


def relctl(*args: str) -> str:
    return subprocess.run(RELCTL + list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def gates(namespace: str, name: str) -> dict[str, dict]:
    """The gates once all five are written."""
    found = wait_for(lambda: len((status(namespace, name).get("gates") or [])) == 5 and status(namespace, name),
                     timeout=30, what=f"the five gates of {name}")
    return {g["name"]: g for g in found["gates"]}


def conditions(st: dict) -> dict[str, dict]:
    return {c["type"]: c for c in st.get("conditions") or []}


def test_a_resolved_incident_is_verified_by_five_gates_and_stays_open_without_a_postmortem(app):
    settle_app(app)
    create(app, incident("bill", category="billing", module="billing"))
    st = wait_phase(app, "bill", "Mitigated")
    # Gate 3's evidence is taken at mitigation, before anyone resolves: the inverses dry-run on the apiserver.
    rehearsal = conditions(st)["RollbackTested"]
    assert rehearsal["status"] == "True" and "dry-run on the apiserver: all apply" in rehearsal["message"]
    relctl("resolve", "bill", "-n", app)
    result = gates(app, "bill")
    assert {n: g["passed"] for n, g in result.items()} == {
        "audit-complete": True, "gateway-only": True, "rollback-tested": True, "slo-normal": True,
        "postmortem-shared": False}
    assert result["slo-normal"]["reason"] == "NoSLODeclared"
    assert result["postmortem-shared"]["missing"][0].startswith("no GitOps repository configured")
    st = status(app, "bill")
    assert st["phase"] == "Verifying" and not st["times"].get("closed")
    assert conditions(st)["Closed"]["status"] == "False"
    # The durable log, read with kubectl: one record per write of the step, the restore included.
    log = get_json("configmap", st["auditLog"], "-n", app)["data"]
    records = [json.loads(v) for v in log.values()]
    step = next(s for s in st["steps"] if s["name"] == "stop-auto-invoicing")
    for target in step["targets"]:
        assert {(r["action"], r["outcome"]) for r in records if r["target"] == target} >= {
            ("feature-flags-off", "applied"), ("restore:feature-flags-off", "restored")}, target
    shown = relctl("gates", "bill", "-n", app)
    assert "postmortem-shared" in shown and "not closed: 1 of 5 gates failing" in shown


def test_without_a_repository_an_acknowledgement_of_where_the_postmortem_was_shared_closes_it_never_the_creators(
        app):
    approval_schema_current()
    settle_app(app)
    # The creator is a person who may acknowledge too (an approver), not the operator's identity.
    kubectl("create", "rolebinding", "editor-dave", "--clusterrole=reliability-center-incident-editor",
            "--user=dave", "-n", app)
    kubectl("create", "-n", app, "-f", "-", "--as=dave", f"--as-group={APPROVERS}",
            input=json.dumps(incident("bill", category="billing", module="billing")))
    wait_phase(app, "bill", "Mitigated")
    relctl("resolve", "bill", "-n", app)
    shown = gates(app, "bill")["postmortem-shared"]
    assert not shown["passed"]
    # Says exactly what would make it pass.
    assert f"`relctl postmortem-shared bill -n {app} --where URL`" in shown["missing"][0]
    assert get_json("incident", "bill", "-n", app)["metadata"]["annotations"]["reliability.center/created-by"] == "dave"
    relctl("postmortem-shared", "bill", "-n", app, "--where", "https://wiki.example.com/pm/self",
           "--as", "dave", "--as-group", APPROVERS)

    def refused_as_the_creators() -> dict | None:
        gate = gates(app, "bill")["postmortem-shared"]
        return gate if any("created the incident" in m for m in gate.get("missing") or []) else None

    mine = wait_for(refused_as_the_creators, timeout=30, what="the creator's acknowledgement weighed")
    assert not mine["passed"] and mine["reason"] == "PostmortemNotAcknowledged"
    assert status(app, "bill")["phase"] == "Verifying"
    relctl("postmortem-shared", "bill", "-n", app, "--where", "https://wiki.example.com/pm/bill",
           "--as", "carol", "--as-group", APPROVERS)
    st = wait_phase(app, "bill", "Closed", timeout=30)
    assert [g["name"] for g in st["gates"] if g["passed"]] == ["audit-complete", "gateway-only", "rollback-tested",
                                                                "slo-normal", "postmortem-shared"]
    shared = next(g for g in st["gates"] if g["name"] == "postmortem-shared")
    # The oracle of who: the Approval as the apiserver stored it (admission stamped the approver).
    made = [a for a in get_json("approvals", "-n", app)["items"] if a["spec"].get("sharedAt")]
    by = {a["spec"]["approver"]: a for a in made}
    assert set(by) == {"dave", "carol"}
    assert shared["reason"] == "PostmortemAcknowledged"
    assert shared["evidence"].startswith(f"shared at https://wiki.example.com/pm/bill, acknowledged by carol "
                                         f"(Approval {by['carol']['metadata']['name']},")
    assert conditions(st)["Closed"]["status"] == "True"
    # The act is in the durable trail, read with kubectl.
    log = get_json("configmap", st["auditLog"], "-n", app)["data"]
    acts = [r for r in map(json.loads, log.values()) if r["action"] == "postmortem-shared"]
    assert [(r["actor"], r["outcome"], r["target"]) for r in acts] == [
        ("carol", "counted", f"Approval/{app}/{by['carol']['metadata']['name']}")]


def test_a_field_another_manager_changed_during_mitigation_fails_gateway_only_naming_it(app):
    create(app, incident("bill", category="billing", module="billing"))
    wait_phase(app, "bill", "Mitigated")
    # What `kubectl edit` does, under its field manager: the on-call changes a flag the operator set.
    kubectl("patch", "configmap", "flags-billing", "-n", app, "--type=merge", "--field-manager=kubectl-edit",
            "-p", '{"data":{"auto-dunning.tenant.acme":"off-by-oncall"}}')
    relctl("resolve", "bill", "-n", app)
    gate = gates(app, "bill")["gateway-only"]
    assert not gate["passed"] and gate["reason"] == "WrittenOutsideTheGateway", gate
    assert gate["missing"] == [f"ConfigMap/{app}/flags-billing/data/auto-dunning.tenant.acme changed by "
                               "kubectl-edit (Update) after step stop-auto-invoicing set it"]
    # The oracle: the apiserver's own managedFields name that manager for that key.
    fields = get_json("configmap", "flags-billing", "-n", app, "--show-managed-fields")["metadata"]["managedFields"]
    assert any(f["manager"] == "kubectl-edit" and "f:auto-dunning.tenant.acme" in f["fieldsV1"]["f:data"]
               for f in fields)


def test_a_write_missing_from_the_durable_audit_fails_audit_complete_naming_it(app):
    create(app, incident("bill", category="billing", module="billing"))
    st = wait_phase(app, "bill", "Mitigated")
    name = audit.log_name(get_json("incident", "bill", "-n", app)["metadata"]["uid"])
    assert st["auditLog"] == name
    log = get_json("configmap", name, "-n", app)["data"]
    key = next(k for k, v in log.items() if json.loads(v)["action"] == "feature-flags-off")
    target = json.loads(log[key])["target"]
    kubectl("patch", "configmap", name, "-n", app, "--type=json", "-p", json.dumps([{"op": "remove",
                                                                                     "path": f"/data/{key}"}]))
    relctl("resolve", "bill", "-n", app)
    gate = gates(app, "bill")["audit-complete"]
    assert not gate["passed"] and gate["reason"] == "AuditRecordsMissing", gate
    assert f"step stop-auto-invoicing: no audit record of the write to {target}" in gate["missing"]


def test_an_inverse_that_would_not_apply_is_found_at_mitigation_and_fails_rollback_tested(namespace):
    """The rehearsal runs when level 1 is done; a flag edited by someone while a later step still
    waits (a slow restart) makes the dry-run of its inverse fail: known before anyone resolves."""
    from tests.support.cluster import slow_schedulers

    slow_schedulers(namespace, ["sched-slow"], "slowmod", min_ready=6)
    category = f"g{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "flags", "level": 1, "action": "feature-flags-off",
                            "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}},
                           {"name": "restart", "level": 1, "action": "restart-one-by-one",
                            "params": {"role": "scheduler", "modules": ["slowmod"]}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), 30, "runbook")
    create(namespace, incident("slow", category=category, module="billing"))
    wait_for(lambda: {s["name"]: s["state"] for s in status(namespace, "slow").get("steps") or []}.get("restart")
             == "Running", 30, "the restart to wait on its rollout")
    kubectl("patch", "configmap", "flags-billing", "-n", namespace, "--type=merge", "--field-manager=kubectl-edit",
            "-p", '{"data":{"auto-invoicing.tenant.acme":"paused-by-oncall"}}')
    st = wait_phase(namespace, "slow", "Mitigated", timeout=60)
    rehearsal = conditions(st)["RollbackTested"]
    assert rehearsal["status"] == "False" and rehearsal["reason"] == "DryRunRefused", rehearsal
    assert "auto-invoicing.tenant.acme: changed by someone else since" in rehearsal["message"]
    relctl("resolve", "slow", "-n", namespace)
    gate = gates(namespace, "slow")["rollback-tested"]
    assert not gate["passed"] and gate["reason"] == "RollbackNotProven", gate
    assert gate["missing"][0].startswith("dry-run of the inverses failed: 1 of 1 inverses would not apply")
    # The oracle: the apiserver kept the on-call's value (the real restore left it alone too).
    assert get_json("configmap", "flags-billing", "-n", namespace)["data"]["auto-invoicing.tenant.acme"] == \
        "paused-by-oncall"
