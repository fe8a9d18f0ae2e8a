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

TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"
RESPECT = "RespectIgnoreDifferences=true"


class Reader(Protocol):
    def get(self, ref: Ref) -> dict[str, Any] | None: ...


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
