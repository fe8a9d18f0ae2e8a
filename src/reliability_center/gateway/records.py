"""Writes to the operator's own objects: CR status, guard state. Not the protected app.

Status is written whole, in one merge patch per change, with the
resourceVersion we read as a precondition: if another writer (a second
replica, a concurrent handler) moved the object, the patch fails with a
Conflict and the caller stops rather than acting on stale state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reliability_center.gateway.kube import Conflict, Kube, Ref
from reliability_center.policy.limits import Admission, GuardState


def patch_status(kube: Kube, ref: Ref, status: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return kube.merge_patch(ref, body, sub="status")


def _guard_ref(namespace: str, runbook: str) -> Ref:
    return Ref("ConfigMap", namespace, f"rc-guards-{runbook}"[:253])


def _parse_guards(obj: dict[str, Any] | None) -> GuardState:
    raw = json.loads(((obj or {}).get("data") or {}).get("admissions", "[]"))
    return GuardState([Admission(**a) for a in raw])


def update_guards(kube: Kube, namespace: str, runbook: str, change: Callable[[GuardState], GuardState],
                  seen: dict[tuple[str, str], dict[str, Any]] | None = None, attempts: int = 10) -> GuardState:
    """Compare-and-swap the guard state (the resourceVersion guards against lost updates).

    ``seen`` remembers the guard ConfigMap as last written, to skip the read: if
    anyone changed it since (another replica, a restart), the write's
    resourceVersion check fails and the state is read afresh. The cluster stays
    the only truth.
    """
    ref = _guard_ref(namespace, runbook)
    key = (namespace, runbook)
    for _ in range(attempts):
        obj = seen.pop(key, None) if seen is not None else None
        if obj is None:
            obj = kube.get(ref)
        new = change(_parse_guards(obj))
        data = {"admissions": json.dumps([a.__dict__ for a in new.admissions])}
        try:
            if obj is None:
                written = kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": ref.name, "namespace": namespace,
                                                    "labels": {"reliability.center/guards": "true"}},
                                       "data": data})
            else:
                written = kube.replace({**obj, "data": data})
        except Conflict:
            continue
        if seen is not None:
            seen[key] = written
        return new
    raise Conflict(f"guard state {runbook} in {namespace} kept changing")


def patch_spec(kube: Kube, ref: Ref, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
    """A human's change through relctl (approve, resolve, rollback), as a merge patch."""
    body: dict[str, Any] = {"spec": spec}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return kube.merge_patch(ref, body, manager="relctl")
