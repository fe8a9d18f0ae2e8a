"""Kopf handlers for PatchPlans: a poller that advances each plan one step per tick.

All decisions live in ``gitops.lifecycle`` and all git/forge work in
``gitops.reconcile``; this module only wires Kubernetes in: the credentials
Secret, the Argo CD Application, the Incident for the PR body, live objects,
the file locks (Leases), and one status patch per run.

The handler is a plain ``def``: Kopf runs it in its thread pool, so git and
HTTP calls never block the event loop. The ``when`` filter stops the timer
once a plan has nothing left to do; a later change (``spec.rollback``)
restarts it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
from typing import Any

import kopf
from pydantic import ValidationError

from reliability_center.api.common import GROUP, VERSION, now_iso
from reliability_center.api.patchplan import PatchPlan, PatchPlanStatus
from reliability_center.gateway import Kube, Ref
from reliability_center.gateway.kube import Conflict, NotFound
from reliability_center.gitops import lifecycle as lc
from reliability_center.gitops import reconcile
from reliability_center.gitops.forges import ForgeError, ForgeOptions, lookup
from reliability_center.gitops.forges.git import default_cache
from reliability_center.gitops.paths import PathPolicy
from reliability_center.gitops.workspace import Credentials, GitError, Workspace, sanitize
from reliability_center.operator import context

log = logging.getLogger("reliability_center.patchplan")

#: Seconds between two polls of an active plan (pull request state, Argo CD sync).
POLL_INTERVAL = float(os.environ.get("RC_PATCHPLAN_POLL", "3"))
#: Where the file locks live; empty: the plan's own namespace (then the Lease is owned by the plan).
LOCK_NAMESPACE = os.environ.get("RC_LOCK_NAMESPACE", "")
#: Where Argo CD Applications live when spec.argoApplication has no namespace.
ARGO_NAMESPACE = os.environ.get("RC_ARGOCD_NAMESPACE", "argocd")

_STATUS_FIELDS = set(PatchPlanStatus.model_fields) | {f.alias for f in PatchPlanStatus.model_fields.values() if f.alias}


@functools.cache
def policy() -> PathPolicy:
    max_lines = os.environ.get("RC_GITOPS_MAX_DIFF_LINES")
    return PathPolicy.from_strings(os.environ.get("RC_GITOPS_ALLOW"), os.environ.get("RC_GITOPS_DENY"),
                                   int(max_lines) if max_lines else None)


def parse(body: dict[str, Any]) -> PatchPlan:
    """The plan as our model sees it; status keys written by others (Kopf) are left out."""
    status = {k: v for k, v in (body.get("status") or {}).items() if k in _STATUS_FIELDS}
    return PatchPlan.model_validate({**dict(body), "status": status or None})


def _active(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    try:
        current = PatchPlanStatus.model_validate({k: v for k, v in dict(status).items() if k in _STATUS_FIELDS})
    except ValidationError:
        return True  # let the handler report it
    return lc.active(current, bool(spec.get("rollback")))


@kopf.timer(GROUP, VERSION, "patchplans", id="gitops", interval=POLL_INTERVAL, when=_active)
def reconcile_patchplan(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    try:
        plan = parse(dict(body))
    except ValidationError as exc:
        # Admission should have refused it; say why instead of crashing on every tick.
        patch.status.update({"phase": "Failed", "conditions": [
            {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": str(exc)[:1000],
             "lastTransitionTime": now_iso()}]})
        return
    new = step(context.kube(), plan)
    if new is None:
        return
    patch.status.update(new.wire())
    old_phase = lc.phase_of(plan.status)
    if new.phase != old_phase:
        ready = next((c for c in new.conditions if c.type == "Ready"), None)
        logger.info("PatchPlan %s → %s: %s", old_phase, new.phase, ready.message if ready else "")


def _note(plan: PatchPlan, t: lc.Transition) -> PatchPlanStatus | None:
    status = plan.status or PatchPlanStatus()
    new = lc.apply(status, t, plan.metadata.generation, now_iso())
    return None if new == status else new


def step(kube: Kube, plan: PatchPlan) -> PatchPlanStatus | None:
    """One reconcile step with everything Kubernetes-side wired in; None when the status is unchanged."""
    phase = lc.phase_of(plan.status)
    repo = plan.spec.repository
    try:
        credentials = read_credentials(kube, plan)
    except CredentialsError as exc:  # retried on the next tick: the Secret may come later
        return _note(plan, lc.Transition(phase, "CredentialsMissing", str(exc)))
    try:
        registration = lookup(repo.url, repo.provider)
        workspace = Workspace(repo.url, default_cache(), credentials, token_user=registration.token_user)
        forge = registration.constructor(repo.url, credentials, ForgeOptions(cache_dir=default_cache()))
    except (ForgeError, GitError) as exc:
        return _note(plan, lc.failed("InvalidRepository", sanitize(str(exc))))
    try:
        rt = reconcile.Runtime(
            forge=forge,
            workspace=workspace,
            policy=policy(),
            locks=LeaseLocks(kube, plan),
            read_application=(lambda: read_application(kube, plan)) if plan.spec.argo_application else None,
            read_objects=lambda docs: read_objects(kube, docs),
            read_incident=(lambda: read_incident(kube, plan)) if plan.spec.incident_ref else None,
        )
        return reconcile.step(plan, rt)
    finally:
        forge.close()


# ---------------------------------------------------------------------------- reads


class CredentialsError(Exception):
    """The credentials Secret is missing or unusable (retried: someone may create it)."""


def read_credentials(kube: Kube, plan: PatchPlan) -> Credentials | None:
    name = plan.spec.repository.credentials_secret
    if not name:
        return None
    secret = kube.get(Ref("Secret", plan.metadata.namespace, name))
    if secret is None:
        raise CredentialsError(f"Secret {plan.metadata.namespace}/{name} not found")
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    creds = Credentials(username=data.get("username"), password=data.get("password"), token=data.get("token"))
    if not creds.secrets():
        raise CredentialsError(f"Secret {plan.metadata.namespace}/{name} has neither 'token' nor 'password'")
    return creds


def read_application(kube: Kube, plan: PatchPlan) -> dict[str, Any] | None:
    ref = plan.spec.argo_application or ""
    namespace, _, name = ref.rpartition("/")
    return kube.get(Ref("Application", namespace or ARGO_NAMESPACE, name))


def read_incident(kube: Kube, plan: PatchPlan) -> dict[str, Any] | None:
    return kube.get(Ref("Incident", plan.metadata.namespace, plan.spec.incident_ref or ""))


@functools.cache
def _dynamic(kube: Kube) -> Any:
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(kube.api)


def read_objects(kube: Kube, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Live objects for manifests (any kind the apiserver serves); None when absent or unknown."""
    from kubernetes.dynamic.exceptions import ForbiddenError, NotFoundError, ResourceNotFoundError

    out: dict[str, dict[str, Any] | None] = {}
    for doc in docs:
        key = lc.manifest_key(doc)
        meta = doc.get("metadata") or {}
        try:
            resource = _dynamic(kube).resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            obj = resource.get(name=meta["name"], namespace=meta.get("namespace") if resource.namespaced else None)
            out[key] = obj.to_dict()
        except (NotFoundError, ResourceNotFoundError):
            out[key] = None
        except ForbiddenError:
            # Least-privilege RBAC may not let the operator read this kind: it cannot
            # observe the sync itself then (name an Argo CD Application instead).
            logging.getLogger(__name__).warning("not allowed to read %s %s: sync cannot be observed", doc["kind"], key)
            out[key] = None
    return out


# ---------------------------------------------------------------------------- locks


class LeaseLocks:
    """One Lease per (repository, base branch, file): plans touching the same file take turns.

    Kept in the cluster so that it survives restarts and works with several
    replicas. A holder whose plan is gone, re-created (new uid) or past the
    locking phases is stale and its Lease is taken over, with the Lease's
    resourceVersion as the compare-and-swap.
    """

    def __init__(self, kube: Kube, plan: PatchPlan) -> None:
        self.kube = kube
        meta = plan.metadata
        self.namespace = LOCK_NAMESPACE or meta.namespace or "default"
        self.holder = f"{meta.namespace}/{meta.name}/{meta.uid}"
        self.uid = meta.uid or ""
        self.owner = None if LOCK_NAMESPACE and LOCK_NAMESPACE != meta.namespace else {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "PatchPlan", "name": meta.name, "uid": meta.uid}
        repo = plan.spec.repository
        self.repo_key = f"{sanitize(repo.url)}#{repo.base_branch}"

    def name(self, path: str) -> str:
        return "rc-gitops-" + hashlib.sha256(f"{self.repo_key}\0{path}".encode()).hexdigest()[:40]

    def acquire(self, files: list[str]) -> str | None:
        for path in sorted(files):  # one global order: no deadlock between two plans
            holder = self._acquire_one(path)
            if holder is not None:
                return holder
        return None

    def _acquire_one(self, path: str) -> str | None:
        ref = Ref("Lease", self.namespace, self.name(path))
        lease = self.kube.get(ref)
        if lease is None:
            try:
                self.kube.create(self._lease(ref.name, path))
                return None
            except Conflict:
                lease = self.kube.get(ref)
                if lease is None:
                    return "another plan"
        current = (lease.get("spec") or {}).get("holderIdentity") or ""
        if current == self.holder:
            return None
        if current and not self._stale(current):
            return current
        try:
            fresh = self._lease(ref.name, path)
            fresh["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            self.kube.replace(fresh)
        except (Conflict, NotFound):
            return current or "another plan"
        return None

    def _lease(self, name: str, path: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace,
                                "labels": {"reliability.center/patchplan-uid": self.uid},
                                "annotations": {"reliability.center/path": path[:1024]}}
        if self.owner:
            meta["ownerReferences"] = [self.owner]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.holder,
                         "acquireTime": now_iso().replace("Z", ".000000Z")}}

    def _stale(self, holder: str) -> bool:
        namespace, _, rest = holder.partition("/")
        name, _, uid = rest.partition("/")
        other = self.kube.get(Ref("PatchPlan", namespace, name))
        if other is None or other["metadata"].get("uid") != uid:
            return True
        try:
            return lc.phase_of(parse(other).status) not in lc.LOCKING
        except ValidationError:
            return True

    def release(self) -> None:
        for lease in self.kube.list("Lease", self.namespace, f"reliability.center/patchplan-uid={self.uid}"):
            if (lease.get("spec") or {}).get("holderIdentity") == self.holder:
                self.kube.delete(Ref("Lease", self.namespace, lease["metadata"]["name"]))
