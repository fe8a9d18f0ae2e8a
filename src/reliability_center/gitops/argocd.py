"""Will a Level 1 change hold on an object an Argo CD Application manages? Pure, plus one reader.

An automated Application puts its objects back to Git: with ``selfHeal`` within seconds of a
change (checked with Argo CD v3.2.11: a flag the operator turned off was back on in 3 s), without
it at the next sync of a new commit. The mechanism that lets a mitigation hold until the incident
resolves, with Argo CD still syncing everything else, is Argo CD's own (checked the same way)::

    spec:
      ignoreDifferences:
        - kind: ConfigMap                       # (group: apps, kind: Deployment, ...)
          managedFieldsManagers: [reliability-center]
      syncPolicy:
        syncOptions: [RespectIgnoreDifferences=true]

``ignoreDifferences`` alone only hides the diff: a sync (self-heal of another field, a new commit)
would still apply Git's value over ours; ``RespectIgnoreDifferences=true`` makes the sync keep the
live value of the ignored fields. Fields the operator holds are the ones it wrote (its field
manager owns them), so nothing else escapes Git.

The same rule has a tail: after the resolve the fields are still ``manager``'s (the restore is a
write of ours too), so Argo CD keeps ignoring them and a later commit that changes them never
reaches the cluster while the Application says Synced (tests/e2e/test_argocd_selfheal.py).
``release_ops`` is the JSON patch that gives them back, once nothing of ours is held on the object.

``managing_application`` reads Argo CD's tracking on the live object (the ``tracking-id``
annotation, Argo CD 3's default, or the ``app.kubernetes.io/instance`` label);
``hold_problem`` says what the Application lacks; ``check`` does both with a reader.
"""

from __future__ import annotations

from typing import Any, Protocol

from reliability_center.gateway.kube import FIELD_MANAGER, Ref
from reliability_center.gateway.tracking import (INSTANCE_LABEL, TRACKING_ANNOTATION, managing_application,
                                                 release_ops)

__all__ = ["INSTANCE_LABEL", "TRACKING_ANNOTATION", "check", "hold_problem", "managing_application", "release_ops"]

RESPECT = "RespectIgnoreDifferences=true"


class Reader(Protocol):
    def get(self, ref: Ref) -> dict[str, Any] | None: ...


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _covers(rule: dict[str, Any], obj: dict[str, Any], manager: str) -> bool:
    meta = obj.get("metadata") or {}
    return (rule.get("kind") == obj.get("kind") and (rule.get("group") or "") == _group(obj.get("apiVersion", ""))
            and rule.get("name", meta.get("name")) == meta.get("name")
            and rule.get("namespace", meta.get("namespace")) == meta.get("namespace")
            and manager in (rule.get("managedFieldsManagers") or []))


def hold_problem(app: dict[str, Any], obj: dict[str, Any], manager: str = FIELD_MANAGER) -> str | None:
    """Why Argo CD would undo ``manager``'s change to ``obj`` before the incident resolves (None: it holds)."""
    policy = (app.get("spec") or {}).get("syncPolicy") or {}
    automated = policy.get("automated")
    if automated is None or automated.get("enabled") is False:
        return None  # only a person's sync would apply Git over it
    name = f"Argo CD Application {(app.get('metadata') or {}).get('namespace')}/{app['metadata']['name']}"
    when = "self-heal reverts it within seconds" if automated.get("selfHeal") else \
        "its automated sync of the next commit reverts it"
    missing = []
    if not any(_covers(rule, obj, manager) for rule in (app.get("spec") or {}).get("ignoreDifferences") or []):
        group = _group(obj.get("apiVersion", ""))
        rule = (f"group: {group}, " if group else "") + f"kind: {obj.get('kind')}, managedFieldsManagers: [{manager}]"
        missing.append("ignoreDifferences [{" + rule + "}]")
    if RESPECT not in (policy.get("syncOptions") or []):
        missing.append(f"the sync option {RESPECT}")
    if not missing:
        return None
    return f"{name} syncs {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')} automatically and " \
           f"{when}: it needs {' and '.join(missing)}"


def check(kube: Reader, obj: dict[str, Any], argo_namespace: str, manager: str = FIELD_MANAGER) -> str | None:
    """``hold_problem`` for the Application that manages ``obj`` (None: none does, or it holds)."""
    found = managing_application(obj, argo_namespace)
    if found is None:
        return None
    app = kube.get(Ref("Application", *found))
    if app is None:
        return None  # tracking left behind by a deleted Application: nothing syncs it
    return hold_problem(app, obj, manager)
