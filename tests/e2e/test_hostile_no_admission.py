"""Issue 19, item 2, as an attacker would: no vote counts while admission is off, not even once the
policies are back (the attackers are users the apiserver authenticates, by kubectl impersonation, holding
exactly the rights named; the other items: ``test_hostile.py``).

The admission policies are cluster-wide: removing them from the shared cluster would leave every
other session's approvals unchecked while this test runs. So this test takes a cluster of its own
(``cluster_of_its_own``: the same binaries, its own etcd and apiserver), installs the CRDs
and roles there but not the policies, runs its own operator against it, and installs the policies
itself half-way. The oracles are that cluster's objects: what the apiserver stored (an Approval in
someone else's name, accepted), the flag ConfigMap (unchanged), and the operator's /healthz.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import CACHE, WORKER, start_operator, stop_operator
from tests.e2e.test_hostile import CREATED_BY, FLAG, relctl
from tests.support.cluster import ROOT, cluster_of_its_own, kubectl, load_yaml, wait_for
from tests.support.incidents import incident
from tests.support.processes import free_port, health

pytestmark = pytest.mark.exclusive  # a cluster of its own (tests/support/cluster.cluster_of_its_own)

BARE_CLUSTER = f"rc-no-admission-{WORKER}"
BARE_NS = "shop-no-admission"


@pytest.fixture
def bare_cluster() -> Iterator[str]:
    with cluster_of_its_own(BARE_CLUSTER) as kubeconfig:
        yield kubeconfig


def test_without_admission_no_approval_counts_not_even_once_the_policies_are_back(bare_cluster):
    def k(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl("--kubeconfig", bare_cluster, *args, input=input, check=check)

    def get(*args: str) -> dict:
        return json.loads(k("get", *args, "-o", "json").stdout)

    def flag() -> str | None:
        return get("configmap", "flags-billing", "-n", BARE_NS)["data"].get(FLAG)

    def creator(name: str) -> str | None:
        return (get("incident", name, "-n", BARE_NS)["metadata"].get("annotations") or {}).get(CREATED_BY)

    def step(name: str) -> dict:
        found = get("incident", name, "-n", BARE_NS).get("status") or {}
        return next((s for s in found.get("steps") or [] if s["name"] == "switch"), {})

    k("apply", "--server-side", "-f", str(ROOT / "crds"))
    k("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
    k("apply", "--server-side", "-f", str(ROOT / "manifests" / "rbac" / "approval_approver_role.yaml"),
      "-f", str(ROOT / "manifests" / "rbac" / "incident_editor_role.yaml"))
    k("create", "namespace", BARE_NS)
    k("create", "rolebinding", "carol", "--clusterrole=reliability-center-incident-editor", "--user=carol",
      "-n", BARE_NS)
    # mallory may make Approvals (as any approver may); the runbook counts only security-review's.
    k("create", "rolebinding", "approvers", "--clusterrole=reliability-center-approver", "--user=mallory",
      "--group=security-review", "-n", BARE_NS)
    flags = next(d for d in load_yaml("examples/protected-app/app.yaml") if d["metadata"]["name"] == "flags-billing")
    k("apply", "-n", BARE_NS, "-f", "-", input=json.dumps(flags))
    k("apply", "-f", "-", input=json.dumps({
        "apiVersion": "reliability.center/v1alpha1", "kind": "Runbook", "metadata": {"name": "rb-billing-guarded"},
        "spec": {"match": {"category": "billing-guarded"},
                 "steps": [{"name": "switch", "level": 2, "action": "feature-flags-off",
                            "params": {"modules": ["billing"], "flags": ["dunning-retries"]},
                            "approval": {"required": True, "approvers": ["security-review"]}}]}}))
    url = f"http://127.0.0.1:{free_port()}/healthz"
    proc = start_operator(CACHE / f"operator-no-admission-{WORKER}.log",
                          {"KUBECONFIG": bare_cluster, "RC_NAMESPACES": BARE_NS, "RC_HEALTH_URL": url,
                           "RC_ADMISSION_CHECK_EVERY": "1"})
    try:
        wait_for(lambda: get("runbook", "rb-billing-guarded").get("status", {}).get("conditions"), timeout=60,
                 what="the operator to validate the runbook")
        reported = wait_for(lambda: (h := health(url)) and h, timeout=60, what="the health endpoint")
        assert reported["admission"].startswith("NOT in force (ApprovalsNotVouched): an Approval in someone else's "
                                                "name"), reported

        # carol opens an incident naming dave as its creator; mallory approves it in alice's name, as a
        # member of security-review. The apiserver keeps both as typed.
        opened = incident("bill", category="billing-guarded")
        opened["metadata"]["annotations"] = {CREATED_BY: "dave"}
        k("create", "-n", BARE_NS, "-f", "-", "--as=carol", input=json.dumps(opened))
        assert creator("bill") == "dave"
        digest = wait_for(lambda: (step("bill").get("approval") or {}).get("planDigest"), what="the plan")
        uid = get("incident", "bill", "-n", BARE_NS)["metadata"]["uid"]
        forged = {"apiVersion": "reliability.center/v1alpha1", "kind": "Approval", "metadata": {"name": "forged"},
                  "spec": {"incident": "bill", "incidentUID": uid, "step": "switch", "decision": "Approve",
                           "planDigest": digest, "approver": "alice", "groups": ["security-review"]}}
        k("create", "-n", BARE_NS, "-f", "-", "--as=mallory", input=json.dumps(forged))
        stored = get("approval", "forged", "-n", BARE_NS)["spec"]
        assert (stored["approver"], stored["groups"]) == ("alice", ["security-review"])  # the apiserver took it
        vote = wait_for(lambda: next(iter((step("bill").get("approval") or {}).get("votes") or []), None),
                        what="the forged vote weighed")
        assert not vote["counted"] and "reliability-center-approvals is not in force" in vote["reason"], vote
        waiting = step("bill")
        assert waiting["state"] == "AwaitingApproval" and "no vote counts" in waiting["message"]
        condition = next(c for c in get("incident", "bill", "-n", BARE_NS)["status"]["conditions"]
                         if c["type"] == "AwaitingApproval")
        assert "reliability-center-approvals is not in force" in condition["message"]
        assert flag() is None  # the cluster: nothing written

        # The policies come back: the operator sees it, and still never counts what was made without them.
        k("apply", "--server-side", "-f", str(ROOT / "manifests" / "admission" / "policies.yaml"))
        wait_for(lambda: (h := health(url)) and h.get("admission") == "in force", timeout=60, interval=1,
                 what="the health report to say admission is in force (Kopf keeps an answer 10 s)")
        k("create", "-n", BARE_NS, "-f", "-", "--as=carol",
          input=json.dumps(incident("bill2", category="billing-guarded")))
        assert creator("bill2") == "carol"  # stamped now
        k("annotate", "incident", "bill", "-n", BARE_NS, "reliability.center/recheck=1")  # a fresh look at bill
        again = wait_for(lambda: next((v for v in (step("bill").get("approval") or {}).get("votes") or []
                                       if "when the apiserver did not vouch" in v["reason"]), None),
                         what="the forged vote weighed again")
        assert not again["counted"] and flag() is None
        relctl("approve", "bill2", "switch", "-n", BARE_NS, "--kubeconfig", bare_cluster,
               "--as", "sam", "--as-group", "security-review")
        wait_for(lambda: flag() == "false", what="a vouched approval to run the step")  # the step could act
        assert step("bill")["state"] == "AwaitingApproval"
    finally:
        stop_operator(proc)
