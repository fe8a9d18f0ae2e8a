"""Level 2 approvals the apiserver vouches for: real users (impersonation), real RBAC, real admission.

The oracles are the cluster's own: the apiserver's refusals (RBAC, the admission policies in
manifests/admission), the Approval objects as stored (who admission stamped), and the flag
ConfigMap the step writes — it changes only once enough of the right people approved.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import APPROVERS, approve, create, incident, plan_digest, status, steps, wait_phase

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

FLAG = "dunning-retries.tenant.acme"


def governed_runbook(**approval) -> str:
    """A runbook whose one level 2 step turns billing's dunning-retries off once approved."""
    category = f"ap{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100},
                                "steps": [{"name": "switch", "level": 2, "action": "feature-flags-off",
                                           "params": {"modules": ["billing"], "flags": ["dunning-retries"]},
                                           "approval": {"required": True, **approval}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    return category


def flag(app: str) -> str | None:
    return get_json("configmap", "flags-billing", "-n", app)["data"].get(FLAG)


def step_status(app: str, name: str) -> dict:
    return next(s for s in status(app, name)["steps"] if s["name"] == "switch")


def votes(app: str, name: str, count: int) -> list[dict]:
    return wait_for(lambda: (v := (step_status(app, name).get("approval") or {}).get("votes") or []) and
                    len(v) >= count and v, what=f"{count} votes weighed")


def as_creator(app: str, user: str) -> None:
    """Let ``user`` open incidents in this namespace (the editor role the install ships)."""
    kubectl("create", "rolebinding", f"editor-{user}", "--clusterrole=reliability-center-incident-editor",
            f"--user={user}", "-n", app)


def test_admission_refuses_approvals_without_the_verb_in_someone_elses_name_or_edited(app):
    category = governed_runbook()
    create(app, incident("bill", category=category))
    digest = plan_digest(app, "bill", "switch")
    body = {"apiVersion": "reliability.center/v1alpha1", "kind": "Approval", "metadata": {"name": "a1"},
            "spec": {"incident": "bill", "step": "switch", "decision": "Approve", "planDigest": digest}}

    def create_as(user: str, *groups: str, spec: dict | None = None):
        doc = {**body, "spec": {**body["spec"], **(spec or {})}}
        return kubectl("create", "-n", app, "-f", "-", f"--as={user}", *(f"--as-group={g}" for g in groups),
                       input=json.dumps(doc), check=False)

    nobody = create_as("eve")
    assert nobody.returncode != 0 and 'cannot create resource "approvals"' in nobody.stderr
    # May create Approval objects, but lacks the approve verb on the incident: admission says so.
    # (get on the incident too: the approve verb is what is missing, not any right on it)
    kubectl("create", "role", "approvals-only", "--verb=create,get", "--resource=approvals.reliability.center",
            "--resource=incidents.reliability.center", "-n", app)
    kubectl("create", "rolebinding", "approvals-only", "--role=approvals-only", "--user=mallory", "-n", app)
    no_verb = create_as("mallory")
    assert no_verb.returncode != 0
    assert f"user mallory may not approve incident bill in namespace {app}: approving needs the approve verb" \
           in no_verb.stderr
    forged = create_as("alice", APPROVERS, spec={"approver": "bob"})
    assert forged.returncode != 0 and "spec.approver is bob but the apiserver authenticated alice" in forged.stderr
    made = create_as("alice", APPROVERS)
    assert made.returncode == 0, made.stderr
    stored = get_json("approval", "a1", "-n", app)["spec"]
    assert stored["approver"] == "alice" and APPROVERS in stored["groups"]  # stamped at admission
    edit = kubectl("patch", "approval", "a1", "-n", app, "--type=merge", "-p", '{"spec":{"decision":"Reject"}}',
                   check=False)
    assert edit.returncode != 0 and "an Approval is immutable once created" in edit.stderr
    restamp = kubectl("annotate", "incident", "bill", "-n", app, "reliability.center/created-by=alice",
                      "--overwrite", check=False)
    assert restamp.returncode != 0 and "records who created the Incident: it cannot be changed" in restamp.stderr


def test_the_creator_never_counts_and_two_distinct_approvers_are_needed_for_two_of_n(app):
    category = governed_runbook(minApprovals=2)
    as_creator(app, "carol")
    # The old way to approve, in the manifest that creates the incident, is no field at all any more.
    old = incident("bill", category=category, approvals=["switch"])
    refused = kubectl("create", "-n", app, "-f", "-", "--as=carol", input=json.dumps(old), check=False)
    assert refused.returncode != 0 and 'unknown field "spec.approvals"' in refused.stderr
    kubectl("create", "-n", app, "-f", "-", "--as=carol", input=json.dumps(incident("bill", category=category)))
    assert get_json("incident", "bill", "-n", app)["metadata"]["annotations"]["reliability.center/created-by"] == "carol"
    approve(app, "bill", "switch", user="carol")  # carol may approve in general, but not her own incident
    approve(app, "bill", "switch", user="alice")
    approve(app, "bill", "switch", user="alice")  # twice is still one person
    weighed = votes(app, "bill", 3)
    assert [(v["user"], v["counted"]) for v in weighed] == [("carol", False), ("alice", True), ("alice", False)]
    assert weighed[0]["reason"].startswith("created the incident") and weighed[2]["reason"].startswith("already")
    waiting = step_status(app, "bill")
    assert waiting["state"] == "AwaitingApproval" and "2 approvals from distinct people (1 so far)" in \
        waiting["approval"]["missing"]
    assert flag(app) is None  # nothing written yet
    approve(app, "bill", "switch", user="bob")
    wait_for(lambda: steps(status(app, "bill"))["switch"] == "Succeeded", what="the step approved by two")
    assert flag(app) == "false"
    st = status(app, "bill")
    entries = [(e.get("actor"), e["event"]) for e in st["timeline"] if e["event"].startswith("approval:")]
    assert ("carol", "approval:not-counted") in entries and ("bob", "approval:counted") in entries
    assert any(e["event"] == "step:Approved" and "alice, bob" in e["message"] for e in st["timeline"])
    shown = subprocess.run([sys.executable, "-c", "from reliability_center.cli import main; main()", "steps", "bill",
                            "-n", app], capture_output=True, text=True, timeout=60).stdout
    assert "approved by carol" in shown and "(not counted: created the incident" in shown
    assert "approved by bob" in shown and "(counted)" in shown and "\n   approved\n" in shown
    durable = [json.loads(v) for v in get_json("configmap", st["auditLog"], "-n", app)["data"].values()]
    assert {(r["actor"], r["outcome"]) for r in durable if r["action"] == "approval"} >= \
        {("carol", "not-counted"), ("alice", "counted"), ("bob", "counted")}


def test_a_step_for_security_review_is_not_satisfied_by_an_approver_outside_that_group(app):
    category = governed_runbook(approvers=["security-review"])
    create(app, incident("xt", category=category))
    approve(app, "xt", "switch", user="alice")
    assert votes(app, "xt", 1)[0]["reason"] == "not one of the approvers (security-review)"
    assert steps(status(app, "xt"))["switch"] == "AwaitingApproval" and flag(app) is None
    approve(app, "xt", "switch", user="sam", groups=(APPROVERS, "security-review"))
    wait_for(lambda: steps(status(app, "xt"))["switch"] == "Succeeded", what="the step approved by security")
    assert flag(app) == "false"


def test_a_plan_whose_targets_changed_after_approval_asks_again(app):
    category = governed_runbook(minApprovals=2)
    create(app, incident("bill", category=category))
    first = plan_digest(app, "bill", "switch")
    approve(app, "bill", "switch", user="alice", digest=first)
    votes(app, "bill", 1)
    # A second billing flags store appears before the second approval: the step would now write two
    # objects, which is not what alice approved.
    apply_docs(app, [{"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "flags-billing-eu", "labels": {"reliability.center/role": "flags",
                                                                          "reliability.center/module": "billing"}},
                      "data": {"dunning-retries": "true"}}])
    approve(app, "bill", "switch", user="bob", digest=first)
    weighed = votes(app, "bill", 2)
    second = step_status(app, "bill")["approval"]["planDigest"]
    assert second != first and not any(v["counted"] for v in weighed)
    assert all(v["reason"].startswith("approved another plan") for v in weighed)
    targets = {c["target"] for c in step_status(app, "bill")["evidence"]["plan"]["changes"]}
    assert targets == {f"ConfigMap/{app}/flags-billing", f"ConfigMap/{app}/flags-billing-eu"}
    assert steps(status(app, "bill"))["switch"] == "AwaitingApproval" and flag(app) is None
    approve(app, "bill", "switch", user="alice", digest=second)
    approve(app, "bill", "switch", user="bob", digest=second)
    wait_for(lambda: steps(status(app, "bill"))["switch"] == "Succeeded", what="the step approved again")
    assert flag(app) == "false"
    assert get_json("configmap", "flags-billing-eu", "-n", app)["data"][FLAG] == "false"


def test_a_rejection_ends_the_step_rejected_and_escalates(app):
    category = governed_runbook()
    create(app, incident("bill", category=category))
    approve(app, "bill", "switch", user="bob", decision="Reject")
    st = wait_phase(app, "bill", "Escalated")
    switch = next(s for s in st["steps"] if s["name"] == "switch")
    assert switch["state"] == "Rejected" and switch["message"].startswith("rejected by bob")
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Escalated"] == "StepRejected"
    assert any(e["event"] == "approval:rejected" and e["actor"] == "bob" for e in st["timeline"])
    assert flag(app) is None
    events = get_json("events", "-n", app, "--field-selector", "involvedObject.name=bill")["items"]
    assert any("actor=bob action=approval" in e["message"] and "outcome=rejected" in e["message"] for e in events)


def test_a_step_not_approved_before_its_deadline_escalates(app):
    category = governed_runbook(timeout="3s")
    create(app, incident("bill", category=category))
    st = wait_phase(app, "bill", "Escalated", timeout=30)
    switch = next(s for s in st["steps"] if s["name"] == "switch")
    assert switch["state"] == "Escalated" and switch["reason"] == "ApprovalTimeout"
    assert {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}["ApprovalExpired"] == \
        ("True", "ApprovalTimeout")
    assert any(e["event"] == "approval:expired" for e in st["timeline"]) and flag(app) is None


def test_a_level_2_step_on_protected_data_is_refused_at_planning_and_sent_to_level_3(app):
    kubectl("label", "configmap", "flags-billing", "-n", app, "reliability.center/data-class=ledger", "--overwrite")
    category = governed_runbook()
    create(app, incident("bill", category=category))
    st = wait_phase(app, "bill", "Escalated")
    switch = next(s for s in st["steps"] if s["name"] == "switch")
    assert switch["state"] == "Blocked" and switch["reason"] == "ProtectedDataClass"
    assert "escalated to level 3" in switch["message"] and not switch.get("approval")  # never put to approval
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Escalated"] == "ProtectedDataClass"
    assert flag(app) is None
