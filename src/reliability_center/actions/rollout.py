"""kubectl's rollout-status rules, as a pure function (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


def rollout_status(obj: dict[str, Any]) -> RolloutStatus:
    kind = obj.get("kind")
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    name = meta["name"]
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return RolloutStatus(False, False, f"waiting for {kind} {name} spec update to be observed")
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if kind == "Deployment":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                return RolloutStatus(False, True, f"deployment {name!r} exceeded its progress deadline")
        if updated < want:
            return RolloutStatus(False, False, f"{updated} of {want} updated replicas are available")
        if status.get("replicas", 0) > updated:
            return RolloutStatus(False, False, f"{status.get('replicas', 0) - updated} old replicas are pending termination")
        if status.get("availableReplicas", 0) < updated:
            return RolloutStatus(False, False, f"{status.get('availableReplicas', 0)} of {updated} updated replicas are available")
        return RolloutStatus(True, False, f"deployment {name!r} successfully rolled out")
    if kind == "StatefulSet":
        if status.get("readyReplicas", 0) < want:
            return RolloutStatus(False, False, f"{status.get('readyReplicas', 0)} of {want} pods are ready")
        if status.get("updateRevision") != status.get("currentRevision") and updated < want:
            return RolloutStatus(False, False, f"{updated} of {want} pods updated")
        return RolloutStatus(True, False, f"statefulset {name!r} rolled out")
    return RolloutStatus(True, False, f"{kind} has no rollout")
