"""``relctl rollback NAMESPACE/NAME``: ask the operator to revert a merged PatchPlan.

It only sets ``spec.rollback: true`` (through the gateway's records, with the
resourceVersion it read as a precondition); the operator opens the revert pull
request of the merge commit, and merging that pull request is the rollback.
"""

from __future__ import annotations

from typing import Any

from reliability_center.gateway import Kube, Ref, records


class RollbackError(RuntimeError):
    pass


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
