"""Writes to the operator's own objects: CR status, guard state, the isolation ledger, Lease locks;
and people's spec changes through relctl. Not the protected app (that is ``writes``).

Status is written whole, in one merge patch per change, with the
resourceVersion we read as a precondition: if another writer (a second
replica, a concurrent handler) moved the object, the patch fails with a
Conflict and the caller stops rather than acting on stale state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from reliability_center.gateway.kube import Conflict, Kube, NotFound, Ref
from reliability_center.policy.limits import Admission, GuardState, Isolations


def patch_status(kube: Kube, ref: Ref, status: dict[str, Any], resource_version: str) -> dict[str, Any]:
    """Our status, only on the object as it was read: a stale writer gets a Conflict, not the last word."""
    return kube.merge_patch(ref, {"metadata": {"resourceVersion": resource_version}, "status": status}, sub="status")


SEEN_LIMIT = 1000
"""ConfigMaps a ``seen`` cache remembers (one per runbook and tenant): past that, the least recently written go."""


def update_configmap(kube: Kube, ref: Ref, change: Callable[[dict[str, str]], dict[str, str]],
                     seen: dict[Any, dict[str, Any]] | None = None, attempts: int = 20,
                     create: bool = True, metadata: dict[str, Any] | None = None,
                     likely_new: bool = False) -> dict[str, str]:
    """Compare-and-swap the data of one of our ConfigMaps (the resourceVersion guards against lost updates).

    ``change`` gets the data as read and returns the new data (it may run several
    times, each on a fresher read). ``seen`` remembers the ConfigMap as last
    written, to skip the read: if anyone changed it since (another replica, a
    restart), the write's resourceVersion check fails and it is read afresh.
    The cluster stays the only truth. ``metadata`` (labels, owner references) is set at creation.
    ``likely_new``: one not in ``seen`` is most likely absent (a new incident's audit log, a new tenant's
    guards), so it is created without a read first: one round trip, not two; found there after all (409),
    it is read and swapped as usual.
    """
    for attempt in range(attempts):
        obj = seen.pop(ref, None) if seen is not None else None
        if obj is None and not (likely_new and create and attempt == 0):
            obj = kube.get(ref)
        if obj is None and not create:
            return {}
        data = change(dict((obj or {}).get("data") or {}))
        if obj is not None and data == (obj.get("data") or {}):
            return data  # nothing to change: no write
        try:
            if obj is None:
                written = kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": ref.name, "namespace": ref.namespace,
                                                    **(metadata or {"labels": {"reliability.center/guards": "true"}})},
                                       "data": data})
            else:
                written = kube.replace({**obj, "data": data})
        except (Conflict, NotFound):  # NotFound: the one remembered in ``seen`` was deleted since
            continue
        if seen is not None:
            seen[ref] = written  # popped above: re-inserted newest, so the oldest go first
            while len(seen) > SEEN_LIMIT:
                seen.pop(next(iter(seen)))
        return data
    raise Conflict(f"{ref} kept changing")


def guards_name(runbook: str, tenant: str) -> str:
    """The ConfigMap holding one runbook's admissions for one tenant (``*``, all tenants, has its own)."""
    name = f"rc-guards-{runbook}." + ("all-tenants" if tenant == "*" else f"tenant-{tenant}")
    if len(name) <= 253:
        return name
    return f"rc-guards-{hashlib.sha256(f'{runbook}/{tenant}'.encode()).hexdigest()[:32]}"  # a long runbook name


def update_guards(kube: Kube, namespace: str, runbook: str, tenant: str, change: Callable[[GuardState], GuardState],
                  seen: dict[Any, dict[str, Any]] | None = None) -> GuardState:
    """Compare-and-swap the admission history of one runbook for one tenant in one namespace.

    One ConfigMap per tenant: its size is bounded by the tenant's own limit, and
    tenants admitted at once do not contend for one object.
    """
    result = GuardState()

    def on_data(data: dict[str, str]) -> dict[str, str]:
        nonlocal result
        raw = json.loads(data.get("admissions", "[]"))
        result = change(GuardState([Admission(**a) for a in raw]))
        return {"admissions": json.dumps([a.__dict__ for a in result.admissions])}

    # Likely new: a tenant's guards live an hour past its last admission (policy.limits.retention), and a
    # tenant admitted since this process started is in ``seen``.
    update_configmap(kube, Ref("ConfigMap", namespace, guards_name(runbook, tenant)), on_data, seen,
                     metadata={"labels": {"reliability.center/guards": "true"},
                               "annotations": {"reliability.center/runbook": runbook,
                                               "reliability.center/tenant": tenant}}, likely_new=True)
    return result


ISOLATIONS = "rc-isolations"
"""The namespace's isolated tenants and the incidents that hold each isolation: the storm guard's count."""


def read_isolations(kube: Kube, namespace: str) -> Isolations:
    obj = kube.get(Ref("ConfigMap", namespace, ISOLATIONS))
    return Isolations(json.loads(((obj or {}).get("data") or {}).get("tenants", "{}")))


def update_isolations(kube: Kube, namespace: str, change: Callable[[Isolations], Isolations],
                      create: bool = True) -> Isolations:
    result = Isolations()

    def on_data(data: dict[str, str]) -> dict[str, str]:
        nonlocal result
        result = change(Isolations(json.loads(data.get("tenants", "{}"))))
        return {"tenants": json.dumps(result.tenants, sort_keys=True)}

    update_configmap(kube, Ref("ConfigMap", namespace, ISOLATIONS), on_data, create=create)
    return result


def create(kube: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    """Create one of the operator's own objects (a Lease lock); Conflict when it exists."""
    return kube.create(obj)


def replace(kube: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    """Replace one of the operator's own objects, only as it was read (its resourceVersion)."""
    if not (obj.get("metadata") or {}).get("resourceVersion"):
        raise ValueError("a replace needs the resourceVersion it was read at")
    return kube.replace(obj)


def delete(kube: Kube, ref: Ref, resource_version: str) -> None:
    """Delete one of the operator's own objects, only as it was read."""
    kube.delete(ref, resource_version=resource_version)


def drop_finalizer(kube: Kube, ref: Ref, finalizer: str, body: dict[str, Any]) -> None:
    """Remove one finalizer (one the operator no longer uses), only from the object as it was read."""
    finalizers = [f for f in body["metadata"].get("finalizers") or [] if f != finalizer]
    kube.merge_patch(ref, {"metadata": {"finalizers": finalizers or None,
                                        "resourceVersion": body["metadata"]["resourceVersion"]}})


def patch_spec(kube: Kube, ref: Ref, spec: dict[str, Any], resource_version: str) -> dict[str, Any]:
    """A human's change through relctl (approve, resolve, rollback), as a merge patch on the object as read."""
    return kube.merge_patch(ref, {"metadata": {"resourceVersion": resource_version}, "spec": spec}, manager="relctl")
