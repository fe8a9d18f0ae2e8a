"""revoke-access on the real cluster: a level 2 step narrows the RoleBinding that gave the access,
and resolving the incident puts its subjects back exactly. The oracle is the apiserver's own RBAC
authorizer (``kubectl auth can-i --as``), besides the RoleBinding as kubectl reads it."""

from __future__ import annotations

import uuid

import pytest

from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import APPROVERS, approve, create, incident, resolve, status, wait_phase

pytestmark = pytest.mark.usefixtures("operator")

RBAC = "rbac.authorization.k8s.io"
TENANT = "reliability.center/tenant"
REVOCABLE = "reliability.center/revocable"


def runbook(params: dict, approval: dict | None = None) -> str:
    category = f"r{uuid.uuid4().hex[:8]}"
    step = {"name": "revoke", "level": 2, "action": "revoke-access", "params": params,
            # The binding's subjects belong to whoever made it (here test-setup): taken over, audited.
            "takeOwnership": True, "approval": approval or {"required": False}}
    apply_runbook(category, {"steps": [step]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    return category


def user(name: str) -> dict:
    return {"apiGroup": RBAC, "kind": "User", "name": name}


def group(name: str) -> dict:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


def account(name: str, namespace: str) -> dict:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def bind(namespace: str, subjects: list[dict], tenant: str = "acme", revocable: bool = True) -> None:
    """A Role that reads the exports ConfigMaps, and the RoleBinding that gives it away (opted in to
    revoke-access by its label unless ``revocable`` is False)."""
    labels = {TENANT: tenant, **({REVOCABLE: "true"} if revocable else {})}
    apply_docs(namespace, [
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": "exports-reader"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
         "metadata": {"name": "exports-reader", "labels": labels},
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "exports-reader"}, "subjects": subjects},
    ])


def subjects(namespace: str) -> list[dict]:
    return get_json("rolebinding", "exports-reader", "-n", namespace).get("subjects", [])


def can_read(namespace: str, subject: dict) -> bool:
    """The RBAC authorizer's answer: may this subject list ConfigMaps in the namespace?"""
    if subject["kind"] == "Group":
        who = ["--as=someone-else", f"--as-group={subject['name']}"]
    elif subject["kind"] == "ServiceAccount":
        who = [f"--as=system:serviceaccount:{subject['namespace']}:{subject['name']}"]
    else:
        who = [f"--as={subject['name']}"]
    answer = kubectl("auth", "can-i", "list", "configmaps", "-n", namespace, *who, check=False)
    return answer.stdout.strip() == "yes"


def step(namespace: str, name: str, states: set[str]) -> dict:
    return wait_for(lambda: next((s for s in status(namespace, name).get("steps") or []
                                  if s["name"] == "revoke" and s["state"] in states), None),
                    timeout=60, what=f"step revoke of {name} in {sorted(states)}")


def hold_annotations(namespace: str) -> list[str]:
    meta = get_json("rolebinding", "exports-reader", "-n", namespace)["metadata"]
    return [k for k in meta.get("annotations") or {} if k.startswith(("reliability.center/hold-",
                                                                      "reliability.center/holds-"))]


def test_a_level_2_step_narrows_the_rolebinding_and_resolving_puts_every_subject_back(namespace):
    alice, bob, auditors = user("alice"), user("bob"), group("auditors")
    exporter = account("exporter", namespace)
    original = [alice, bob, exporter, auditors]
    bind(namespace, original)
    assert all(can_read(namespace, s) for s in original)  # the test's premise: each one has the access
    category = runbook({"roleBinding": "exports-reader",
                        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "exporter"}]},
                       {"required": True, "approvers": ["security-review"]})
    create(namespace, incident("leak", category=category))
    approve(namespace, "leak", "revoke", user="dave")  # an approver, but not of security review
    wait_for(lambda: (step(namespace, "leak", {"AwaitingApproval"}).get("approval") or {}).get("votes"),
             what="dave's approval weighed")
    assert subjects(namespace) == original  # nothing revoked before security review approves
    approve(namespace, "leak", "revoke", user="sam", groups=(APPROVERS, "security-review"))
    step(namespace, "leak", {"Succeeded"})
    st = wait_phase(namespace, "leak", "Mitigated")
    assert subjects(namespace) == [bob, auditors]
    assert not can_read(namespace, alice) and not can_read(namespace, exporter)
    assert can_read(namespace, bob) and can_read(namespace, auditors)
    (revoke,) = st["steps"]
    assert [(v["user"], v["counted"]) for v in revoke["approval"]["votes"]] == [("dave", False), ("sam", True)]
    assert revoke["state"] == "Succeeded" and revoke["evidence"]["removed"] == [
        "User:alice", f"system:serviceaccount:{namespace}:exporter"], revoke
    write = next(e for e in st["timeline"] if e["event"] == "revoke-access:applied")
    assert write["target"] == f"RoleBinding/{namespace}/exports-reader"
    assert "took over /subjects/0 from test-setup" in write["message"]  # each subject taken out is audited

    resolve(namespace, "leak")
    wait_phase(namespace, "leak", {"Verifying", "Closed"})
    assert subjects(namespace) == original  # exactly, in order
    assert all(can_read(namespace, s) for s in original)
    assert hold_annotations(namespace) == []


def test_a_rolebinding_of_another_tenant_is_refused_and_left_as_it_is(namespace):
    original = [user("alice"), user("bob")]
    bind(namespace, original, tenant="globex")
    category = runbook({"roleBinding": "exports-reader", "subjects": [{"kind": "User", "name": "alice"}]})
    create(namespace, incident("leak", category=category))  # tenant acme
    revoke = step(namespace, "leak", {"Blocked", "Escalated", "Failed", "Succeeded"})
    assert (revoke["state"], revoke["reason"]) == ("Blocked", "TenantScope"), revoke
    assert "belongs to tenant 'globex'" in revoke["message"]
    assert subjects(namespace) == original and can_read(namespace, user("alice"))
    events = [e for e in get_json("events", "-n", namespace)["items"] if e["reason"] == "AuditRefused"]
    assert any("TenantScope" in e["message"] and "exports-reader" in e["message"] for e in events)


def test_a_rolebinding_not_opted_in_is_refused_and_left_as_it_is(namespace):
    """Without the label reliability.center/revocable=true the operator leaves a binding alone, whatever
    its RBAC lets it do (policy.writes.check_place): its own bindings, an admin's, any the owner did not offer."""
    original = [user("alice"), user("bob")]
    bind(namespace, original, revocable=False)
    category = runbook({"roleBinding": "exports-reader", "subjects": [{"kind": "User", "name": "alice"}]})
    create(namespace, incident("leak", category=category))
    revoke = step(namespace, "leak", {"Blocked", "Escalated", "Failed", "Succeeded"})
    assert (revoke["state"], revoke["reason"]) == ("Blocked", "RoleBindingNotOptedIn"), revoke
    assert subjects(namespace) == original and can_read(namespace, user("alice"))
    assert hold_annotations(namespace) == []


def test_a_missing_rolebinding_fails_the_step_with_the_reason(namespace):
    category = runbook({"roleBinding": "no-such-binding"})
    create(namespace, incident("leak", category=category))
    revoke = step(namespace, "leak", {"Failed", "Blocked", "Escalated", "Succeeded"})
    assert (revoke["state"], revoke["reason"]) == ("Failed", "RoleBindingNotFound"), revoke
    assert f"RoleBinding {namespace}/no-such-binding does not exist" in revoke["message"]



def test_two_incidents_on_one_rolebinding_each_keep_their_removal_until_their_own_resolve(namespace):
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    bind(namespace, [alice, bob, carol])
    first = runbook({"roleBinding": "exports-reader", "subjects": [{"kind": "User", "name": "alice"}]})
    second = runbook({"roleBinding": "exports-reader", "subjects": [{"kind": "User", "name": "bob"}]})
    create(namespace, incident("first", category=first))
    wait_phase(namespace, "first", "Mitigated")
    create(namespace, incident("second", category=second))
    revoke = step(namespace, "second", {"Succeeded", "Blocked", "Escalated", "Failed"})
    assert revoke["state"] == "Succeeded", revoke
    assert subjects(namespace) == [carol]
    resolve(namespace, "first")
    wait_phase(namespace, "first", {"Verifying", "Closed"})
    assert subjects(namespace) == [alice, carol]  # the second incident's removal stays
    resolve(namespace, "second")
    wait_phase(namespace, "second", {"Verifying", "Closed"})
    assert subjects(namespace) == [alice, bob, carol]


def test_removing_every_subject_revokes_the_binding_and_resolving_gives_it_back_in_order(namespace):
    """The apiserver stores an emptied subjects list as none: the restore makes the list again."""
    original = [user("alice"), group("auditors"), user("bob")]
    bind(namespace, original)
    category = runbook({"roleBinding": "exports-reader"})
    create(namespace, incident("leak", category=category))
    wait_phase(namespace, "leak", "Mitigated")
    assert subjects(namespace) == [] and not any(can_read(namespace, s) for s in original)
    resolve(namespace, "leak")
    wait_phase(namespace, "leak", {"Verifying", "Closed"})
    assert subjects(namespace) == original and hold_annotations(namespace) == []


def test_revoke_access_takes_out_the_access_its_alert_names_after_security_review(namespace):
    exporter, reporter = account("exporter", namespace), account("reporter", namespace)
    bind(namespace, [exporter, reporter])
    assert can_read(namespace, exporter) and can_read(namespace, reporter)
    # The step as a cross-tenant runbook would write it: the access comes from the alert's labels.
    category = runbook({"roleBinding": "{{ labels.role_binding }}",
                        "subjects": [{"kind": "ServiceAccount", "name": "{{ labels.service_account }}"}]},
                       {"required": True, "approvers": ["security-review"]})
    alert = {"source": "alertmanager", "name": "cross_tenant_access",
             "labels": {"role_binding": "exports-reader", "service_account": "exporter", "tenant": "acme"}}
    create(namespace, incident("xt", category=category, module="exports", severity="critical", signals=[alert]))
    step(namespace, "xt", {"AwaitingApproval"})
    assert subjects(namespace) == [exporter, reporter]  # nothing revoked before security review approves
    approve(namespace, "xt", "revoke", user="sam", groups=(APPROVERS, "security-review"))
    revoke = step(namespace, "xt", {"Succeeded", "Failed", "Escalated", "Blocked"})
    assert revoke["state"] == "Succeeded", revoke
    assert subjects(namespace) == [reporter]
    assert not can_read(namespace, exporter) and can_read(namespace, reporter)
    assert revoke["evidence"]["removed"] == [f"system:serviceaccount:{namespace}:exporter"]
