"""Level 1 and Argo CD's self-heal on the same ConfigMap: real cluster, operator, Gitea and Argo CD.

The sample app's ``flags-search`` ConfigMap is declared in Git and synced by an automated
Application with ``selfHeal``. An incident's Level 1 step turns its flags off (a JSON patch by the
field manager ``reliability-center``). The oracle is the ConfigMap itself, every version of it in
etcd revision order (a watch), beside the Application's own record of what Argo CD did
(``status.reconciledAt``, ``status.operationState``):

- with ``ignoreDifferences`` by manager and ``RespectIgnoreDifferences=true`` (the mechanism,
  gitops/argocd.py), no version between the change and the resolve has a flag back on, while Argo
  CD compares the object with Git again and again (reconciledAt moves) and starts no sync; after
  the resolve the ConfigMap is Git's again;
- without it, self-heal turns the flags back on within seconds, and ``gitops.argocd.check``,
  reading Argo CD's tracking annotation on the live object, reports what the Application lacks.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
import yaml

from reliability_center.gateway import Ref
from reliability_center.gitops.argocd import check
from tests.e2e.test_collisions import resolve
from tests.e2e.test_flags_store import Versions
from tests.gitea.conftest import create_repo
from tests.support.argocd import synced
from tests.support.cluster import apply_docs, apply_runbook, get_json, load_yaml, wait_for
from tests.support.incidents import create, incident, status, wait_phase

pytestmark = [pytest.mark.gitea, pytest.mark.usefixtures("operator")]

FLAGS = "flags-search"
OFF = {"search-suggestions": "false", "search-recommendations": "false"}  # search-core is critical: kept
#: Argo CD must compare the object with Git this many times while the change holds.
LOOKS = 3
MECHANISM = {"ignore_differences": [{"kind": "ConfigMap", "managedFieldsManagers": ["reliability-center"]}],
             "sync_options": ["RespectIgnoreDifferences=true"]}


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def flags_runbook() -> str:
    """One Level 1 step: every non-critical search flag off. Argo CD's field manager owns the
    ConfigMap's data, so the step declares that it takes those fields (takeOwnership)."""
    category = f"c{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100, "maxRefires": 100},
                                "steps": [{"name": "act", "level": 1, "action": "feature-flags-off",
                                           "params": {"modules": ["search"]}, "takeOwnership": True}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook status")
    return category


def gitops_app(gitea, argocd, namespace: str, **options) -> tuple[object, dict[str, str]]:
    """The sample app in the namespace, its flags-search ConfigMap from Git through Argo CD."""
    docs = load_yaml("examples/protected-app/app.yaml")
    flags = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == FLAGS)
    apply_docs(namespace, [d for d in docs if d is not flags])
    declared = {**flags, "metadata": {**flags["metadata"], "namespace": namespace}}
    repo = create_repo(gitea, {"apps/flags/flags-search.yaml": yaml.safe_dump(declared)})
    argocd.add_repository(repo.url, gitea.user, gitea.token)
    argocd.create_application(namespace, repo.url, "apps/flags", namespace, self_heal=True, **options)
    argocd.wait(namespace, lambda app: synced(app, repo.head("main")) and
                app["status"].get("health", {}).get("status") == "Healthy", "Argo CD to sync the flags")
    return repo, flags["data"]


def test_a_level_1_flag_change_holds_under_self_heal_then_the_configmap_is_gits_again(
        kube, namespace, gitea, argocd):
    repo, git_data = gitops_app(gitea, argocd, namespace, **MECHANISM)
    live = get_json("configmap", FLAGS, "-n", namespace)
    assert live["data"] == git_data  # Argo CD made it: nobody else applied it
    # Argo CD tracks it, and the Application has what a Level 1 change needs to hold.
    assert live["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"].startswith(f"{namespace}:")
    assert check(kube, live, argocd.namespace) is None
    versions = Versions(namespace, FLAGS, live["metadata"]["resourceVersion"])
    before = argocd.get(namespace)["status"]

    create(namespace, incident("flags-off", category=flags_runbook(), tenant="*"))
    st = wait_phase(namespace, "flags-off", "Mitigated")
    assert not any(c["type"] == "SelfHealSafe" for c in st["conditions"])  # nothing to warn about
    versions.until(lambda data: data == {**git_data, **OFF})
    changed = versions.seen[-1][0]

    # Argo CD looks at the object again and again (its reconciliation every 3 s: the session's
    # ARGOCD_RECONCILIATION_TIMEOUT), finds it in sync (the difference is ignored), and self-heal
    # starts no sync.
    looks: list[str] = []

    def looked_again(app: dict, since: str, operation: dict | None, times: int) -> bool:
        at = app["status"]["reconciledAt"]
        if at not in looks and when(at) > when(since):
            looks.append(at)
            assert app["status"]["sync"]["status"] == "Synced", app["status"]["sync"]
            assert app["status"].get("operationState") == operation, "Argo CD synced"
        return len([a for a in looks if when(a) > when(since)]) >= times

    argocd.wait(namespace, lambda app: looked_again(app, before["reconciledAt"], before.get("operationState"), LOOKS),
                f"Argo CD to reconcile {LOOKS} times", timeout=90)

    # A commit during the incident (another key): Argo CD syncs the object, and keeps the live
    # value of the fields it ignores (RespectIgnoreDifferences) instead of Git's.
    declared = yaml.safe_load(repo.file("apps/flags/flags-search.yaml"))
    declared["data"]["search-timeout"] = "5s"
    commit = repo.push({"apps/flags/flags-search.yaml": yaml.safe_dump(declared)}, message="search timeout")
    after_commit = argocd.wait(namespace, lambda app: synced(app, commit), "Argo CD to sync the new commit")
    git_data = declared["data"]
    versions.until(lambda data: data.get("search-timeout") == "5s")
    argocd.wait(namespace, lambda app: looked_again(app, after_commit["operationState"]["finishedAt"],
                                                    after_commit["operationState"], 2),
                "Argo CD to reconcile twice after that sync", timeout=90)
    assert get_json("configmap", FLAGS, "-n", namespace)["data"] == {**git_data, **OFF}
    # Every version since the change, in revision order: no flag came back on, not even briefly.
    assert all(data.items() >= OFF.items() for rv, data in versions.seen if rv >= changed), versions.seen

    resolve(namespace, "flags-off")
    versions.until(lambda data: data == git_data)
    assert get_json("configmap", FLAGS, "-n", namespace)["data"] == yaml.safe_load(
        repo.file("apps/flags/flags-search.yaml"))["data"]
    argocd.wait(namespace, lambda app: when(app["status"]["reconciledAt"]) > when(looks[-1]) and
                app["status"]["sync"]["status"] == "Synced", "Argo CD to find it in sync after the resolve")


def test_after_the_resolve_a_new_commit_on_a_held_flag_reaches_the_cluster(kube, namespace, gitea, argocd):
    repo, git_data = gitops_app(gitea, argocd, namespace, **MECHANISM)
    live = get_json("configmap", FLAGS, "-n", namespace)
    versions = Versions(namespace, FLAGS, live["metadata"]["resourceVersion"])
    create(namespace, incident("flags-off", category=flags_runbook(), tenant="*"))
    wait_phase(namespace, "flags-off", "Mitigated")
    versions.until(lambda data: data == {**git_data, **OFF})
    resolve(namespace, "flags-off")
    versions.until(lambda data: data == git_data)

    # Given back to Git: a later commit that changes a flag the incident had held reaches the cluster.
    declared = yaml.safe_load(repo.file("apps/flags/flags-search.yaml"))
    declared["data"]["search-suggestions"] = "false"
    commit = repo.push({"apps/flags/flags-search.yaml": yaml.safe_dump(declared)}, message="suggestions off")
    app = argocd.wait(namespace, lambda app: app["status"]["sync"].get("revision") == commit and app,
                      "Argo CD to compare with the new commit")
    try:
        wait_for(lambda: get_json("configmap", FLAGS, "-n", namespace)["data"] == declared["data"], 30,
                 "the new commit in the cluster", interval=0.5)
    except AssertionError as error:
        fields = {m["manager"]: sorted(m.get("fieldsV1", {}).get("f:data", {}))
                  for m in kube.get(Ref("ConfigMap", namespace, FLAGS))["metadata"]["managedFields"]}
        raise AssertionError(f"{error}; Argo CD: {app['status']['sync']['status']} at {commit[:12]}; "
                             f"data fields by manager: {fields}") from None


def test_without_the_mechanism_self_heal_undoes_the_change_and_the_operator_can_tell(
        kube, namespace, gitea, argocd):
    repo, git_data = gitops_app(gitea, argocd, namespace)
    first_sync = argocd.get(namespace)["status"]["operationState"]
    live = get_json("configmap", FLAGS, "-n", namespace)
    problem = check(kube, live, argocd.namespace)
    assert problem is not None and f"{argocd.namespace}/{namespace}" in problem and "self-heal" in problem
    assert "managedFieldsManagers: [reliability-center]" in problem and "RespectIgnoreDifferences=true" in problem
    versions = Versions(namespace, FLAGS, live["metadata"]["resourceVersion"])

    create(namespace, incident("flags-off", category=flags_runbook(), tenant="*"))
    versions.until(lambda data: data == {**git_data, **OFF})
    # Self-heal: Argo CD syncs Git's flags back over the mitigation.
    versions.until(lambda data: data == git_data)
    # The operator said so on the incident, with what the Application lacks.
    warned = wait_for(lambda: next((c for c in status(namespace, "flags-off").get("conditions") or []
                                    if c["type"] == "SelfHealSafe"), None), what="the SelfHealSafe condition")
    assert (warned["status"], warned["reason"]) == ("False", "IgnoreDifferencesMissing")
    assert "RespectIgnoreDifferences=true" in warned["message"]
    # The Application records it: a second automated sync, of the same commit, after the first.
    healed = argocd.wait(namespace, lambda app: app["status"]["operationState"] != first_sync and
                         synced(app, repo.head("main")), "the self-heal sync to be recorded")
    assert healed["operationState"]["operation"]["initiatedBy"] == {"automated": True}
