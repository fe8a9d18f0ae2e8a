"""Helpers for Incident tests: create one, wait for a phase, fingerprint the app's objects."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.support.cluster import ROOT, api, apply_docs, create_object, get_json, kubectl, rollout_status, wait_for

#: The group the test session binds to ClusterRole reliability-center-approver (tests/conftest.py, crds).
APPROVERS = "rc-test-approvers"
APP_KINDS = "configmaps,deployments,cronjobs,jobs,networkpolicies,horizontalpodautoscalers"
OPERATOR_OWNED = ("rc-snap-", "rc-guards-", "rc-isolations")


def incident(name: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
            "metadata": {"name": name, "labels": labels},
            "spec": {"severity": "high", "tenant": "acme", **spec}}


def create(namespace: str, body: dict[str, Any]) -> None:
    """Create it as a person would (an apply of an object that exists updates it instead)."""
    from reliability_center.gateway.kube import Conflict

    try:
        create_object(namespace, body)
    except Conflict:
        apply_docs(namespace, [body], server_side=False)


def resolve(namespace: str, name: str) -> None:
    """Set ``spec.resolved``, as ``kubectl patch --type=merge`` would, in-process (a kubectl process is
    about 0.1 s of CPU; storms resolve hundreds)."""
    from reliability_center.gateway import Ref

    api().merge_patch(Ref("Incident", namespace, name), {"spec": {"resolved": True}}, manager="kubectl-patch")


def status(namespace: str, name: str) -> dict[str, Any]:
    return get_json("incident", name, "-n", namespace).get("status") or {}


def wait_phase(namespace: str, name: str, phases: set[str] | str, timeout: float = 60) -> dict[str, Any]:
    wanted = {phases} if isinstance(phases, str) else phases
    return wait_for(lambda: (s := status(namespace, name)) and s.get("phase") in wanted and s,
                    timeout=timeout, what=f"incident {name} phase in {sorted(wanted)}")


def plan_digest(namespace: str, name: str, step: str, timeout: float = 60) -> str:
    """The digest of the plan a governed step shows its approvers, once it shows one."""
    def probe() -> str | None:
        found = next((s for s in status(namespace, name).get("steps") or [] if s["name"] == step), {})
        return (found.get("approval") or {}).get("planDigest")

    return wait_for(probe, timeout=timeout, what=f"step {step} of {name} to show its plan")


def approve(namespace: str, name: str, step: str, user: str = "alice", groups: tuple[str, ...] = (APPROVERS,),
            decision: str = "Approve", digest: str | None = None, check: bool = True, bound: bool = True) -> Any:
    """Create an Approval as a real user (kubectl impersonation: the apiserver authenticates them as that user),
    bound to the incident as ``relctl approve`` binds it (its uid, an owner reference); ``bound=False``: by
    name only."""
    digest = digest or plan_digest(namespace, name, step)
    body = {"apiVersion": "reliability.center/v1alpha1", "kind": "Approval",
            "metadata": {"generateName": f"{name}-{step}-"[:50]},
            "spec": {"incident": name, "step": step, "decision": decision, "planDigest": digest}}
    if bound:
        approval_schema_current()
        uid = get_json("incident", name, "-n", namespace)["metadata"]["uid"]
        body["spec"]["incidentUID"] = uid
        body["metadata"]["ownerReferences"] = [{"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                                                "name": name, "uid": uid}]
    return kubectl("create", "-n", namespace, "-f", "-", "-o", "name", f"--as={user}",
                   *(f"--as-group={g}" for g in groups), input=json.dumps(body), check=check)


def approval_schema_current() -> None:
    """The cluster is shared by sessions of several checkouts, each applying its own CRDs when it starts:
    one older than spec.incidentUID (or spec.sharedAt) would make the apiserver drop it from Approvals.
    Ours again, if so."""
    from kubernetes import client

    def current() -> bool:  # read in-process: every approval asks, and a kubectl process is ~0.1 s of CPU
        crd = client.ApiextensionsV1Api(api().api).read_custom_resource_definition("approvals.reliability.center")
        spec = crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties
        return {"incidentUID", "sharedAt"} <= spec.keys()

    if not current():
        kubectl("apply", "--server-side", "--force-conflicts", "-f",
                str(ROOT / "crds" / "reliability.center_approvals.yaml"))
        wait_for(current, what="the Approval CRD with spec.incidentUID and spec.sharedAt")


def steps(st: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in st.get("steps") or []}


def app_content(namespace: str) -> dict[str, str]:
    """Kind/name -> digest of what a person configures (labels, annotations, data, spec; not status)."""
    items = get_json(APP_KINDS, "-n", namespace)["items"]
    out = {}
    for item in items:
        name = item["metadata"]["name"]
        if name.startswith(OPERATOR_OWNED) or item["metadata"].get("ownerReferences"):
            continue  # operator snapshots/guards, and objects made by controllers (ReplicaSets' Jobs...)
        content = {"labels": item["metadata"].get("labels"), "annotations": item["metadata"].get("annotations"),
                   "data": item.get("data"), "spec": item.get("spec")}
        out[f"{item['kind']}/{name}"] = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """The objects made, changed or deleted between two ``app_content``s: both key sets, so an object a
    restore deleted is seen as well as one it left behind."""
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def settle_app(namespace: str) -> None:
    """Every Deployment of the app as its controller leaves it: rolled out, and its first sync's revision
    annotation written. A Deployment at rest (0 replicas) too: skipped here before, its controller's first
    sync (``deployment.kubernetes.io/revision``) landed after a test had read the app as settled (seen in CI:
    ``test_collisions.py``'s restore judged changed by it)."""
    from reliability_center.gateway import Ref

    for d in api().list("Deployment", namespace):
        ref = Ref("Deployment", namespace, d["metadata"]["name"])
        rollout_status(namespace, "Deployment", ref.name)
        wait_for(lambda: REVISION in (((api().get(ref) or {}).get("metadata") or {}).get("annotations") or {}),
                 what=f"the revision of {ref}")


#: The annotation the Deployment controller writes at its first sync of a Deployment.
REVISION = "deployment.kubernetes.io/revision"


def audit_targets(st: dict[str, Any]) -> list[str]:
    return [e["target"] for e in st.get("timeline") or [] if e.get("target") and e["event"].endswith(":applied")]


def merge_plan(kube: Any, repo: Any, namespace: str, plan: str, which: str = "pullRequest") -> dict[str, Any]:
    """The reviewer merges the plan's pull request (``which="revert"``: its revert's) in Gitea (``repo``:
    tests/gitea/conftest.Repo); returns the pull request as Gitea shows it once merged."""
    from reliability_center.gateway import Ref

    number = wait_for(lambda: ((kube.get(Ref("PatchPlan", namespace, plan)) or {}).get("status") or {})
                      .get(which, {}).get("number"), 60, f"the {which} of {plan}")
    return repo.merge(number)


def patch_plan(name: str, incident_name: str) -> dict:
    """A PatchPlan of an incident, for tests that read plans (relctl): its repository is never reached."""
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan",
            "metadata": {"name": name, "labels": {"reliability.center/incident": incident_name}},
            "spec": {"incidentRef": incident_name, "title": "Bigger search index",
                     "repository": {"url": "http://gitea.invalid/ops/gitops.git"},
                     "changes": [{"path": "apps/search/values.yaml", "operation": "setValue",
                                  "yamlPath": "index.shards", "value": 4}]}}
