"""The PatchPlan state machine: pure functions over status and observations.

::

    Pending ──propose──▶ Proposed ──merged──▶ Merged ──synced──▶ Synced ──revert checks──▶ Verified
       │                    │ closed unmerged                           │
       │                    ▼                                          │  spec.rollback (Merged/Synced/Verified)
       │                 Rejected                                      ▼
       │ rollback before proposing                               RollingBack ──revert merged & synced──▶ RolledBack
       ▼                                                                │ revert closed unmerged
    RolledBack (nothing to revert)            any terminal error ──▶ Failed ◀┘

``next_action`` says what the reconciler must observe or do next; the
``on_*`` functions turn an observation into a ``Transition`` (or None when
nothing changed); ``apply`` writes a transition into a new status with its
conditions. No I/O here: the reconciler (``gitops.reconcile``) does it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reliability_center.api.common import set_condition
from reliability_center.api.patchplan import ObservedSync, PatchPlanStatus, Phase, PullRequestRef
from reliability_center.gitops.forges import PullRequest

#: Nothing more happens on its own (a Verified plan still accepts a rollback request).
TERMINAL: frozenset[str] = frozenset({"Rejected", "RolledBack", "Failed"})
#: While a plan is in one of these phases it holds the locks on the files it touches.
LOCKING: frozenset[str] = frozenset({"Pending", "Proposed", "Merged", "RollingBack"})
_READY: frozenset[str] = frozenset({"Synced", "Verified", "RolledBack"})
_WAITING: frozenset[str] = frozenset({"Pending", "Proposed", "Merged", "RollingBack"})


class Action(str, enum.Enum):
    PROPOSE = "Propose"          # open (or adopt) the pull request
    WAIT_MERGE = "WaitMerge"     # poll the pull request (and keep it fresh if the base moved)
    WAIT_SYNC = "WaitSync"       # observe Argo CD (or the objects) at the merge commit
    VERIFY = "Verify"            # prove the revert of the merge commit applies cleanly
    REVERT = "Revert"            # open the revert pull request
    WAIT_REVERT = "WaitRevert"   # poll the revert pull request, then its sync
    CANCEL = "Cancel"            # rollback requested before anything was proposed
    NONE = "None"


def phase_of(status: PatchPlanStatus | None) -> Phase:
    return status.phase if status and status.phase else "Pending"


def next_action(status: PatchPlanStatus | None, rollback: bool) -> Action:
    phase = phase_of(status)
    merged = bool(status and status.pull_request and status.pull_request.merge_commit)
    revert_opened = bool(status and status.revert and status.revert.number)
    if phase == "RollingBack":
        return Action.WAIT_REVERT
    if phase in TERMINAL:
        # A plan that failed after its merge (say, a sync error) can still be rolled back once.
        if phase == "Failed" and rollback and merged and not revert_opened:
            return Action.REVERT
        return Action.NONE
    if rollback:
        if phase == "Pending":
            return Action.CANCEL
        if phase == "Proposed":
            return Action.WAIT_MERGE  # nothing merged yet: a merge will be reverted, a close ends it
        return Action.REVERT
    if phase == "Synced" and status and (status.evidence or {}).get("revertCheck", {}).get("clean") is False:
        return Action.NONE  # the revert does not apply cleanly: say so once, do not retry every tick
    return {
        "Pending": Action.PROPOSE,
        "Proposed": Action.WAIT_MERGE,
        "Merged": Action.WAIT_SYNC,
        "Synced": Action.VERIFY,
        "Verified": Action.NONE,
    }[phase]


def next_poll(status: PatchPlanStatus | None, now: str, first: float, longest: float) -> float:
    """Seconds until the next look at an active plan: soon after a change, then less and less often.

    A pull request that waits for a review for hours costs a handful of forge requests an
    hour, not a thousand: the delay grows with the time since the plan's last transition
    (a tenth of it), from ``first`` up to ``longest``. A change to the plan itself (a
    rollback request) is an event, looked at at once whatever the delay.
    """
    ready = next((c for c in (status.conditions if status else []) if c.type == "Ready"), None)
    if ready is None or not ready.last_transition_time:
        return first
    since = datetime.fromisoformat(ready.last_transition_time.replace("Z", "+00:00"))
    age = (datetime.fromisoformat(now.replace("Z", "+00:00")) - since).total_seconds()
    return min(max(first, age / 10), longest)


def waits_on_pull_request(status: PatchPlanStatus | None, rollback: bool) -> bool:
    """Whether the plan waits on a human's merge or close on the forge (its pull request, or its revert's):
    what a forge webhook announces, so these looks are the webhooks' safety net and may be slow."""
    action = next_action(status, rollback)
    return action is Action.WAIT_MERGE or (action is Action.WAIT_REVERT and status is not None
                                           and status.revert is not None and not status.revert.merge_commit)


def active(status: PatchPlanStatus | None, rollback: bool) -> bool:
    """Whether the poller has anything left to do for this plan."""
    return next_action(status, rollback) is not Action.NONE


@dataclass(frozen=True)
class Transition:
    phase: Phase
    reason: str
    message: str = ""
    pull_request: PullRequestRef | None = None
    revert: PullRequestRef | None = None
    sync: ObservedSync | None = None
    files: list[str] | None = None
    diff_digest: str | None = None
    evidence: dict[str, Any] | None = None


def apply(status: PatchPlanStatus | None, t: Transition, generation: int | None, now: str) -> PatchPlanStatus:
    """The new status: the transition's fields, and Ready/Reconciling/Stalled conditions derived from it."""
    new = (status or PatchPlanStatus()).model_copy(deep=True)
    new.phase = t.phase
    new.observed_generation = generation
    for name in ("pull_request", "revert", "sync", "files", "diff_digest", "evidence"):
        value = getattr(t, name)
        if value is not None:
            setattr(new, name, value)
    conds = new.conditions
    conds = set_condition(conds, "Ready", "True" if t.phase in _READY else "False", t.reason, t.message,
                          generation, now)
    conds = set_condition(conds, "Reconciling", "True" if t.phase in _WAITING else "False", t.reason, t.message,
                          generation, now)
    conds = set_condition(conds, "Stalled", "True" if t.phase in ("Rejected", "Failed") else "False", t.reason,
                          t.message, generation, now)
    new.conditions = conds
    return new


# ---------------------------------------------------------------------------- transitions


def pr_ref(pr: PullRequest, base: str | None = None) -> PullRequestRef:
    return PullRequestRef(url=pr.url, number=pr.number, head=pr.head_sha, branch=pr.head_branch,
                          merge_commit=pr.merge_commit, merged_at=pr.merged_at, merged_by=pr.merged_by, base=base)


def proposed(pr: PullRequest, base: str, files: list[str], digest: str, adopted: bool) -> Transition:
    verb = "adopted the existing" if adopted else "opened"
    return Transition("Proposed", "PullRequestAdopted" if adopted else "PullRequestOpened",
                      f"{verb} pull request #{pr.number} ({pr.head_branch} → {pr.base_branch}); waiting for a review",
                      pull_request=pr_ref(pr, base), files=files, diff_digest=digest)


def refreshed(status: PatchPlanStatus, head: str, base: str, digest: str, why: str) -> Transition:
    ref = (status.pull_request or PullRequestRef()).model_copy(update={"head": head, "base": base})
    return Transition("Proposed", "BranchRefreshed", why, pull_request=ref, diff_digest=digest)


def on_pull_request(status: PatchPlanStatus, pr: PullRequest | None) -> Transition | None:
    number = status.pull_request.number if status.pull_request else None
    if pr is None:
        return Transition("Failed", "PullRequestNotFound", f"pull request #{number} no longer exists on the forge")
    if pr.merged:
        if not pr.merge_commit:
            return None  # the forge has not reported the merge commit yet
        ref = pr_ref(pr, status.pull_request.base if status.pull_request else None)
        return Transition("Merged", "PullRequestMerged",
                          f"#{pr.number} merged by {pr.merged_by or 'unknown'} as {pr.merge_commit[:12]}; "
                          "waiting for the sync", pull_request=ref)
    if not pr.open:
        return Transition("Rejected", "PullRequestClosed",
                          f"#{pr.number} was closed without a merge; nothing changed in Git")
    return None


def on_revert_pull_request(status: PatchPlanStatus, pr: PullRequest | None) -> Transition | None:
    number = status.revert.number if status.revert else None
    if pr is None:
        return Transition("Failed", "RevertNotFound", f"revert pull request #{number} no longer exists")
    if pr.merged:
        if not pr.merge_commit:
            return None
        return Transition("RollingBack", "RevertMerged",
                          f"revert #{pr.number} merged as {pr.merge_commit[:12]}; waiting for the sync",
                          revert=pr_ref(pr, status.revert.base if status.revert else None))
    if not pr.open:
        return Transition("Failed", "RevertRejected",
                          f"revert #{pr.number} was closed without a merge; the change stays in place")
    return None


def reverting(pr: PullRequest, base: str | None) -> Transition:
    return Transition("RollingBack", "RevertProposed",
                      f"opened revert pull request #{pr.number} ({pr.head_branch}); waiting for a review",
                      revert=pr_ref(pr, base))


def cancelled() -> Transition:
    return Transition("RolledBack", "NotProposed", "rollback requested before any pull request: nothing to revert")


def blocked(holder: str, files: list[str]) -> Transition:
    return Transition("Pending", "WaitingForLock",
                      f"{holder} holds the lock on {', '.join(files)}; this plan waits for it to finish")


def failed(reason: str, message: str) -> Transition:
    return Transition("Failed", reason, message)


def verified(base: str, revert_sha: str) -> Transition:
    return Transition("Verified", "RevertChecked",
                      f"synced; the revert of the merge commit applies cleanly on {base[:12]}",
                      evidence={"revertCheck": {"onto": base, "commit": revert_sha, "clean": True}})


# ---------------------------------------------------------------------------- sync observation


@dataclass(frozen=True)
class SyncVerdict:
    ok: bool
    reason: str
    message: str
    observed: ObservedSync


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def application_refusal(app: dict[str, Any] | None, name: str, namespace: str) -> str | None:
    """Why the Argo CD Application ``name`` may not vouch for a plan of ``namespace`` (None: it may).

    A plan's sync and health are read from its Application, and so is its Verified: an Application
    that deploys another namespace would let a namespace's editor borrow another tenant's state (and
    read it back in the plan's status). Only an Application whose destination is the plan's own
    namespace counts. A missing one is not refused here: the sync verdict says ApplicationNotFound.
    """
    if app is None:
        return None
    destination = ((app.get("spec") or {}).get("destination") or {}).get("namespace") or ""
    if destination == namespace:
        return None
    deploys = f"deploys to namespace {destination}" if destination else \
        "names no destination namespace (its manifests pick their own)"
    return (f"Argo CD Application {name} {deploys}, not {namespace}: a PatchPlan may only name an Application "
            f"whose spec.destination.namespace is the plan's own namespace")


def argo_verdict(app: dict[str, Any] | None, revision: str, name: str = "",
                 includes: Callable[[str], bool] | None = None) -> SyncVerdict:
    """Whether an Argo CD Application shows ``revision`` synced and healthy, in a way we can trust.

    Argo CD computes health on its own schedule: a Healthy read just after a
    sync may describe the objects *before* the sync. Health counts only when
    ``status.reconciledAt >= status.operationState.finishedAt``, the synced
    revision is the merge commit (or, with ``includes``, a later commit that
    contains it), sync status is Synced and health is Healthy.
    """
    if app is None:
        return SyncVerdict(False, "ApplicationNotFound", f"Argo CD Application {name} not found",
                           ObservedSync(application=name))
    st = app.get("status") or {}
    sync = st.get("sync") or {}
    health = (st.get("health") or {}).get("status")
    op = st.get("operationState") or {}
    observed = ObservedSync(application=name, revision=sync.get("revision"), sync_status=sync.get("status"),
                            health=health, reconciled_at=st.get("reconciledAt"))
    revisions = [r for r in [sync.get("revision"), *(sync.get("revisions") or [])] if r]
    at_revision = revision in revisions or bool(includes and any(includes(r) for r in revisions))
    op_revision = (op.get("syncResult") or {}).get("revision")
    if op.get("phase") in ("Failed", "Error") and op_revision == revision:
        return SyncVerdict(False, "SyncFailed", f"Argo CD failed to sync {revision[:12]}: {op.get('message', '')}"[:512],
                           observed)
    if not at_revision:
        now_at = (sync.get("revision") or "nothing")[:12]
        return SyncVerdict(False, "RevisionMismatch", f"{name} is at {now_at}; waiting for {revision[:12]}", observed)
    if sync.get("status") != "Synced":
        return SyncVerdict(False, "OutOfSync", f"{name} sync status is {sync.get('status') or 'unknown'}", observed)
    finished, reconciled = _time(op.get("finishedAt")), _time(st.get("reconciledAt"))
    if finished is None or reconciled is None:
        return SyncVerdict(False, "NotReconciled",
                           f"{name} has no finished sync operation or no reconciliation time yet", observed)
    if reconciled < finished:
        return SyncVerdict(False, "StaleHealth", f"{name} health was computed at {st.get('reconciledAt')}, "
                                                 f"before the sync finished at {op.get('finishedAt')}", observed)
    if op.get("phase") not in (None, "Succeeded"):
        return SyncVerdict(False, "SyncRunning", f"{name} sync operation is {op.get('phase')}", observed)
    if health != "Healthy":
        return SyncVerdict(False, "NotHealthy", f"{name} health is {health or 'unknown'}", observed)
    return SyncVerdict(True, "Synced", f"{name} synced {revision[:12]} and is Healthy", observed)


def objects_verdict(desired: list[dict[str, Any]], live: dict[str, dict[str, Any] | None],
                    revision: str, removed: list[dict[str, Any]] = ()) -> SyncVerdict:
    """Without Argo CD: synced when every manifest in the changed files is live with that content,
    and every manifest that ``revision`` took out of them (a revert of a file the plan added) is gone.

    ``live`` maps ``manifest_key`` to the object read from the cluster (None
    when absent, no key when it could not be read). Only the fields the
    manifest sets are compared: the apiserver adds defaults and status.
    """
    observed = ObservedSync(revision=revision)
    unreadable = [manifest_key(d) for d in [*removed, *desired] if manifest_key(d) not in live]
    if unreadable:
        return SyncVerdict(False, "ObjectUnreadable", f"the operator may not read {unreadable[0]}: name an Argo CD "
                           "Application to observe the sync", observed)
    for doc in removed:
        key = manifest_key(doc)
        if live[key] is not None:
            return SyncVerdict(False, "ObjectNotPruned", f"{key} was removed from Git at {revision[:12]} "
                               "and is still in the cluster", observed)
    if not desired:
        return SyncVerdict(True, "NothingToObserve",
                           "the changed files hold no Kubernetes manifest; merged is as far as the operator can see",
                           observed)
    for doc in desired:
        key = manifest_key(doc)
        obj = live.get(key)
        if obj is None:
            return SyncVerdict(False, "ObjectMissing", f"{key} is not in the cluster yet", observed)
        diff = first_difference(doc, obj)
        if diff is not None:
            return SyncVerdict(False, "ObjectDiffers", f"{key} differs at {diff}", observed)
    return SyncVerdict(True, "ObjectsSynced", f"{len(desired)} object(s) match {revision[:12]}", observed)


def manifest_key(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('apiVersion')}/{doc.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def is_manifest(doc: Any) -> bool:
    return isinstance(doc, dict) and bool(doc.get("apiVersion")) and bool(doc.get("kind")) and \
        bool((doc.get("metadata") or {}).get("name"))


def first_difference(want: Any, have: Any, where: str = "") -> str | None:
    """The first path where ``have`` does not contain ``want`` (None when it does)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return where or "."
        for key, value in want.items():
            if key == "status" and not where:
                continue
            found = first_difference(value, have.get(key), f"{where}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return where or "."
        for i, (w, h) in enumerate(zip(want, have)):
            found = first_difference(w, h, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    if want == have or (want is not None and have is not None and str(want) == str(have)):
        return None
    return where or "."


def on_sync(status: PatchPlanStatus, verdict: SyncVerdict) -> Transition:
    """Merged → Synced once the verdict is good; otherwise stay and say why."""
    if verdict.ok:
        return Transition("Synced", verdict.reason, verdict.message, sync=verdict.observed)
    return Transition(phase_of(status), verdict.reason, verdict.message, sync=verdict.observed)


def on_revert_sync(status: PatchPlanStatus, verdict: SyncVerdict) -> Transition:
    if verdict.ok:
        return Transition("RolledBack", "RevertSynced", f"revert synced: {verdict.message}", sync=verdict.observed)
    return Transition("RollingBack", verdict.reason, verdict.message, sync=verdict.observed)
