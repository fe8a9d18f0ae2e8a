"""Boundaries a namespace's editor cannot cross (issue 19): the records the operator reads back are
its own, and a restore acts only in its incident's namespace, under the same policy as a write.

The attacker is mallory, impersonated (``kubectl --as=mallory --as-group=system:authenticated``),
holding exactly the built-in ClusterRole ``edit`` through a RoleBinding in her namespace (into which
``reliability-center-incident-editor`` aggregates: she may open and resolve Incidents there). The
oracles are the apiserver's refusals and the objects themselves, never the operator's own status.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest

from reliability_center.gateway import PolicyDenied, Ref, WriteContext, WriteGateway
from reliability_center.gateway.holds import holder_id, holds
from tests.support.cluster import apply_docs, apply_runbook, create_object, get_json, kubectl, wait_for
from tests.support.incidents import incident, status, wait_phase

pytestmark = pytest.mark.usefixtures("operator")

MALLORY = ("--as=mallory", "--as-group=system:authenticated")
RBAC = "rbac.authorization.k8s.io"
TENANT = "reliability.center/tenant"
#: What the admission policy reliability-center-records says when it refuses (manifests/admission/policies.yaml).
RECORD_REFUSAL = "is a record reliability-center trusts"
#: The names of the records the operator reads back: snapshots, audit logs, guard ledgers, the isolation ledger.
RECORD_PREFIXES = ("rc-snap-", "rc-audit-", "rc-guards-", "rc-isolations")


def as_mallory(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return kubectl(*args, *MALLORY, input=input, check=False)


def refused_by_policy(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "reliability-center-records" in result.stderr and RECORD_REFUSAL in result.stderr


@pytest.fixture
def attacker(namespace: str) -> str:
    """Her namespace: mallory holds the built-in edit there, nothing else anywhere."""
    kubectl("create", "rolebinding", "mallory-edit", "--clusterrole=edit", "--user=mallory", "-n", namespace)
    assert as_mallory("auth", "can-i", "create", "configmaps", "-n", namespace).stdout.strip() == "yes"
    return namespace


@pytest.fixture
def victim(second_namespace: str) -> str:
    """Another namespace the session operator serves, where mallory holds no right at all."""
    return second_namespace


def tenant_configmap() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tenant-acme", "labels": {"reliability.center/role": "tenant", TENANT: "acme"}},
            "data": {"isolated": "false"}}


def runbook(steps: list[dict[str, Any]]) -> str:
    category = f"b{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": steps})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    return category


#: isolate-tenant takes the tenant's flag (set by test-setup): declared, audited.
ISOLATE = {"name": "isolate", "level": 1, "action": "isolate-tenant", "takeOwnership": True}


def records(namespace: str) -> dict[str, str]:
    """The operator's records in the namespace: name -> resourceVersion."""
    return {c["metadata"]["name"]: c["metadata"]["resourceVersion"]
            for c in get_json("configmaps", "-n", namespace)["items"]
            if c["metadata"]["name"].startswith(RECORD_PREFIXES)}


@pytest.fixture
def mitigated(attacker: str) -> tuple[str, dict[str, Any]]:
    """mallory's own incident in her namespace, mitigated by the operator: it made one record of each kind."""
    apply_docs(attacker, [tenant_configmap()])
    category = runbook([ISOLATE])
    opened = as_mallory("create", "-n", attacker, "-f", "-", input=json.dumps(incident("mine", category=category)))
    assert opened.returncode == 0, opened.stderr
    wait_phase(attacker, "mine", "Mitigated")
    made = records(attacker)
    for prefix in RECORD_PREFIXES:
        assert any(n.startswith(prefix) for n in made), f"no {prefix}* record in {sorted(made)}"
    return attacker, get_json("incident", "mine", "-n", attacker)


def test_a_namespace_editor_can_neither_make_change_nor_delete_a_record_the_operator_trusts(mitigated):
    ns, body = mitigated
    uid = body["metadata"]["uid"]
    before = records(ns)
    # The premise: ConfigMaps as such are hers to make, change and delete.
    assert as_mallory("create", "configmap", "ordinary", "-n", ns, "--from-literal=a=1").returncode == 0
    assert as_mallory("patch", "configmap", "ordinary", "-n", ns, "--type=merge", "-p", '{"data":{"a":"2"}}').returncode == 0

    # But none of hers can be labelled into a snapshot of her incident.
    relabel = as_mallory("label", "configmap", "ordinary", "-n", ns, f"reliability.center/incident-uid={uid}",
                         "reliability.center/snapshot=true")
    assert refused_by_policy(relabel), relabel.stderr

    # Every record the operator made: not changed, not relabelled, not deleted.
    for name in before:
        change = as_mallory("patch", "configmap", name, "-n", ns, "--type=merge", "-p", '{"data":{"forged":"yes"}}')
        assert refused_by_policy(change), (name, change.stderr)
        labels = get_json("configmap", name, "-n", ns)["metadata"].get("labels") or {}
        for label in labels:
            unlabel = as_mallory("label", "configmap", name, "-n", ns, f"{label}-")
            assert refused_by_policy(unlabel), (name, label, unlabel.stderr)
        delete = as_mallory("delete", "configmap", name, "-n", ns, "--wait=false")
        assert refused_by_policy(delete), (name, delete.stderr)
    # Nor all at once (one DELETE of the collection: the apiserver admits each item).
    as_mallory("delete", "--raw", f"/api/v1/namespaces/{ns}/configmaps")
    assert kubectl("get", "configmap", "ordinary", "-n", ns, check=False).returncode != 0  # hers went

    # No new record of any kind: by its name (squatting the name the operator would use) or by its labels.
    hexes = uuid.uuid4().hex[:20]
    forged = [
        ("innocent-looking", {"reliability.center/snapshot": "true", "reliability.center/incident-uid": uid}),
        ("also-innocent", {"reliability.center/incident-uid": uid}),
        (f"rc-snap-{hexes}", {}),
        (f"rc-audit-{hexes}", {}),
        ("audit-elsewhere", {"reliability.center/audit-of": uid}),
        (f"rc-guards-rb-{hexes}", {}),
        (f"rc-guards-rb-{hexes}.tenant-globex", {}),  # a per-tenant rate-limit ledger's name
        ("guards-elsewhere", {"reliability.center/guards": "true"}),
        ("rc-isolations", {}),
    ]
    for name, labels in forged:
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
               "data": {"target": json.dumps({"kind": "RoleBinding", "namespace": "kube-system", "name": "x"})}}
        made = as_mallory("create", "-n", ns, "-f", "-", input=json.dumps(doc))
        assert refused_by_policy(made), (name, made.stderr)

    # PatchPlan file locks (Leases, in the plan's namespace unless RC_LOCK_NAMESPACE says otherwise; `edit`
    # grants Leases): one as the operator takes it (made here by the admin) is not hers to change or free,
    # and none is hers to take, by name or by label.
    lock = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": f"rc-gitops-{hexes}", "labels": {"reliability.center/patchplan-uid": uid}},
            "spec": {"holderIdentity": "a-plan"}}
    create_object(ns, lock)
    held_lock = get_json("lease", lock["metadata"]["name"], "-n", ns)["metadata"]["resourceVersion"]
    steal = as_mallory("patch", "lease", lock["metadata"]["name"], "-n", ns, "--type=merge",
                       "-p", '{"spec":{"holderIdentity":"mallory"}}')
    assert refused_by_policy(steal), steal.stderr
    assert refused_by_policy(as_mallory("delete", "lease", lock["metadata"]["name"], "-n", ns, "--wait=false"))
    for name, labels in ((f"rc-gitops-{uuid.uuid4().hex[:20]}", {}), ("a-lock", {"reliability.center/patchplan-uid": uid})):
        taken = as_mallory("create", "-n", ns, "-f", "-", input=json.dumps(
            {**lock, "metadata": {"name": name, "labels": labels}}))
        assert refused_by_policy(taken), (name, taken.stderr)
    # The Incident's status (its steps' progress) is refused by RBAC already.
    progress = as_mallory("patch", "incident", "mine", "-n", ns, "--subresource=status", "--type=merge",
                          "-p", '{"status":{"phase":"Closed"}}')
    assert progress.returncode != 0 and "cannot patch resource" in progress.stderr, progress.stderr

    # The cluster's word: every record as the operator left it, and no other.
    assert records(ns) == before
    made_by_her = {n for n, _ in forged} - set(before)
    assert not made_by_her & {c["metadata"]["name"] for c in get_json("configmaps", "-n", ns)["items"]}
    assert [(l["metadata"]["name"], l["metadata"]["resourceVersion"]) for l in get_json("leases", "-n", ns)["items"]] \
        == [(lock["metadata"]["name"], held_lock)]


def test_the_operator_and_kubernetes_still_write_and_delete_the_records(mitigated):
    """The policy lets the operator's identity through (its records change on resolve), and the garbage
    collector and the namespace controller delete them with their incident and their namespace."""
    ns, body = mitigated
    before = records(ns)
    resolved = as_mallory("patch", "incident", "mine", "-n", ns, "--type=merge", "-p", '{"spec":{"resolved":true}}')
    assert resolved.returncode == 0, resolved.stderr
    wait_phase(ns, "mine", {"Verifying", "Closed"})
    isolations = json.loads(get_json("configmap", "rc-isolations", "-n", ns)["data"]["tenants"])
    assert "acme" not in isolations, isolations  # the storm guard's ledger released by the operator
    audit_log = next(n for n in before if n.startswith("rc-audit-"))
    assert records(ns)[audit_log] != before[audit_log]  # the restores appended to the durable log
    assert get_json("networkpolicies", "-n", ns)["items"] == []  # rc-isolate-acme deleted on restore

    # Outside this local cluster Kubernetes' controllers run as their own ServiceAccounts (here the
    # controller-manager runs as the admin): the policy lets those identities delete records too.
    for controller in ("generic-garbage-collector", "namespace-controller"):
        gone = kubectl("delete", "configmap", "rc-isolations", "-n", ns, "--dry-run=server",
                       f"--as=system:serviceaccount:kube-system:{controller}", check=False)
        assert gone.returncode == 0, (controller, gone.stderr)
    assert as_mallory("delete", "incident", "mine", "-n", ns).returncode == 0  # hers to delete
    owned = {n for n in before if n.startswith(("rc-snap-", "rc-audit-"))}
    wait_for(lambda: not owned & set(records(ns)), timeout=60,
             what=f"the garbage collector to delete the incident's records {sorted(owned)}")
    kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: kubectl("get", "namespace", ns, check=False).returncode != 0, timeout=120,
             what=f"namespace {ns} (with its guard and isolation ledgers) to be deleted")


def hold_annotations(obj: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (obj["metadata"].get("annotations") or {}).items() if k.startswith("reliability.center/")}


def content(namespace: str) -> dict[str, Any]:
    """What a person configured in the victim's namespace, and what the operator holds there."""
    rolebinding = get_json("rolebinding", "exports-reader", "-n", namespace)
    tenant = get_json("configmap", "tenant-acme", "-n", namespace)
    policies = get_json("networkpolicies", "-n", namespace)["items"]
    return {"subjects": rolebinding.get("subjects"), "rolebinding": hold_annotations(rolebinding),
            "tenant": (tenant.get("data"), hold_annotations(tenant)),
            "policies": {p["metadata"]["name"]: (p["spec"], hold_annotations(p)) for p in policies}}


def test_a_forged_snapshot_does_not_steer_a_restore_into_another_namespace(attacker, victim):
    """Before the fix, mallory could make this snapshot herself: ``kubectl create configmap`` with her
    incident's uid and a target in the victim's namespace, named after a holder the victim's objects
    show in their hold annotations. That path is closed now (test above); the snapshot is planted here
    with the cluster admin's rights, as where the admission policy is not installed
    (``admission.enabled=false``), to prove the restore's own check: it stays in its namespace."""
    # The victim: a tenant isolated (its flag held, an rc-isolate-acme NetworkPolicy held whole) and a
    # subject taken out of a RoleBinding, by an incident of theirs that stays open.
    apply_docs(victim, [
        tenant_configmap(),
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": "exports-reader"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
         "metadata": {"name": "exports-reader", "labels": {TENANT: "acme", "reliability.center/revocable": "true"}},
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "exports-reader"},
         "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "alice"}, {"apiGroup": RBAC, "kind": "User", "name": "bob"}]},
    ])
    theirs = runbook([ISOLATE, {"name": "revoke", "level": 2, "action": "revoke-access", "takeOwnership": True,
                                "approval": {"required": False},
                                "params": {"roleBinding": "exports-reader", "subjects": [{"kind": "User", "name": "alice"}]}}])
    create_object(victim, incident("theirs", category=theirs))
    wait_phase(victim, "theirs", "Mitigated")
    held = content(victim)
    assert [s["name"] for s in held["subjects"]] == ["bob"] and "rc-isolate-acme" in held["policies"]
    assert held["tenant"][0] == {"isolated": "true"}
    targets = {"RoleBinding": "exports-reader", "NetworkPolicy": "rc-isolate-acme", "ConfigMap": "tenant-acme"}
    # Each target's holders by snapshot name (the object's marks name them by holder id: gateway/holds.py).
    snapshots = [c["metadata"]["name"] for c in get_json("configmaps", "-n", victim, "-l",
                                                         "reliability.center/snapshot=true")["items"]]
    holders = {(kind, name): {s for hs in holds(get_json(kind.lower(), name, "-n", victim)) for h in hs
                              for s in snapshots if holder_id(s) == h} for kind, name in targets.items()}
    assert all(holders.values()), holders

    # mallory's incident, in her namespace: one step, which changes nothing.
    mine = runbook([{"name": "contain", "level": 1, "action": "blast-radius"}])
    opened = as_mallory("create", "-n", attacker, "-f", "-", input=json.dumps(incident("mine", category=mine)))
    assert opened.returncode == 0, opened.stderr
    wait_phase(attacker, "mine", "Mitigated")
    uid = get_json("incident", "mine", "-n", attacker)["metadata"]["uid"]

    forged = []
    for (kind, name), names in holders.items():
        for holder in names:
            forged.append({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": holder, "labels": {"reliability.center/snapshot": "true",
                                                                   "reliability.center/incident-uid": uid},
                                        "annotations": {"reliability.center/step": "contain"}},
                           "data": {"target": json.dumps({"kind": kind, "namespace": victim, "name": name}),
                                    "before": "{}", "after": "{}"}})
    assert refused_by_policy(as_mallory("create", "-n", attacker, "-f", "-", input=json.dumps(forged[0])))
    for snapshot in forged:
        create_object(attacker, snapshot)  # the admin's hand: see the docstring

    resolved = as_mallory("patch", "incident", "mine", "-n", attacker, "--type=merge", "-p", '{"spec":{"resolved":true}}')
    assert resolved.returncode == 0, resolved.stderr
    contain = wait_for(lambda: next((s for s in status(attacker, "mine").get("steps") or []
                                     if s["name"] == "contain" and s["state"] == "Restored"), None),
                       timeout=60, what="mallory's step to be restored")

    # The oracle: the victim's objects as their own incident left them; alice still without the access.
    assert content(victim) == held
    assert kubectl("auth", "can-i", "list", "configmaps", "-n", victim, "--as=alice", check=False).stdout.strip() == "no"
    # Refused and recorded, with the reason on the step and an audit Event per forged snapshot.
    assert contain["reason"] == "OutsideIncidentNamespace", contain
    assert f"outside the incident's namespace '{attacker}'" in contain["message"]
    refusals = [e for e in get_json("events", "-n", attacker)["items"]
                if e["reason"] == "AuditRefused" and "OutsideIncidentNamespace" in e["message"]]
    assert {f"{k}/{victim}/{n}" for (k, n), names in holders.items() for _ in names} == \
        {next(w[7:] for w in e["message"].split() if w.startswith("target=")) for e in refusals}


def test_a_restore_passes_the_write_policy_of_its_target(kube, solo_namespace):
    """A restore is a write: an object relabelled since as protected data, or as another tenant's, is
    refused (recorded), not written — the gateway alone, on the real apiserver."""
    ns = solo_namespace
    apply_docs(ns, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}, "data": {"a": "true"}}])
    body = kube.create({"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                        "metadata": {"name": "inc", "namespace": ns},
                        "spec": {"category": "perf", "severity": "high", "tenant": "acme"}})
    ctx = WriteContext(incident=body, trace_id=uuid.uuid4().hex, tenant="acme", step="s", level=1, take_ownership=True)
    gateway = WriteGateway(kube)
    written = gateway.apply(ctx, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags", "namespace": ns},
                                  "data": {"a": "false"}}, action="flags")
    for label, reason in (("reliability.center/data-class=billing", "ProtectedDataClass"),
                          (f"{TENANT}=globex", "TenantScope")):
        kubectl("label", "configmap", "flags", "-n", ns, label, "--overwrite")
        rv = get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"]
        for dry_run in (True, False):
            with pytest.raises(PolicyDenied) as denied:
                gateway.restore(ctx, written.snapshot, action="restore:flags", dry_run=dry_run)
            assert denied.value.verdict.reason == reason
        assert get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"] == rv
        assert get_json("configmap", "flags", "-n", ns)["data"] == {"a": "false"}
        kubectl("label", "configmap", "flags", "-n", ns, label.split("=")[0] + "-")
    # Audited: the first refusal's Event (one Event per step, action, target and outcome).
    events = [e["message"] for e in get_json("events", "-n", ns)["items"] if e["reason"] == "AuditRefused"]
    assert any("ProtectedDataClass" in m and f"target=ConfigMap/{ns}/flags" in m for m in events), events
    assert kube.get(Ref("ConfigMap", ns, written.snapshot)) is not None  # kept: a later restore may still apply
    # With the labels as at the write, the restore applies.
    assert gateway.restore(ctx, written.snapshot, action="restore:flags").restored == ["/data/a"]
    assert get_json("configmap", "flags", "-n", ns)["data"] == {"a": "true"}
