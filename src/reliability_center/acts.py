"""What a person does to incidents, as themselves: approve or reject a step, resolve, roll a PatchPlan back.

Shared by ``relctl`` and the console, so that both send the very same requests: through the gateway's
``records`` with the caller's own client (their kubeconfig, ``--as``, or the bearer token the console was
given), never the operator's rights. Who acted is what the apiserver authenticates, stamped by admission.
"""

from __future__ import annotations

from typing import Any

from reliability_center.gateway import Kube, Ref, records
from reliability_center.gateway.writes import INCIDENT_UID_LABEL


class ActError(Exception):
    """The act was not done, and why, in one sentence (nothing was written)."""


class RollbackError(ActError):
    pass


def incident(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    found = kube.get(Ref("Incident", namespace, name))
    if found is None:
        raise ActError(f'incident "{name}" not found in namespace "{namespace}"')
    return found


def step_plan(body: dict, step: str, what: str) -> tuple[str, dict[str, Any]]:
    """The digest the step asks approval for and the plan it shows (the same status update wrote both)."""
    name = body["metadata"]["name"]
    steps = {st["name"]: st for st in (body.get("status") or {}).get("steps") or []}
    if step not in steps:
        raise ActError(f"incident {name} has no step {step!r} (steps: {', '.join(sorted(steps))})")
    digest = (steps[step].get("approval") or {}).get("planDigest")
    if not digest:
        raise ActError(f"step {step} of incident {name} has no plan awaiting approval "
                       f"(state {steps[step].get('state')}): nothing to {what}")
    return digest, (steps[step].get("evidence") or {}).get("plan") or {}


def create_approval(kube: Kube, body: dict[str, Any], step: str, spec: dict[str, Any],
                    comment: str) -> dict[str, Any]:
    """An Approval of ``body``'s incident, as the person the apiserver authenticates (admission stamps who).
    Bound to this incident, not its name (a later one of the same name does not inherit it), and owned by it,
    so it goes when the incident does."""
    meta = body["metadata"]
    name, uid, namespace = meta["name"], meta["uid"], meta["namespace"]
    owner = {"apiVersion": body["apiVersion"], "kind": "Incident", "name": name, "uid": uid}
    return records.create(kube, {"apiVersion": "reliability.center/v1alpha1", "kind": "Approval",
                                 "metadata": {"generateName": f"{name[:40]}-{step[:15]}-", "namespace": namespace,
                                              "ownerReferences": [owner]},
                                 "spec": {"incident": name, "incidentUID": uid, "step": step, **spec,
                                          **({"comment": comment} if comment else {})}})


def decide(kube: Kube, body: dict[str, Any], step: str, decision: str, comment: str = "",
           reviewed: str | None = None) -> tuple[str, dict[str, Any]]:
    """Approve or Reject the plan ``step`` shows now in ``body``; returns its digest and the Approval made.

    ``reviewed``: the digest of the plan the person read; refused if the plan moved since."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    digest, _ = step_plan(body, step, decision.lower())
    if reviewed is not None and reviewed != digest:
        raise ActError(f"the plan of step {step} moved: it is now {digest}, not {reviewed} that you reviewed; "
                       f"nothing was approved (relctl plan {name} {step} -n {namespace} shows the new one)")
    made = create_approval(kube, body, step, {"decision": decision, "planDigest": digest}, comment)
    if made["spec"].get("incidentUID") != body["metadata"]["uid"]:
        raise ActError(f"Approval {made['metadata']['name']} was stored without the incident's uid: the cluster's "
                       f"Approval CRD is older than this relctl (apply crds/), and the operator will not count it")
    return digest, made


def resolve(kube: Kube, namespace: str, name: str) -> tuple[str, int | None]:
    """Set spec.resolved (a compare-and-swap on what was read); returns the phase it was in and how many
    changes it holds (what the operator will restore), or None when the person may not list ConfigMaps:
    resolving needs rights on the incident only, counting is a courtesy."""
    body = incident(kube, namespace, name)
    phase = (body.get("status") or {}).get("phase") or "Detected"
    if phase == "Closed":
        raise ActError(f"incident {name} is Closed: there is nothing left to resolve")
    try:
        held: list[dict[str, Any]] | None = kube.list("ConfigMap", namespace,
                                                      f"{INCIDENT_UID_LABEL}={body['metadata']['uid']}")
    except Exception as exc:
        if getattr(exc, "status", None) != 403:
            raise
        held = None
    if not (body.get("spec") or {}).get("resolved"):
        records.patch_spec(kube, Ref("Incident", namespace, name), {"resolved": True},
                           body["metadata"]["resourceVersion"])
    return phase, None if held is None else len(held)


def rollback(namespace: str, name: str, kube: Kube | None = None) -> dict[str, Any]:
    """Set spec.rollback=true on PatchPlan ``namespace/name``; returns the updated object.

    Before a merge the request cancels (Pending) or waits for the pull request
    to be merged or closed (Proposed). A plan that ended without a merge has
    nothing to revert: that is refused with the reason, not silently recorded.
    """
    kube = kube or Kube()
    ref = Ref("PatchPlan", namespace, name)
    plan = kube.get(ref)
    if plan is None:
        raise RollbackError(f"PatchPlan {namespace}/{name} not found")
    status = plan.get("status") or {}
    phase = status.get("phase") or "Pending"
    merged = bool((status.get("pullRequest") or {}).get("mergeCommit"))
    if phase in ("RollingBack", "RolledBack") or (plan.get("spec") or {}).get("rollback"):
        return plan  # already asked: idempotent
    if phase == "Rejected" or (phase == "Failed" and not merged):
        raise RollbackError(f"PatchPlan {namespace}/{name} is {phase} and nothing was merged: nothing to revert")
    # The resourceVersion makes it a compare-and-swap against a concurrent phase change.
    return records.patch_spec(kube, ref, {"rollback": True}, plan["metadata"]["resourceVersion"])
