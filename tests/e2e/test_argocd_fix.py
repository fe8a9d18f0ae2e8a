"""A seed runbook's Level 3 step carries the fix: a perf incident's pull request edits the file the
declared change names, in the path of the Argo CD Application that deploys the namespace (found from
the Application's source: no repository URL configured); a reviewer merges it in Gitea; the real Argo
CD syncs it; the PatchPlan goes Synced then Verified; the Incident shows the fix deployed."""

from __future__ import annotations

import uuid

import pytest
import yaml

from reliability_center.gateway import Ref
from tests.gitea.conftest import create_repo
from tests.support.argocd import synced
from tests.support.cluster import ROOT, apply_docs, apply_runbook, get_json, load_yaml, repository_secret, wait_for
from tests.support.incidents import create, incident, wait_phase

pytestmark = pytest.mark.gitea

SEARCH = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: search
spec:
  replicas: 2
  selector:
    matchLabels: {app: search}
  template:
    metadata:
      labels: {app: search}
    spec:
      containers:
        - name: search
          image: registry.invalid/shop/search:1.0
          resources:
            limits: {cpu: 500m}  # the perf runbook's fix raises it
"""


def test_a_perf_incidents_level_3_step_proposes_its_declared_fix_that_argo_cd_syncs(kube, namespace, operator,
                                                                                      gitea, argocd):
    repo = create_repo(gitea, {f"apps/{namespace}/deployment-search.yaml": SEARCH})
    argocd.add_repository(repo.url, gitea.user, gitea.token)
    argocd.create_application(namespace, repo.url, f"apps/{namespace}", namespace, self_heal=True)
    base = repo.head("main")
    argocd.wait(namespace, lambda app: synced(app, base), "Argo CD to sync the base commit")
    # Only the Application and the credentials are configured: no gitopsRepoURL.
    apply_docs(namespace, [repository_secret("gitops-credentials", repo.url, username=gitea.user, token=gitea.token),
                           {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "reliability-center-settings"},
                            "data": {"gitopsProvider": "gitea", "gitopsCredentialsSecret": "gitops-credentials",
                                     "argoApplication": f"{argocd.namespace}/{namespace}"}}])
    seed = next(s for s in load_yaml(ROOT / "runbooks" / "perf.yaml")[0]["spec"]["steps"] if s["level"] == 3)
    category = f"fx{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [seed]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")

    create(namespace, incident("slow", category=category, module="search"))
    plan = f"slow-{seed['name']}"
    proposed = wait_for(lambda: ((kube.get(Ref("PatchPlan", namespace, plan)) or {}).get("status") or {})
                        .get("pullRequest") and kube.get(Ref("PatchPlan", namespace, plan))["status"], 60,
                        "the pull request")
    assert proposed["files"] == [f"apps/{namespace}/deployment-search.yaml", f"incidents/{namespace}/slow.md"]
    number, head = proposed["pullRequest"]["number"], proposed["pullRequest"]["head"]
    edited = yaml.safe_load(repo.file(f"apps/{namespace}/deployment-search.yaml", head))
    assert edited["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"
    assert "# the perf runbook's fix raises it" in repo.file(f"apps/{namespace}/deployment-search.yaml", head)

    merge = repo.merge(number)["merge_commit_sha"]  # the reviewer's decision
    status = argocd.wait(namespace, lambda app: synced(app, merge), "Argo CD to sync the merge", timeout=90)
    assert status["operationState"]["phase"] == "Succeeded"
    live = get_json("deployment", "search", "-n", namespace)
    assert live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"
    verified = wait_for(lambda: (s := (kube.get(Ref("PatchPlan", namespace, plan)) or {}).get("status") or {})
                        .get("phase") == "Verified" and s, 90, "the PatchPlan to be Verified")
    assert verified["sync"]["revision"] == merge
    st = wait_phase(namespace, "slow", "Mitigated", timeout=60)  # escalated to propose the fix, mitigated by it
    assert {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}["FixDeployed"] == ("True", "FixVerified")
    assert [e["event"] for e in st["timeline"] if e["event"].startswith("patchplan:")][-3:] == [
        "patchplan:Merged", "patchplan:Synced", "patchplan:Verified"]
