"""A PatchPlan end to end: real cluster, real operator process, real Gitea, real Argo CD.

kubectl-applied PatchPlan → pull request in Gitea → merged through the Gitea
API → status Merged → Argo CD (tests/support/argocd.py: an automated
Application on the repository's path) syncs the merge commit → Synced →
Verified; then ``relctl rollback`` → revert pull request → merged → Argo CD
syncs it → RolledBack, and Argo CD's later syncs keep the reverted state.

No test here writes the Application's status: the stale status refused is the real controller's,
frozen at the merge (RevisionMismatch). The other stale case, health computed before the sync
finished (StaleHealth), is a race the real controller cannot be made to lose on demand: the trust
rule's unit test covers it (tests/unit/gitops/test_gitops_lifecycle.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import yaml

from reliability_center.cli.rollback import rollback
from reliability_center.gateway import Ref
from tests.gitea.conftest import DEPLOYMENT, create_repo
from tests.support.argocd import synced
from tests.support.cluster import apply_docs, get_json, kubectl, repository_secret, wait_for

pytestmark = pytest.mark.gitea

TICKS = 60  # seconds: the session operator polls active plans every second (RC_PATCHPLAN_POLL, _SYNC_POLL)


def plan_status(kube, namespace: str, name: str) -> dict[str, Any]:
    return (kube.get(Ref("PatchPlan", namespace, name)) or {}).get("status") or {}


def wait_phase(kube, namespace: str, name: str, phase: str) -> dict[str, Any]:
    def probe():
        status = plan_status(kube, namespace, name)
        if status.get("phase") == "Failed" and phase != "Failed":
            raise AssertionError(f"PatchPlan failed: {status.get('conditions')}")
        return status if status.get("phase") == phase else None

    return wait_for(probe, TICKS, f"PatchPlan {namespace}/{name} to be {phase}", interval=0.2)


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == "Ready")


def replicas(namespace: str) -> int:
    return get_json("deployment", "web", "-n", namespace)["spec"]["replicas"]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def reconciled_after(app: dict[str, Any], moment: str) -> str | None:
    """Argo CD's reconciledAt once it is later than ``moment`` (it looked again)."""
    at = (app.get("status") or {}).get("reconciledAt")
    return at if at and when(at) > when(moment) else None


def shop(gitea, argocd, namespace: str, **options: Any):
    """A GitOps repository with the shop's Deployment, synced by an automated Application named after the test."""
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": DEPLOYMENT.replace("namespace: shop",
                                                                              f"namespace: {namespace}")})
    argocd.add_repository(repo.url, gitea.user, gitea.token)
    argocd.create_application(namespace, repo.url, "apps/shop", namespace, **options)
    apply_docs(namespace, [repository_secret("gitops-credentials", repo.url, username=gitea.user,
                                             token=gitea.token)])
    return repo


def scale_plan(repo, argo_app: str, value: int = 5) -> str:
    return yaml.safe_dump({
        "apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": "scale-web"},
        "spec": {"repository": {"url": repo.url, "provider": "gitea", "baseBranch": "main",
                                "credentialsSecret": "gitops-credentials"},
                 "title": f"Scale web to {value} for the peak", "argoApplication": argo_app,
                 "changes": [{"path": "apps/shop/deployment.yaml", "operation": "setValue",
                              "yamlPath": "spec.replicas", "value": value}]}})


def test_patchplan_pr_merge_sync_verify_then_rollback(kube, namespace, operator, gitea, argocd):
    repo = shop(gitea, argocd, namespace, self_heal=True)
    base = repo.head("main")
    # Argo CD creates the Deployment from Git: nobody else applies it in this test.
    argocd.wait(namespace, lambda app: synced(app, base), "Argo CD to sync the base commit")
    assert replicas(namespace) == 3

    kubectl("apply", "-n", namespace, "-f", "-", input=scale_plan(repo, f"{argocd.namespace}/{namespace}"))
    proposed = wait_phase(kube, namespace, "scale-web", "Proposed")
    number = proposed["pullRequest"]["number"]
    pr = repo.pull(number)
    assert pr["state"] == "open" and pr["head"]["sha"] == proposed["pullRequest"]["head"]
    assert proposed["files"] == ["apps/shop/deployment.yaml"]
    assert gitea.token not in str(proposed)

    # Argo CD frozen at the merge: its status (Synced and Healthy, of the base commit) is
    # from before the merge. The real controller's fields, untouched: not trusted.
    argocd.pause()
    try:
        merged_pr = repo.merge(number)
        merged = wait_phase(kube, namespace, "scale-web", "Merged")
        merge_commit = merged["pullRequest"]["mergeCommit"]
        assert merge_commit == merged_pr["merge_commit_sha"] == repo.head("main")
        stale = wait_for(lambda: (s := plan_status(kube, namespace, "scale-web")).get("sync", {}).get("revision")
                         == base and ready(s)["reason"] == "RevisionMismatch" and s, TICKS, "RevisionMismatch")
        assert stale["phase"] == "Merged"
        assert stale["sync"]["syncStatus"] == "Synced" and stale["sync"]["health"] == "Healthy"
        assert replicas(namespace) == 3
    finally:
        argocd.resume()

    # Argo CD finds the merge commit, syncs it (automated), and the live Deployment changes.
    status = argocd.wait(namespace, lambda app: synced(app, merge_commit), "Argo CD to sync the merge commit")
    assert status["operationState"]["phase"] == "Succeeded"
    wait_for(lambda: replicas(namespace) == 5, 30, "the live Deployment at 5 replicas")
    verified = wait_phase(kube, namespace, "scale-web", "Verified")
    observed = verified["sync"]
    assert observed["application"] == f"{argocd.namespace}/{namespace}"
    assert (observed["revision"], observed["syncStatus"], observed["health"]) == (merge_commit, "Synced", "Healthy")
    # Trusted only from a reconciliation at or after the sync that applied the merge finished.
    assert when(observed["reconciledAt"]) >= when(status["operationState"]["finishedAt"])
    assert verified["evidence"]["revertCheck"]["clean"] is True
    assert not kube.list("Lease", namespace, "reliability.center/patchplan-uid")  # locks released

    rollback(namespace, "scale-web", kube)
    rolling = wait_phase(kube, namespace, "scale-web", "RollingBack")
    revert_number = rolling["revert"]["number"]
    assert repo.pull(revert_number)["head"]["ref"].endswith("-revert")
    revert_commit = repo.merge(revert_number)["merge_commit_sha"]
    reverted = argocd.wait(namespace, lambda app: synced(app, revert_commit), "Argo CD to sync the revert")
    rolled = wait_phase(kube, namespace, "scale-web", "RolledBack")
    assert ready(rolled)["status"] == "True"
    assert replicas(namespace) == 3
    assert repo.file("apps/shop/deployment.yaml") == DEPLOYMENT.replace("namespace: shop",
                                                                        f"namespace: {namespace}")

    # Auto-sync keeps the reverted state, because Git says so: someone puts the reverted change
    # back by hand, and self-heal syncs the revert commit again.
    kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5")
    healed = argocd.wait(namespace, lambda app: (st := synced(app, revert_commit)) and st["operationState"]
                         != reverted["operationState"] and st, "self-heal to sync the revert commit again")
    wait_for(lambda: replicas(namespace) == 3, 30, "the live Deployment back at 3 replicas")
    # Argo CD reconciles again later and stays there.
    argocd.wait(namespace, lambda app: reconciled_after(app, healed["operationState"]["finishedAt"]),
                "another reconciliation")
    assert synced(argocd.get(namespace), revert_commit) and replicas(namespace) == 3
    assert plan_status(kube, namespace, "scale-web")["phase"] == "RolledBack"


def test_second_plan_on_the_same_file_waits_for_the_first(kube, namespace, operator, gitea):
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": DEPLOYMENT})
    apply_docs(namespace, [repository_secret("creds", repo.url, token=gitea.token)])

    def plan(name: str, value: int) -> dict[str, Any]:
        return {"apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": name},
                "spec": {"repository": {"url": repo.url, "provider": "gitea", "credentialsSecret": "creds"},
                         "title": f"replicas {value}", "changes": [{"path": "apps/shop/deployment.yaml",
                                                                   "operation": "setValue",
                                                                   "yamlPath": "spec.replicas", "value": value}]}}

    apply_docs(namespace, [plan("first", 5)])
    first = wait_phase(kube, namespace, "first", "Proposed")
    apply_docs(namespace, [plan("second", 7)])
    blocked = wait_for(lambda: (s := plan_status(kube, namespace, "second")) and
                       ready(s)["reason"] == "WaitingForLock" and s, TICKS, "second to wait for the lock")
    assert blocked["phase"] == "Pending" and f"{namespace}/first/" in ready(blocked)["message"]
    assert len(repo.pulls()) == 1

    repo.close(first["pullRequest"]["number"])
    wait_phase(kube, namespace, "first", "Rejected")
    second = wait_phase(kube, namespace, "second", "Proposed")
    assert repo.pull(second["pullRequest"]["number"])["state"] == "open"


def test_without_argo_cd_synced_means_the_objects_are_live_at_the_merged_content(kube, namespace, operator,
                                                                                  gitea):
    manifest = DEPLOYMENT.replace("namespace: shop", f"namespace: {namespace}")
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": manifest})
    apply_docs(namespace, [d for d in yaml.safe_load_all(manifest) if d])
    apply_docs(namespace, [
        repository_secret("creds", repo.url, token=gitea.token),
        {"apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": "scale"},
         "spec": {"repository": {"url": repo.url, "provider": "gitea", "credentialsSecret": "creds"},
                  "title": "Scale web to 4", "changes": [{"path": "apps/shop/deployment.yaml",
                                                          "operation": "setValue", "yamlPath": "spec.replicas",
                                                          "value": 4}]}},
    ])
    number = wait_phase(kube, namespace, "scale", "Proposed")["pullRequest"]["number"]
    repo.merge(number)
    # Merged, but nobody applied it yet: the live Deployment still says 3.
    differs = wait_for(lambda: (s := plan_status(kube, namespace, "scale")).get("phase") == "Merged"
                       and ready(s)["reason"] == "ObjectDiffers" and s, TICKS, "ObjectDiffers")
    assert ".spec.replicas" in ready(differs)["message"]
    apply_docs(namespace, [d for d in yaml.safe_load_all(repo.file("apps/shop/deployment.yaml")) if d])
    synced = wait_for(lambda: (s := plan_status(kube, namespace, "scale")).get("phase") in ("Synced", "Verified")
                      and s, TICKS, "Synced from the live objects")
    assert synced["sync"]["revision"] == repo.head("main")
    assert replicas(namespace) == 4


def test_missing_credentials_are_reported_then_picked_up(kube, namespace, operator, gitea):
    repo = create_repo(gitea)
    apply_docs(namespace, [{"apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan",
                            "metadata": {"name": "early"},
                            "spec": {"repository": {"url": repo.url, "provider": "gitea",
                                                    "credentialsSecret": "later"},
                                     "title": "Scale", "changes": [{"path": "apps/shop/deployment.yaml",
                                                                    "operation": "setValue",
                                                                    "yamlPath": "spec.replicas", "value": 2}]}}])
    waiting = wait_for(lambda: (s := plan_status(kube, namespace, "early")) and
                       ready(s)["reason"] == "CredentialsMissing" and s, TICKS, "CredentialsMissing")
    assert f"Secret {namespace}/later not found" in ready(waiting)["message"]
    assert repo.branches() == {"main"}
    apply_docs(namespace, [repository_secret("later", repo.url, username=gitea.user, password=gitea.token)])
    proposed = wait_phase(kube, namespace, "early", "Proposed")
    assert repo.pull(proposed["pullRequest"]["number"])["state"] == "open"
