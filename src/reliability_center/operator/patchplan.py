"""Kopf glue for PatchPlans: every event queues the plan; a pass advances it one step.

All decisions live in ``gitops.lifecycle`` and all git/forge work in
``gitops.reconcile``; this module only wires Kubernetes in: the credentials
Secret, the Argo CD Application, the Incident for the PR body, live objects,
the file locks (Leases), and one status patch per pass, with the
resourceVersion it read as a precondition (through the gateway's records).

PatchPlans use the same work queue as Incidents (``operator/workqueue.py``),
not a Kopf timer: a timer puts a finalizer on every plan, and a namespace
could not be deleted while the operator is down. An active plan is looked at
again every ``RC_PATCHPLAN_POLL`` seconds while it waits on a pull request (a forge's
webhook wakes it at once: ``patchplan_pull_requests`` finds it), every
``RC_PATCHPLAN_SYNC_POLL`` seconds otherwise; git and HTTP run on worker threads,
never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

from reliability_center.api.common import GROUP, VERSION, now_iso
from reliability_center.api.patchplan import PatchPlan, PatchPlanStatus
from reliability_center.gateway import Kube, Ref, records
from reliability_center.gateway.kube import (Conflict, Fenced, Forbidden, NotFound, describe, namespace_terminating,
                                             transient)
from reliability_center.gateway.tracking import ARGO_NAMESPACE
from reliability_center.gitops import lifecycle as lc
from reliability_center.gitops import reconcile, trust
from reliability_center.gitops.forges import ForgeError, ForgeOptions, lookup, repository_path
from reliability_center.gitops.forges.git import default_cache
from reliability_center.gitops.paths import PathPolicy
from reliability_center.gitops.workspace import Credentials, GitError, Workspace, sanitize
from reliability_center.operator import context, metrics
from reliability_center.operator.workqueue import Echoes, Key, Retry, WorkQueue

if TYPE_CHECKING:
    from reliability_center.intake.forge_hooks import PullRequestEvent

log = logging.getLogger("reliability_center.patchplan")

#: Seconds between two polls of a pull request a plan waits on (its merge, its revert's), right after
#: the plan's last transition; the delay then grows with the time since, up to RC_PATCHPLAN_POLL_MAX.
#: The forges' webhooks (intake/forge_hooks.py) wake a plan at once: this poll is their safety net.
POLL_INTERVAL = float(os.environ.get("RC_PATCHPLAN_POLL", "30"))
#: The same for what no webhook announces (Argo CD's sync, a file lock, a Secret) and for retries.
SYNC_POLL_INTERVAL = float(os.environ.get("RC_PATCHPLAN_SYNC_POLL", "3"))
POLL_MAX = float(os.environ.get("RC_PATCHPLAN_POLL_MAX", "300"))
#: Threads for git and forge work (slow, so apart from the incidents' threads).
WORKERS = int(os.environ.get("RC_PATCHPLAN_WORKERS", "4"))
#: Where the file locks live; empty: the plan's own namespace (then the Lease is owned by the plan).
LOCK_NAMESPACE = os.environ.get("RC_LOCK_NAMESPACE", "")
#: Where credentials Secrets live: the operator's own namespace in an install (it may read Secrets
#: there only); empty, the plan's own namespace (running out of cluster).
CREDENTIALS_NAMESPACE = os.environ.get("RC_CREDENTIALS_NAMESPACE", "")
#: The cluster admin's bound on repository hosts (``host`` or ``host:port``, globs); empty: any host.
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("RC_GITOPS_ALLOWED_HOSTS", "").split(",") if h.strip()]
#: The finalizer Kopf's timer used to put on plans; removed wherever it is still found.
OLD_FINALIZER = "reliability.center/kopf-finalizer"

_STATUS_FIELDS = set(PatchPlanStatus.model_fields) | {f.alias for f in PatchPlanStatus.model_fields.values() if f.alias}
_ECHOES = Echoes()
QUEUE: WorkQueue | None = None


#: The Runbooks as Kopf's index holds them (operator/runbook.py), once a PatchPlan event brought it.
RUNBOOKS: dict[str, kopf.Index] = {}


def policy(kube: Kube) -> PathPolicy:
    """The path policy: RC_GITOPS_ALLOW when the admin set it, else the installed Runbooks' change paths."""
    max_lines, max_bytes = os.environ.get("RC_GITOPS_MAX_DIFF_LINES"), os.environ.get("RC_GITOPS_MAX_DIFF_BYTES")
    allow = os.environ.get("RC_GITOPS_ALLOW")
    index = RUNBOOKS.get("index")
    runbooks = () if allow else ([rb for values in index.values() for rb in values] if index is not None
                                 else kube.list("Runbook"))
    return PathPolicy.from_strings(allow, os.environ.get("RC_GITOPS_DENY"),
                                   int(max_lines) if max_lines else None, int(max_bytes) if max_bytes else None,
                                   runbooks=runbooks)


@functools.cache
def executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(WORKERS, thread_name_prefix="rc-patchplan")


def parse(body: dict[str, Any]) -> PatchPlan:
    """The plan as our model sees it; status keys written by others are left out."""
    status = {k: v for k, v in (body.get("status") or {}).items() if k in _STATUS_FIELDS}
    return PatchPlan.model_validate({**dict(body), "status": status or None})


@kopf.index(GROUP, VERSION, "patchplans")
async def patchplan_pages(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], Any]:
    """The plan's phase for the paging series (metrics.PAGING), while it still moves."""
    samples = metrics.patchplan_samples(namespace, name, body)
    return {(namespace, name): samples} if samples else {}


@kopf.on.event(GROUP, VERSION, "patchplans")
async def on_patchplan(body: kopf.Body, type: str | None, namespace: str, name: str, runbook_index: kopf.Index,
                       patchplan_pages: kopf.Index, **_: Any) -> None:
    RUNBOOKS["index"] = runbook_index
    metrics.PAGING.indexes["patchplans"] = patchplan_pages
    if QUEUE is None:
        return
    if type == "DELETED":
        QUEUE.forget((namespace, name))
        return
    if _ECHOES.ours(body.metadata.uid, body.metadata.get("resourceVersion")):
        return  # the echo of our own status patch
    QUEUE.add((namespace, name), dict(body))


@kopf.index(GROUP, VERSION, "patchplans")
async def patchplan_pull_requests(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, int], Key]:
    """The plans by the pull requests they proposed (theirs and their reverts'), as (repository path, number):
    what a forge webhook names (intake/forge_hooks.py). Kept by the watch: a webhook costs no API call."""
    status = body.get("status") or {}
    try:
        repository = repository_path(((body.get("spec") or {}).get("repository") or {}).get("url") or "")
    except ForgeError:
        return {}
    numbers = {pr.get("number") for pr in (status.get("pullRequest"), status.get("revert")) if isinstance(pr, dict)}
    return {(repository, number): (namespace, name) for number in numbers if isinstance(number, int)}


def wake(index: kopf.Index, event: PullRequestEvent) -> list[str]:
    """Queue a pass over each plan waiting on the webhook's pull request; the pass asks the forge itself.
    A standby (its queue takes no pass) says so instead: NotLeader, a 503."""
    from reliability_center.intake.forge_hooks import NotLeader

    keys = sorted(set(index.get((event.repository, event.number), [])))
    if keys and not context.leading():
        raise NotLeader()
    if QUEUE is not None:
        for key in keys:
            QUEUE.add(key)
    return [f"{namespace}/{name}" for namespace, name in keys]


async def _pass(key: Key, body: dict[str, Any] | None) -> float | None:
    return await asyncio.get_running_loop().run_in_executor(executor(), reconcile_patchplan, key, body)


@kopf.on.startup()
async def start_queue(**_: Any) -> None:
    global QUEUE
    QUEUE = WorkQueue(_pass, WORKERS, context.gate(), name="patchplans")
    QUEUE.start()


@kopf.on.cleanup()
async def stop_queue(**_: Any) -> None:
    if QUEUE is not None:
        await QUEUE.stop()


def reconcile_patchplan(key: Key, body: dict[str, Any] | None, kube: Kube | None = None) -> float | None:
    """One pass: advance the plan one step and write its status; the seconds until the next pass."""
    kube = kube or context.kube()
    ref = Ref("PatchPlan", *key)
    try:
        body = body if body is not None else kube.get(ref)
        if body is None:
            return None
        if OLD_FINALIZER in (body["metadata"].get("finalizers") or []):
            records.drop_finalizer(kube, ref, OLD_FINALIZER, body)
            return 0.0  # read it again, without the finalizer
        if body["metadata"].get("deletionTimestamp"):
            return None
        try:
            plan = parse(body)
        except ValidationError as exc:
            # Admission should have refused it; say why once instead of failing on every pass.
            _write(kube, ref, body, {"phase": "Failed", "conditions": [
                {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": str(exc)[:1000],
                 "lastTransitionTime": now_iso()}]})
            return None
        written: list[PatchPlanStatus] = []

        def write(status: PatchPlanStatus) -> None:
            _write(kube, ref, body, status.wire())
            written.append(status)

        new, wait = step(kube, plan, write)
        if new is not None:
            if not written:  # decided before any git (credentials, the Application): recorded here
                write(new)
            old_phase = lc.phase_of(plan.status)
            if new.phase != old_phase:
                ready = next((c for c in new.conditions if c.type == "Ready"), None)
                log.info("PatchPlan %s/%s %s → %s: %s", *key, old_phase, new.phase, ready.message if ready else "")
        status, rollback = new or plan.status, plan.spec.rollback
        if not lc.active(status, rollback):
            return None
        first = POLL_INTERVAL if lc.waits_on_pull_request(status, rollback) else SYNC_POLL_INTERVAL
        return max(lc.next_poll(status, now_iso(), first, POLL_MAX), wait or 0.0)
    except Conflict:
        return 0.0  # the plan moved since it was read: read it again
    except _Gone:
        return None  # deleted while this pass ran (its namespace going, say): its DELETED event ends it
    except Fenced:
        return SYNC_POLL_INTERVAL  # leadership lapsed mid-pass: the queue waits for it
    except Exception as exc:
        if namespace_terminating(exc):
            return None  # its namespace is going away: nothing more to do, and no Lease to take there
        level = logging.WARNING if transient(exc) else logging.ERROR
        log.log(level, "PatchPlan %s/%s: %s; retrying in %ss", *key, describe(exc), SYNC_POLL_INTERVAL,
                exc_info=not transient(exc))
        return Retry(SYNC_POLL_INTERVAL)


class _Gone(Exception):
    """The plan was deleted between the read and the status write."""


def _write(kube: Kube, ref: Ref, body: dict[str, Any], status: dict[str, Any]) -> None:
    """The new status, only on the plan as it was read (a second writer's patch fails instead)."""
    try:
        written = records.patch_status(kube, ref, status, body["metadata"]["resourceVersion"])
    except NotFound:
        raise _Gone() from None
    _ECHOES.wrote(written["metadata"]["uid"], written["metadata"]["resourceVersion"])


def _note(plan: PatchPlan, t: lc.Transition) -> PatchPlanStatus | None:
    status = plan.status or PatchPlanStatus()
    new = lc.apply(status, t, plan.metadata.generation, now_iso())
    return None if new == status else new


def step(kube: Kube, plan: PatchPlan, write: Callable[[PatchPlanStatus], None]) -> tuple[PatchPlanStatus | None,
                                                                                      float | None]:
    """One reconcile step with everything Kubernetes-side wired in: the new status (None when
    unchanged), and the seconds a rate-limited forge asked to wait (None when it did not). A status the
    reconcile decides is recorded through ``write`` before its git tidy-up; one decided before any git
    (the Application, the credentials) is left to the caller."""
    phase = lc.phase_of(plan.status)
    repo = plan.spec.repository
    if plan.spec.argo_application:  # before any git: another namespace's Application never vouches for a plan
        refusal = lc.application_refusal(read_application(kube, plan), plan.spec.argo_application,
                                         plan.metadata.namespace or "")
        if refusal:
            return _note(plan, lc.Transition(phase, "ApplicationRefused", refusal)), None
    try:
        credentials = read_credentials(kube, plan)
    except CredentialsRefused as exc:  # decided before any network call; looked at again each pass
        return _note(plan, lc.Transition(phase, exc.reason, str(exc))), None
    except CredentialsError as exc:  # retried on the next pass: the Secret may come later
        return _note(plan, lc.Transition(phase, "CredentialsMissing", str(exc))), None
    try:
        registration = lookup(repo.url, repo.provider)
        workspace = Workspace(repo.url, default_cache(), credentials, token_user=registration.token_user)
        forge = registration.constructor(repo.url, credentials, ForgeOptions(cache_dir=default_cache()))
    except (ForgeError, GitError) as exc:
        return _note(plan, lc.failed("InvalidRepository", sanitize(str(exc)))), None
    try:
        rt = reconcile.Runtime(
            forge=forge,
            workspace=workspace,
            policy=policy(kube),
            locks=LeaseLocks(kube, plan),
            read_application=(lambda: read_application(kube, plan)) if plan.spec.argo_application else None,
            read_objects=lambda docs: read_objects(kube, docs),
            read_incident=(lambda: read_incident(kube, plan)) if plan.spec.incident_ref else None,
            write=write,
        )
        return reconcile.step(plan, rt), rt.retry_after
    finally:
        forge.close()


# ---------------------------------------------------------------------------- reads


class CredentialsError(Exception):
    """The credentials Secret is missing or unusable (retried: someone may create it)."""


class CredentialsRefused(Exception):
    """The repository may not be reached, or the Secret may not be sent there (``gitops/trust.py``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def read_credentials(kube: Kube, plan: PatchPlan) -> Credentials | None:
    """The plan's credentials, once the repository host and the Secret's own opt-in allow it."""
    url = plan.spec.repository.url
    refusal = trust.host_refusal(url, ALLOWED_HOSTS)
    if refusal:
        raise CredentialsRefused("RepositoryNotAllowed", refusal)
    name = plan.spec.repository.credentials_secret
    if not name:
        return None
    namespace = CREDENTIALS_NAMESPACE or plan.metadata.namespace or ""
    secret = kube.get(Ref("Secret", namespace, name))
    if secret is None:
        raise CredentialsError(f"Secret {namespace}/{name} not found")
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    refusal = trust.credentials_refusal(url, plan.metadata.namespace or "", namespace, name,
                                        secret["metadata"].get("labels") or {}, data)
    if refusal:
        raise CredentialsRefused("CredentialsRefused", refusal)
    creds = Credentials(username=data.get("username"), password=data.get("password"), token=data.get("token"))
    if not creds.secrets():
        raise CredentialsError(f"Secret {namespace}/{name} has neither 'token' nor 'password'")
    return creds


def read_application(kube: Kube, plan: PatchPlan) -> dict[str, Any] | None:
    ref = plan.spec.argo_application or ""
    namespace, _, name = ref.rpartition("/")
    return kube.get(Ref("Application", namespace or ARGO_NAMESPACE, name))


def read_incident(kube: Kube, plan: PatchPlan) -> dict[str, Any] | None:
    return kube.get(Ref("Incident", plan.metadata.namespace, plan.spec.incident_ref or ""))


def read_objects(kube: Kube, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Live objects for manifests (any kind the apiserver serves); None when absent or unknown,
    left out when the operator may not read it."""
    out: dict[str, dict[str, Any] | None] = {}
    for doc in docs:
        try:
            out[lc.manifest_key(doc)] = kube.get_manifest(doc)
        except Forbidden as exc:
            # Least-privilege RBAC may not let the operator read this kind: it cannot
            # observe the sync itself then (name an Argo CD Application instead).
            log.warning("%s: sync cannot be observed", exc)
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
                records.create(self.kube, self._lease(ref.name, path))
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
        try:  # taken over only as read: two plans cannot both take a stale Lease
            fresh = self._lease(ref.name, path)
            fresh["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            records.replace(self.kube, fresh)
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
                try:  # only as read: a Lease another plan took over meanwhile is not ours to delete
                    records.delete(self.kube, Ref("Lease", self.namespace, lease["metadata"]["name"]),
                                   lease["metadata"]["resourceVersion"])
                except Conflict:
                    pass
