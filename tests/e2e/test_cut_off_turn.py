"""A turn cut off after its writes landed and before its one durable append (gateway/audit.one_append), its
incident resolved before any operator took the turn again: the restore records each write that landed, from
its snapshot, under the key the turn would have used, before it lets the hold go, and drops the snapshot of a
write that never landed. The incident passes ``audit-complete`` and closes.

The window is opened for real: a ValidatingAdmissionPolicy refuses every write of this incident's audit-log
ConfigMap, so each turn's append fails while its writes have landed (the operator retries the turn, which
finds its holds, and fails again); and it refuses the second step's target, so that step's snapshot is made
and its write never lands (the durable state a SIGKILL between the snapshot and the write leaves). The
operator is SIGKILLed in that state, the incident resolved while none runs, the policy removed, an operator
started. The oracles are the cluster's own objects: the audit-log ConfigMap's keys and records, the audit
Event the write posted when it landed (its name carries the record's deterministic key), the ConfigMaps'
data and holds, the snapshots, the incident's gates.
"""

from __future__ import annotations

import json
import signal
import uuid

from reliability_center.gateway import Ref, audit
from reliability_center.gateway.holds import holder_id, holds
from reliability_center.gateway.kube import Invalid
from reliability_center.gateway.writes import INCIDENT_UID_LABEL, STEP_ANNOTATION
from tests.conftest import CACHE, sample_app, start_operator, stop_operator
from tests.e2e.test_gates import relctl
from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import APPROVERS, approval_schema_current, create, incident, resolve, status, wait_phase

LANDS, REFUSED = "flags-search", "integration-ocr-provider"
REFUSAL = "refused by the test: the write must not land"


def refuse(namespace: str, names: list[str]) -> str:
    """A policy refusing every create and update of ConfigMaps ``names`` in ``namespace``; in force on return."""
    policy = f"rc-test-cut-off-{namespace}"
    apply_docs(None, [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": policy},
         "spec": {"failurePolicy": "Fail",
                  "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                          "operations": ["CREATE", "UPDATE"],
                                                          "resources": ["configmaps"]}]},
                  "validations": [{"expression": f"!(object.metadata.name in {json.dumps(names)})",
                                   "message": REFUSAL, "reason": "Invalid"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": policy},
         "spec": {"policyName": policy, "validationActions": ["Deny"],
                  "matchResources": {"namespaceSelector": {"matchLabels": {
                      "kubernetes.io/metadata.name": namespace}}}}},
    ])
    wait_for(lambda: not log_may_be_written(namespace, names[0]), timeout=30, what="the policy in force")
    return policy


def log_may_be_written(namespace: str, name: str) -> bool:
    """Whether the apiserver admits a create of ConfigMap ``name`` (a dry-run: nothing is stored)."""
    from tests.support.cluster import api

    try:
        api().create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                      "data": {}}, dry_run=True)
    except Invalid as exc:
        assert REFUSAL in str(exc), exc
        return False
    return True


def snapshots(namespace: str, uid: str) -> dict[str, dict]:
    """The incident's snapshots by step."""
    found = get_json("configmaps", "-n", namespace, "-l", f"{INCIDENT_UID_LABEL}={uid}")["items"]
    return {c["metadata"]["annotations"][STEP_ANNOTATION]: c for c in found}


def test_a_turn_cut_off_before_its_audit_append_and_resolved_meanwhile_closes_with_each_landed_write_recorded_once(
        solo_namespace, seed_runbooks, kube):
    ns = solo_namespace  # the session operator ignores it: only this test's operators act there
    apply_docs(ns, sample_app(at_rest=True))  # no pods (tests/conftest.py: app): its steps write ConfigMaps only
    original = {name: get_json("configmap", name, "-n", ns)["data"] for name in (LANDS, REFUSED)}
    category = f"u{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100, "maxRefires": 100}, "steps": [
        {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}},
        {"name": "breaker", "level": 1, "action": "circuit-breaker", "params": {"integration": "ocr-provider"}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="the runbook")
    create(ns, incident("cut", category=category))
    uid = get_json("incident", "cut", "-n", ns)["metadata"]["uid"]
    log = audit.log_name(uid)
    policy = refuse(ns, [log, REFUSED])
    operators = []
    try:
        try:
            operators.append(start_operator(CACHE / "operator-cut-off.log", {"RC_NAMESPACES": ns}))

            def cut_off() -> dict | None:
                """The window: the first write held, the second step's snapshot taken, the append refused."""
                taken = snapshots(ns, uid)
                if set(taken) != {"flags", "breaker"}:
                    return None
                held = [h for hs in holds(get_json("configmap", LANDS, "-n", ns)) for h in hs]
                if holder_id(taken["flags"]["metadata"]["name"]) not in held:
                    return None
                conditions = (get_json("incident", "cut", "-n", ns).get("status") or {}).get("conditions") or []
                reconciling = [c for c in conditions if c["type"] == "Reconciling"]
                return taken if reconciling and REFUSAL in reconciling[0]["message"] else None

            taken = wait_for(cut_off, timeout=30, what="the writes landed and the audit append refused")
            stop_operator(operators.pop(), signal.SIGKILL)
            # The window, as the cluster shows it: a landed write with no durable record, one that never landed,
            # and no turn's status (each turn failed at its append).
            assert kube.get(Ref("ConfigMap", ns, log)) is None and not status(ns, "cut").get("steps")
            assert get_json("configmap", REFUSED, "-n", ns)["data"] == original[REFUSED]
            assert not holds(get_json("configmap", REFUSED, "-n", ns))
            posted = [e for e in get_json("events", "-n", ns)["items"]
                      if e.get("reason") == "Audit" and e["involvedObject"]["name"] == "cut"]
            landed = [e for e in posted if f"target=ConfigMap/{ns}/{LANDS} outcome=applied" in e["message"]]
            assert len(landed) == 1 and not [e for e in posted if REFUSED in e["message"]], posted

            resolve(ns, "cut")  # by a person, while no operator runs
        finally:
            kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy,
                    "--ignore-not-found")
        wait_for(lambda: log_may_be_written(ns, log), timeout=30, what="the policy gone")
        operators.append(start_operator(CACHE / "operator-cut-off.log", {"RC_NAMESPACES": ns}))
        wait_phase(ns, "cut", "Verifying", timeout=30)
        gate = wait_for(lambda: next((g for g in status(ns, "cut").get("gates") or []
                                      if g["name"] == "audit-complete"), None), what="the audit-complete gate")
        assert gate["passed"] and gate["reason"] == "EveryWriteAudited", gate

        # The durable log: the landed write once, under the key its audit Event carries, and its restore;
        # nothing of the write that never landed.
        records = {key: json.loads(line) for key, line in get_json("configmap", log, "-n", ns)["data"].items()}
        applied = {k: r for k, r in records.items() if r["outcome"] == "applied"}
        assert [(r["step"], r["target"], r["action"]) for r in applied.values()] == \
            [("flags", f"ConfigMap/{ns}/{LANDS}", "feature-flags-off")], records
        assert list(applied) == [landed[0]["metadata"]["name"].removeprefix("cut.")]
        restores = [r for r in records.values() if r["action"].startswith("restore:")]
        assert [(r["step"], r["target"], r["outcome"]) for r in restores] == \
            [("flags", f"ConfigMap/{ns}/{LANDS}", "restored")], records
        assert not [r for r in records.values() if r["target"].endswith(REFUSED)], records
        record = next(iter(applied.values()))
        assert (record["before"], record["after"]) == (restores[0]["after"], restores[0]["before"])
        # The objects as they were, no hold left; the never-landed write's snapshot dropped, the landed one's kept.
        for name in (LANDS, REFUSED):
            obj = get_json("configmap", name, "-n", ns)
            assert obj["data"] == original[name] and not holds(obj), name
        assert {s: c["metadata"]["name"] for s, c in snapshots(ns, uid).items()} == \
            {"flags": taken["flags"]["metadata"]["name"]}

        # ... and the incident closes once someone says where its postmortem was shared (no GitOps repository).
        approval_schema_current()
        relctl("postmortem-shared", "cut", "-n", ns, "--where", "https://wiki.example.com/pm/cut",
               "--as", "carol", "--as-group", APPROVERS)
        try:
            st = wait_phase(ns, "cut", "Closed", timeout=30)
        except AssertionError as late:  # which gate kept it open
            raise AssertionError(f"{late}; gates: {status(ns, 'cut').get('gates')}") from None
        assert all(g["passed"] for g in st["gates"]), st["gates"]
    finally:
        for proc in operators:
            stop_operator(proc)
