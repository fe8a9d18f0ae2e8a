"""Argo CD's tracking of a live object, and giving our fields back to Git once nothing of ours is held.

Here, below ``gitops``, because the Write Gateway's restore uses them (``gitops/argocd.py`` says why
a restore must give the fields back; it re-exports these). Pure.
"""

from __future__ import annotations

import os
from typing import Any

from reliability_center.gateway.kube import FIELD_MANAGER

#: Where Argo CD's Applications live (Argo CD's --namespace) when a reference names none: for
#: ``argoApplication: <name>`` and for objects Argo CD tracks by label or by a plain tracking id.
ARGO_NAMESPACE = os.environ.get("RC_ARGOCD_NAMESPACE", "argocd")

TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"


def managing_application(obj: dict[str, Any], argo_namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the Application that tracks ``obj``, or None when none does.

    The annotation reads ``<app>:<group>/<kind>:<namespace>/<name>``; ``<app>`` is
    ``<namespace>_<name>`` for an Application outside Argo CD's own namespace. An annotation
    copied onto another object (kubectl get -o yaml | apply) names another object: not ours.
    """
    meta = obj.get("metadata") or {}
    tracking = (meta.get("annotations") or {}).get(TRACKING_ANNOTATION, "")
    if tracking:
        app, _, rest = tracking.partition(":")
        group_kind, _, ns_name = rest.partition(":")
        kind = group_kind.rpartition("/")[2]
        namespace, _, name = ns_name.rpartition("/")
        if kind != obj.get("kind") or name != meta.get("name") or (namespace or None) != meta.get("namespace"):
            return None
        app_ns, sep, app_name = app.partition("_")
        return (app_ns, app_name) if sep else (argo_namespace, app)
    instance = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return (argo_namespace, instance) if instance else None


def release_ops(obj: dict[str, Any], manager: str = FIELD_MANAGER) -> list[dict[str, Any]]:
    """JSON patch dropping ``manager``'s managedFields entries from ``obj`` (as read): its fields are
    nobody's again, so Argo CD compares them with Git. Sent on its own, not beside a change of
    ``manager``'s (the apiserver would record that change under ``manager`` again); a ``test`` per
    entry makes it fail (409) if the list moved since it was read. Empty: nothing to give back."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    ours = [i for i, entry in enumerate(entries) if entry.get("manager") == manager]
    ops: list[dict[str, Any]] = []
    for i in reversed(ours):  # from the end: the indexes before it stay valid
        ops += [{"op": "test", "path": f"/metadata/managedFields/{i}/manager", "value": manager},
                {"op": "remove", "path": f"/metadata/managedFields/{i}"}]
    return ops
