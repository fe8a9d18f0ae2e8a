"""A PatchPlan end to end: real cluster, real operator process, real Gitea; the test plays Argo CD.

kubectl-applied PatchPlan → pull request in Gitea → merged through the Gitea
API → status Merged → Argo CD's sync (the merged manifests applied, the
Application status written the way Argo CD writes it) → Synced → Verified;
then ``relctl rollback`` → revert pull request → merged and synced → RolledBack.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reliability_center.cli.rollback import rollback
from reliability_center.gateway import Ref
from tests.gitea.conftest import DEPLOYMENT, create_repo, gitea  # noqa: F401  (gitea is a fixture)
from tests.support.cluster import apply_docs, kubectl, repository_secret, wait_for

pytestmark = pytest.mark.gitea

TICKS = 60  # seconds: the operator polls active plans every RC_PATCHPLAN_POLL (3 s by default)


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


def argo_sync(kube, namespace: str, repo, revision: str, *, reconciled: str, finished: str) -> None:
    """Play Argo CD: apply the manifests at ``revision`` and write the Application status."""
    manifest = repo.file("apps/shop/deployment.yaml", revision)
    apply_docs(namespace, [d for d in yaml.safe_load_all(manifest) if d])
    kube.merge_patch(Ref("Application", namespace, "shop"), {"status": {
        "sync": {"status": "Synced", "revision": revision},
        "health": {"status": "Healthy"},
        "reconciledAt": reconciled,
        "operationState": {"phase": "Succeeded", "startedAt": finished, "finishedAt": finished,
                           "syncResult": {"revision": revision}},
    }}, sub="status")


def replicas(namespace: str) -> int:
    return int(kubectl("get", "deployment", "web", "-n", namespace, "-o", "jsonpath={.spec.replicas}").stdout)


def test_patchplan_pr_merge_sync_verify_then_rollback(kube, namespace, operator, gitea):  # noqa: F811
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": DEPLOYMENT.replace("namespace: shop",
                                                                              f"namespace: {namespace}")})
    apply_docs(namespace, [
        repository_secret("gitops-credentials", repo.url, username=gitea.user, token=gitea.token),
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "shop"},
         "spec": {"project": "default", "source": {"repoURL": repo.url, "path": "apps/shop",
                                                   "targetRevision": "main"},
                  "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}}},
    ])
    argo_sync(kube, namespace, repo, repo.head("main"), reconciled="2030-01-01T00:00:10Z",
              finished="2030-01-01T00:00:05Z")
    assert replicas(namespace) == 3

    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": "scale-web"},
        "spec": {"repository": {"url": repo.url, "provider": "gitea", "baseBranch": "main",
                                "credentialsSecret": "gitops-credentials"},
                 "title": "Scale web to 5 for the peak", "argoApplication": f"{namespace}/shop",
                 "changes": [{"path": "apps/shop/deployment.yaml", "operation": "setValue",
                              "yamlPath": "spec.replicas", "value": 5}]}}))

    proposed = wait_phase(kube, namespace, "scale-web", "Proposed")
    number = proposed["pullRequest"]["number"]
    pr = repo.pull(number)
    assert pr["state"] == "open" and pr["head"]["sha"] == proposed["pullRequest"]["head"]
    assert proposed["files"] == ["apps/shop/deployment.yaml"]
    assert gitea.token not in str(proposed)

    merged_pr = repo.merge(number)
    merged = wait_phase(kube, namespace, "scale-web", "Merged")
    merge_commit = merged["pullRequest"]["mergeCommit"]
    assert merge_commit == merged_pr["merge_commit_sha"] == repo.head("main")

    # Argo CD reports Healthy from a reconciliation that predates the sync: not trusted.
    argo_sync(kube, namespace, repo, merge_commit, reconciled="2030-01-01T00:01:00Z",
              finished="2030-01-01T00:02:00Z")
    stale = wait_for(lambda: (s := plan_status(kube, namespace, "scale-web")).get("sync", {}).get("revision")
                     == merge_commit and ready(s)["reason"] == "StaleHealth" and s, TICKS, "StaleHealth")
    assert stale["phase"] == "Merged"
    assert replicas(namespace) == 5

    # A reconciliation after the sync finished: now health counts.
    argo_sync(kube, namespace, repo, merge_commit, reconciled="2030-01-01T00:02:01Z",
              finished="2030-01-01T00:02:00Z")
    verified = wait_phase(kube, namespace, "scale-web", "Verified")
    assert verified["sync"] == {"application": f"{namespace}/shop", "revision": merge_commit,
                                "syncStatus": "Synced", "health": "Healthy",
                                "reconciledAt": "2030-01-01T00:02:01Z"}
    assert verified["evidence"]["revertCheck"]["clean"] is True
    assert not kube.list("Lease", namespace, "reliability.center/patchplan-uid")  # locks released

    rollback(namespace, "scale-web", kube)
    rolling = wait_phase(kube, namespace, "scale-web", "RollingBack")
    revert_number = rolling["revert"]["number"]
    assert repo.pull(revert_number)["head"]["ref"].endswith("-revert")
    revert_pr = repo.merge(revert_number)
    revert_commit = revert_pr["merge_commit_sha"]
    wait_for(lambda: plan_status(kube, namespace, "scale-web").get("revert", {}).get("mergeCommit") == revert_commit,
             TICKS, "the revert merge to be recorded", interval=0.2)
    argo_sync(kube, namespace, repo, revert_commit, reconciled="2030-01-01T00:03:01Z",
              finished="2030-01-01T00:03:00Z")
    rolled = wait_phase(kube, namespace, "scale-web", "RolledBack")
    assert ready(rolled)["status"] == "True"
    assert replicas(namespace) == 3
    assert repo.file("apps/shop/deployment.yaml") == DEPLOYMENT.replace("namespace: shop",
                                                                        f"namespace: {namespace}")


def test_second_plan_on_the_same_file_waits_for_the_first(kube, namespace, operator, gitea):  # noqa: F811
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
                                                                                  gitea):  # noqa: F811
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


def test_missing_credentials_are_reported_then_picked_up(kube, namespace, operator, gitea):  # noqa: F811
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
