"""An incident as it really goes: a Level 1 step meets another tenant's object and leaves it out, a
Level 2 step runs once someone other than the incident's creator approved it, a person resolves it,
a reviewer merges its postmortem in Gitea — and it reaches ``Closed`` with its five gates passed,
each person's act in its durable audit trail.

Oracles: the cluster's objects (the flag ConfigMaps, the stamps admission put on the Incident and the
PatchPlan, the durable audit log as kubectl reads it), the forge's own word (the postmortem file on its
main branch, who it says merged each pull request).
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.gitea.conftest import create_repo
from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, repository_secret, wait_for
from tests.support.incidents import approve, create, incident, merge_plan, status, steps, wait_phase

pytestmark = [pytest.mark.gitea, pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

#: Another tenant's billing flags: the steps select every billing flags store and must leave this one out.
GLOBEX_FLAGS = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "flags-billing-globex",
                             "labels": {"reliability.center/role": "flags", "reliability.center/module": "billing",
                                        "reliability.center/tenant": "globex"}},
                "data": {"auto-invoicing": "true", "dunning-retries": "true"}}


def gitops_settings(app: str, gitea, repo) -> None:
    apply_docs(app, [
        repository_secret("gitops-credentials", repo.url, username=gitea.user, token=gitea.token),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reliability-center-settings"},
         "data": {"gitopsRepoURL": repo.url, "gitopsProvider": "gitea",
                  "gitopsCredentialsSecret": "gitops-credentials"}}])


def durable_log(app: str, name: str) -> list[dict]:
    log = get_json("incident", name, "-n", app)["status"]["auditLog"]
    return [json.loads(v) for v in get_json("configmap", log, "-n", app)["data"].values()]


def acts(app: str, name: str) -> set[tuple[str, str, str, str]]:
    """(actor, action, outcome, target) of each durable record of a person's act, checked for its
    trace id and tenant on the way."""
    trace = status(app, name)["traceId"]
    found = set()
    for r in durable_log(app, name):
        if r["action"] in ("approval", "resolve", "merge", "merge-revert", "rollback"):
            assert (r["traceId"], r["tenant"]) == (trace, "acme"), r
            found.add((r["actor"], r["action"], r["outcome"], r["target"]))
    return found


def grant(app: str, user: str, role: str) -> None:
    kubectl("create", "rolebinding", f"{role}-{user}", f"--clusterrole=reliability-center-{role}", f"--user={user}",
            "-n", app)


def test_an_incident_with_an_approved_level_2_step_and_a_left_out_target_closes(kube, app, gitea):
    repo = create_repo(gitea, {"README.md": "GitOps repository (governed close test)\n"})
    gitops_settings(app, gitea, repo)
    apply_docs(app, [GLOBEX_FLAGS])
    category = f"cg{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
        {"name": "degrade", "level": 1, "action": "feature-flags-off",
         "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}},
        {"name": "switch", "level": 2, "action": "feature-flags-off",
         "params": {"modules": ["billing"], "flags": ["dunning-retries"]}, "approval": {"required": True}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(app, incident("bill", category=category))  # tenant acme, created by the test's own user

    approve(app, "bill", "switch", user="alice")
    wait_for(lambda: steps(status(app, "bill")).get("switch") == "Succeeded", what="the approved step to run")
    st = wait_phase(app, "bill", "Mitigated")
    assert steps(st) == {"degrade": "Succeeded", "switch": "Succeeded"}
    flags = get_json("configmap", "flags-billing", "-n", app)["data"]
    assert flags["auto-invoicing.tenant.acme"] == "false" and flags["dunning-retries.tenant.acme"] == "false"
    assert get_json("configmap", "flags-billing-globex", "-n", app)["data"] == GLOBEX_FLAGS["data"]

    grant(app, "rita", "incident-editor")  # the on-call engineer who resolves it
    kubectl("patch", "incident", "bill", "-n", app, "--type=merge", "-p", '{"spec":{"resolved":true}}', "--as=rita")
    wait_phase(app, "bill", {"Verifying", "Closed"})
    assert get_json("incident", "bill", "-n", app)["metadata"]["annotations"]["reliability.center/resolved-by"] == \
        "rita"  # stamped by admission
    forged = kubectl("annotate", "incident", "bill", "-n", app, "reliability.center/resolved-by=mallory", "--overwrite",
                     check=False)
    assert forged.returncode != 0 and "records who resolved the Incident" in forged.stderr
    merged = merge_plan(kube, repo, app, "bill-postmortem")
    st = wait_phase(app, "bill", "Closed", timeout=90)

    gates = {g["name"]: g for g in st["gates"]}
    assert len(gates) == 5 and all(g["passed"] for g in gates.values()), gates
    assert gates["audit-complete"]["reason"] == "EveryWriteAudited"
    # The decisions the gate accepted are in the durable log as the cluster stores it.
    records = durable_log(app, "bill")
    assert ("alice", "approval", "counted") in {(r["actor"], r["action"], r["outcome"]) for r in records}
    refused = {(r["step"], r["outcome"]) for r in records if r["target"] == f"ConfigMap/{app}/flags-billing-globex"}
    assert refused == {("degrade", "denied"), ("switch", "denied")}
    # Restored, and the other tenant's store never touched; the postmortem is on the forge's main branch.
    flags = get_json("configmap", "flags-billing", "-n", app)["data"]
    assert not {"auto-invoicing.tenant.acme", "dunning-retries.tenant.acme"} & set(flags)
    assert get_json("configmap", "flags-billing-globex", "-n", app)["data"] == GLOBEX_FLAGS["data"]
    assert "bill" in repo.file(f"postmortems/{app}/bill.md")
    assert status(app, "bill")["phase"] == "Closed"
    # Who approved, who resolved (admission's stamp), who merged the postmortem (Gitea's word).
    assert {("alice", "approval", "counted", f"Approval/{app}/{v['approval']}")
            for v in next(s for s in st["steps"] if s["name"] == "switch")["approval"]["votes"]} | {
        ("rita", "resolve", "resolved", f"Incident/{app}/bill"),
        (merged["merged_by"]["login"], "merge", "merged", f"PatchPlan/{app}/bill-postmortem")} <= acts(app, "bill")


def test_who_merged_the_fix_and_who_asked_for_its_rollback_are_in_the_durable_trail(kube, app, gitea):
    repo = create_repo(gitea, {"README.md": "GitOps repository (rollback trail test)\n"})
    gitops_settings(app, gitea, repo)
    category = f"cr{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [{"name": "fix", "level": 3, "action": "patch-plan",
                                        "params": {"title": "{incident}: the fix"}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(app, incident("fx", category=category))
    merged = merge_plan(kube, repo, app, "fx-fix")
    fix = f"PatchPlan/{app}/fx-fix"
    wait_for(lambda: (merged["merged_by"]["login"], "merge", "merged", fix) in acts(app, "fx"),
             what="the merge of the fix in the incident's trail")

    grant(app, "rob", "patchplan-editor")  # a reviewer who asks for the rollback
    kubectl("patch", "patchplan", "fx-fix", "-n", app, "--type=merge", "-p", '{"spec":{"rollback":true}}', "--as=rob")
    assert get_json("patchplan", "fx-fix", "-n", app)["metadata"]["annotations"][
        "reliability.center/rollback-requested-by"] == "rob"  # stamped by admission
    wait_for(lambda: ("rob", "rollback", "rollback-requested", fix) in acts(app, "fx"),
             what="the rollback request in the incident's trail")
    reverted = merge_plan(kube, repo, app, "fx-fix", which="revert")
    wait_for(lambda: (reverted["merged_by"]["login"], "merge-revert", "merged", fix) in acts(app, "fx"),
             timeout=60, what="the merge of the revert in the incident's trail")
