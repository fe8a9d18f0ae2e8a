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
    if kind == "Deployment":
        return _deployment(obj)
    if kind == "StatefulSet":
        return _statefulset(obj)
    return RolloutStatus(True, False, f"{kind} has no rollout")


def _deployment(obj: dict[str, Any]) -> RolloutStatus:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    name = meta["name"]
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return RolloutStatus(False, False, f"waiting for deployment {name!r} spec update to be observed")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(False, True, f"deployment {name!r} exceeded its progress deadline")
    want, updated = spec.get("replicas", 1), status.get("updatedReplicas", 0)
    if updated < want:
        return RolloutStatus(False, False, f"{updated} out of {want} new replicas have been updated")
    if status.get("replicas", 0) > updated:
        return RolloutStatus(False, False, f"{status.get('replicas', 0) - updated} old replicas are pending termination")
    if status.get("availableReplicas", 0) < updated:
        return RolloutStatus(False, False, f"{status.get('availableReplicas', 0)} of {updated} updated replicas are available")
    return RolloutStatus(True, False, f"deployment {name!r} successfully rolled out")


def _statefulset(obj: dict[str, Any]) -> RolloutStatus:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    name = meta["name"]
    strategy = spec.get("updateStrategy") or {"type": "RollingUpdate"}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        # An OnDelete StatefulSet never replaces its pods by itself: a restart marker would do nothing.
        return RolloutStatus(False, True, f"statefulset {name!r} uses the {strategy.get('type')} strategy: "
                                          "rollout status is only available for RollingUpdate")
    observed = status.get("observedGeneration", 0)
    if observed == 0 or meta.get("generation", 0) > observed:
        return RolloutStatus(False, False, f"waiting for statefulset {name!r} spec update to be observed")
    want = spec.get("replicas", 1)
    if status.get("readyReplicas", 0) < want:
        return RolloutStatus(False, False, f"waiting for {want - status.get('readyReplicas', 0)} pods to be ready")
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        partition = rolling.get("partition", 0) or 0
        if status.get("updatedReplicas", 0) < want - partition:
            return RolloutStatus(False, False, f"waiting for partitioned roll out to finish: "
                                               f"{status.get('updatedReplicas', 0)} out of {want - partition} "
                                               "new pods have been updated")
        return RolloutStatus(True, False, f"partitioned roll out complete: {status.get('updatedReplicas', 0)} "
                                          "new pods have been updated")
    if status.get("updateRevision") != status.get("currentRevision"):
        return RolloutStatus(False, False, f"waiting for statefulset rolling update to complete "
                                           f"{status.get('updatedReplicas', 0)} pods at revision {status.get('updateRevision')}")
    return RolloutStatus(True, False, f"statefulset rolling update complete {status.get('currentReplicas', 0)} pods "
                                      f"at revision {status.get('currentRevision')}")
