"""One reconcile step of a PatchPlan: decide (``lifecycle``), then do the git and forge I/O.

This is everything the Kopf handler does, minus Kubernetes: the handler hands
in a ``Runtime`` (forge, workspace, locks, readers for the Argo CD Application
and live objects) and patches the status this returns. Tests drive it against
a real Gitea without a cluster.

Side effects are idempotent, so a crash between any two of them is harmless:
branch names derive from the plan, commits are deterministic (fixed dates, so
the same plan on the same base is the same sha), an existing pull request for
the branch is adopted, and every push carries a lease, so git never overwrites
a commit this plan did not write.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reliability_center.api.common import now_iso
from reliability_center.api.patchplan import ObservedSync, PatchPlan, PatchPlanStatus
from reliability_center.gitops import lifecycle as lc
from reliability_center.gitops import prbody
from reliability_center.gitops.conflicts import conflicting_lines
from reliability_center.gitops.edits import EditError, apply_change, changed_lines, unified_diff
from reliability_center.gitops.forges import (
    CreatePullRequestOptions,
    Forge,
    ForgeError,
    ListPullRequestsOptions,
    PullRequest,
)
from reliability_center.gitops.paths import PathPolicy, PathRefused, check_diff, check_paths
from reliability_center.gitops.revert import build_revert, check_revert, revert_branch
from reliability_center.gitops.workspace import GitError, Workspace, sanitize

TRAILER = "Reliability-Center-PatchPlan"
log = logging.getLogger("reliability_center.gitops")


class Locks(Protocol):
    """Serializes plans that touch the same files (the operator keeps them as Leases in the cluster)."""

    def acquire(self, files: list[str]) -> str | None:
        """None when this plan holds every lock; otherwise who holds one of them."""

    def release(self) -> None: ...


class NoLocks:
    def acquire(self, files: list[str]) -> str | None:
        return None

    def release(self) -> None:
        pass


@dataclass
class Runtime:
    forge: Forge
    workspace: Workspace
    policy: PathPolicy = field(default_factory=PathPolicy)
    locks: Locks = field(default_factory=NoLocks)
    #: Reads the Argo CD Application named in spec.argoApplication (None when absent).
    read_application: Callable[[], dict[str, Any] | None] | None = None
    #: Reads the live objects for manifests: manifest_key → object (None when absent).
    read_objects: Callable[[list[dict[str, Any]]], dict[str, dict[str, Any] | None]] | None = None
    #: Reads the Incident named in spec.incidentRef, for the pull request body.
    read_incident: Callable[[], dict[str, Any] | None] | None = None
    now: Callable[[], str] = now_iso
    #: Set by ``step``: the seconds a rate-limited forge asked us to wait (Retry-After) before trying again.
    retry_after: float | None = None
    #: Records a new status (the operator's status patch) before the tidy-up: a merge is recorded the moment
    #: it is seen, not after git deleted the branch, and a branch goes only once its end is recorded.
    #: None: ``step`` returns the status for the caller to record, tidied up already.
    write: Callable[[PatchPlanStatus], None] | None = None


def branch_name(plan: PatchPlan) -> str:
    """rc/<namespace>-<name>-<uid prefix>: stable across retries, new for a re-created plan."""
    meta = plan.metadata
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", f"{meta.namespace}-{meta.name}")[:180].rstrip(".")
    return f"rc/{stem}-{(meta.uid or 'nouid')[:8]}"


def trailers(plan: PatchPlan) -> str:
    meta = plan.metadata
    return f"{TRAILER}: {meta.namespace}/{meta.name}\n{TRAILER}-UID: {meta.uid}\n"


def commit_date(plan: PatchPlan) -> str:
    """The plan's creation time: fixed, so a rebuild on the same base yields the same commit."""
    created = plan.metadata.creation_timestamp
    try:
        stamp = datetime.fromisoformat((created or "").replace("Z", "+00:00"))
    except ValueError:
        stamp = datetime(2000, 1, 1, tzinfo=timezone.utc)
    return f"@{int(stamp.timestamp())} +0000"


@dataclass(frozen=True)
class Built:
    base: str
    commit: str | None  # None: the changes are already on the base
    files: list[str]
    diff: str
    digest: str
    remote: str | None  # where the plan's branch points now (None: absent)


def build(plan: PatchPlan, rt: Runtime) -> Built:
    """Apply the plan's changes on the current base, behind every guard; nothing is pushed."""
    ws = rt.workspace
    spec = plan.spec
    files = sorted({c.path for c in spec.changes})
    check_paths(files, rt.policy)  # the cheap checks first: no fetch for a hostile path
    heads = ws.fetch(spec.repository.base_branch, branch_name(plan))
    base = heads[spec.repository.base_branch]
    if base is None:
        raise GitError(f"base branch {spec.repository.base_branch!r} does not exist on {ws.display_url}",
                       retryable=False)
    check_paths(files, rt.policy, ws.tree_lookup(base))  # now with the tree: symlinks, directories
    texts = edited(plan, ws, base, files)
    before = {path: old for path, (old, _) in texts.items()}
    after = {path: new for path, (_, new) in texts.items()}
    diffs = {p: unified_diff(p, before[p], after[p] or "") for p in files if after[p] != before[p]}
    check_diff({p: changed_lines(d) for p, d in diffs.items()}, rt.policy)
    diff = "".join(diffs[p] for p in sorted(diffs))
    digest = "sha256:" + hashlib.sha256(diff.encode()).hexdigest()
    if not diffs:
        return Built(base, None, files, "", digest, heads[branch_name(plan)])
    message = "\n\n".join(part.strip() for part in (spec.title, spec.description[:4000], trailers(plan)) if part.strip())
    commit = ws.commit_files(base, {p: after[p] or "" for p in diffs}, message, date=commit_date(plan))
    return Built(base, commit, sorted(diffs), diff, digest, heads[branch_name(plan)])


def _text(ws: Workspace, rev: str, path: str) -> str | None:
    try:
        return ws.read_file(rev, path)
    except UnicodeDecodeError:
        raise EditError(path, "not a UTF-8 text file; PatchPlans edit text only") from None


def ours(ws: Workspace, plan: PatchPlan, base: str, head: str) -> bool:
    """Every commit on ``head`` that the base lacks was written for this plan (its uid trailer)."""
    ws.fetch_sha(head)
    commits = ws.commits_between(base, head)
    mark = f"{TRAILER}-UID: {plan.metadata.uid}"
    return bool(commits) and all(mark in ws.message(c) for c in commits)


def push_branch(ws: Workspace, plan: PatchPlan, branch: str, commit: str, remote: str | None, base: str) -> None:
    if remote == commit:
        return
    if remote is not None and not ours(ws, plan, base, remote):
        raise GitError(f"branch {branch!r} already holds commits this plan did not write; "
                       "refusing to overwrite them (rename or delete that branch)", retryable=False)
    ws.push(commit, branch, expect=remote)


# ---------------------------------------------------------------------------- the step


def step(plan: PatchPlan, rt: Runtime) -> PatchPlanStatus | None:
    """Advance ``plan`` by at most one phase. Returns the new status, or None when nothing changed."""
    status = plan.status or PatchPlanStatus()
    action = lc.next_action(status, plan.spec.rollback)
    secrets = rt.workspace.credentials.secrets()
    try:
        t = _ACTIONS[action](plan, status, rt)
    except PathRefused as exc:
        t = lc.failed("PathRefused", str(exc))
    except EditError as exc:
        t = lc.failed("EditFailed", str(exc))
    except (ForgeError, GitError) as exc:
        kind = "Forge" if isinstance(exc, ForgeError) else "Git"
        message = sanitize(str(exc), secrets)
        t = lc.Transition(lc.phase_of(status), f"{kind}Retrying", message) if exc.retryable \
            else lc.failed(getattr(exc, "reason", None) or f"{kind}Error", message)
        rt.retry_after = getattr(exc, "retry_after", None)
    if t is None:
        return None
    new = lc.apply(status, t, plan.metadata.generation, rt.now())
    if new.phase not in lc.LOCKING:
        rt.locks.release()
    if rt.write is not None and new != status:
        rt.write(new)  # raises if the plan moved meanwhile: then no tidy-up either, the next pass decides
    if new.phase != lc.phase_of(status):
        tidy(plan, new, rt)
    return None if new == status else new


def tidy(plan: PatchPlan, new: PatchPlanStatus, rt: Runtime) -> None:
    """After a phase change: close our pull request if the plan failed with it open, and delete the
    branches nobody needs any more (ours once merged or closed). Best effort: a leftover branch is
    not worth failing a transition for, and its deletion is leased (a branch someone moved stays)."""
    ref, revert = new.pull_request, new.revert
    try:
        if new.phase == "Failed" and ref and ref.number and not ref.merge_commit:
            pr = rt.forge.get_pull_request(ref.number)
            if pr is not None and pr.open:
                reason = next((c.message for c in new.conditions if c.type == "Ready"), "")
                rt.forge.comment_pull_request(ref.number, f"reliability-center closes this pull request: the "
                                                          f"PatchPlan failed. {reason}"[:4000])
                rt.forge.close_pull_request(ref.number)
        done = new.phase in ("Merged", "Rejected", "Failed", "Synced", "Verified", "RolledBack")
        if done and ref and ref.branch and ref.head and ref.number:
            rt.workspace.delete_branch(ref.branch, expect=ref.head)
        if new.phase in ("RolledBack", "Failed") and revert and revert.branch and revert.head:
            rt.workspace.delete_branch(revert.branch, expect=revert.head)
        rt.workspace.maintain()
    except (ForgeError, GitError) as exc:
        log.warning("PatchPlan %s/%s: could not tidy up after %s: %s", plan.metadata.namespace,
                    plan.metadata.name, new.phase, sanitize(str(exc), rt.workspace.credentials.secrets()))


def _propose(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    spec = plan.spec
    files = sorted({c.path for c in spec.changes})
    check_paths(files, rt.policy)
    holder = rt.locks.acquire(files)
    if holder:
        return lc.blocked(holder, files)
    branch = branch_name(plan)
    built = build(plan, rt)
    if built.commit is None:
        return lc.failed("NoChange", f"the changes are already on {spec.repository.base_branch} "
                                     f"({built.base[:12]}); nothing to propose")
    existing = [pr for pr in rt.forge.list_pull_requests(ListPullRequestsOptions(
        state="all", head_branch=branch, base_branch=spec.repository.base_branch)) if pr.open or pr.merged]
    if existing and existing[-1].merged:
        # A crash after a human merged but before we recorded the PR: adopt it as is.
        return lc.proposed(existing[-1], built.base, built.files, built.digest, adopted=True)
    push_branch(rt.workspace, plan, branch, built.commit, built.remote, built.base)
    if existing:
        pr = existing[-1]
        adopted = True
    else:
        incident = rt.read_incident() if rt.read_incident is not None else None
        body = prbody.render(plan, built.diff, built.base, incident=incident,
                             events=[(plan.metadata.creation_timestamp or "", "PatchPlanCreated", spec.title),
                                     (rt.now(), "PullRequestOpened", f"branch {branch}")])
        pr = rt.forge.create_pull_request(CreatePullRequestOptions(head=branch, base=spec.repository.base_branch,
                                                                   title=spec.title, body=body))
        adopted = False
    if pr.head_sha is None:
        pr = _with_head(pr, built.commit)
    return lc.proposed(pr, built.base, built.files, built.digest, adopted=adopted)


def read_pull_request(rt: Runtime, number: int) -> PullRequest | None:
    """The pull request, with a "closed without a merge" (which ends the plan) read twice: a forge's read
    can straddle its own merge (Gitea loads the pull request's row, then its issue's, in two queries),
    and seen once here it turned a merged revert into RevertRejected."""
    pr = rt.forge.get_pull_request(number)
    return rt.forge.get_pull_request(number) if pr is not None and pr.closed_unmerged else pr


def _with_head(pr: PullRequest, head: str) -> PullRequest:
    return replace(pr, head_sha=head)


def _wait_merge(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    ref = status.pull_request
    if ref is None or ref.number is None:
        return lc.failed("NoPullRequest", "status lost its pull request reference")
    pr = read_pull_request(rt, ref.number)
    t = lc.on_pull_request(status, pr)
    if t is not None or pr is None:
        return t
    return _keep_fresh(plan, status, rt, pr)


def _keep_fresh(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime, pr: PullRequest) -> lc.Transition | None:
    """While the PR is open: follow a spec change, or the base moving under the plan's files."""
    ref = status.pull_request
    if ref is None:
        return None
    spec_changed = plan.metadata.generation is not None and status.observed_generation != plan.metadata.generation
    base_branch = plan.spec.repository.base_branch
    base_now = rt.workspace.remote_heads(base_branch)[base_branch]
    if not spec_changed and base_now == ref.base:
        return None
    if base_now != ref.base:
        # Was it this PR's own merge, after the PR was read? Then that is the news, not a clash with itself.
        now = read_pull_request(rt, pr.number)
        if now is not None and not now.open:
            return lc.on_pull_request(status, now)
    if pr.head_sha and ref.head and pr.head_sha != ref.head:
        # Someone pushed to the branch (a reviewer's fixup): never rebuild over their work.
        return lc.Transition("Proposed", "BranchEditedByOthers",
                             f"{pr.head_branch} moved to {pr.head_sha[:12]} by someone else; the operator leaves it")
    if not spec_changed and ref.base and base_now:
        rt.workspace.fetch(base_branch)
        touched = rt.workspace.changed_files(ref.base, base_now, status.files or [c.path for c in plan.spec.changes])
        if not touched:
            return lc.refreshed(status, ref.head or "", base_now, status.diff_digest or "",
                                f"{base_branch} moved to {base_now[:12]} without touching this plan's files")
        clash = clashes(plan, rt.workspace, ref.base, base_now, touched)
        if clash:
            return _base_conflict(plan, status, rt, pr, base_now, clash)
    built = build(plan, rt)
    if built.commit is None:
        return lc.Transition("Proposed", "AlreadyOnBase",
                             f"{base_branch} already holds these changes; close #{pr.number} or merge it")
    push_branch(rt.workspace, plan, branch_name(plan), built.commit, built.remote, built.base)
    why = "the spec changed" if spec_changed else f"{base_branch} moved under this plan's files"
    return lc.refreshed(status, built.commit, built.base, built.digest,
                        f"rebuilt #{pr.number} on {built.base[:12]}: {why}")


def edited(plan: PatchPlan, ws: Workspace, base: str, files: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """path → (its text at ``base``, its text once the plan's changes are applied there)."""
    before = {path: _text(ws, base, path) for path in files}
    after: dict[str, str | None] = dict(before)
    for change in plan.spec.changes:
        if change.path in after:
            after[change.path] = apply_change(change.path, after[change.path], change.operation,
                                              yaml_path=change.yaml_path, value=change.value, patch=change.patch,
                                              content=change.content)
    return {path: (before[path], after[path]) for path in files}


def clashes(plan: PatchPlan, ws: Workspace, old_base: str, new_base: str, files: list[str]) -> dict[str, list[int]]:
    """The lines of ``old_base`` that the plan edits and that someone changed on the way to ``new_base``."""
    out = {}
    for path, (before, ours) in edited(plan, ws, old_base, files).items():
        lines = conflicting_lines(before, ours, _text(ws, new_base, path))
        if lines:
            out[path] = lines
    return out


def _base_conflict(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime, pr: PullRequest, base_now: str,
                   clash: dict[str, list[int]]) -> lc.Transition:
    """Someone changed the lines this plan edits: say so (status, and once on the PR); rebuild nothing."""
    where = "; ".join(f"{path} line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:10]))}"
                      for path, lines in sorted(clash.items()))
    base_branch = plan.spec.repository.base_branch
    message = (f"{base_branch} moved to {base_now[:12]} and changed the lines this plan edits ({where}): "
               f"#{pr.number} stays as it was built; edit the PatchPlan to rebuild it over that change "
               f"(overriding it is the plan author's decision), or close the pull request")
    if (status.evidence or {}).get("baseConflict", {}).get("base") != base_now:
        rt.forge.comment_pull_request(pr.number, f"reliability-center: {message}")
    return lc.Transition("Proposed", "BaseConflict", message,
                         evidence={"baseConflict": {"base": base_now, "lines": clash}})


def _includes(ws: Workspace, commit: str) -> Callable[[str], bool]:
    def includes(revision: str) -> bool:
        if not re.fullmatch(r"[0-9a-f]{40}", revision or ""):
            return False
        try:
            ws.fetch_sha(revision)
        except GitError:
            return False
        return ws.is_ancestor(commit, revision)

    return includes


def _verdict(plan: PatchPlan, rt: Runtime, revision: str, before: str | None = None) -> lc.SyncVerdict:
    """Is ``revision`` live? ``before`` (for a revert: the merge it undoes) names the revision whose
    manifests ``revision`` may have taken out, which must then be gone from the cluster."""
    app_ref = plan.spec.argo_application
    if app_ref and rt.read_application is not None:
        return lc.argo_verdict(rt.read_application(), revision, app_ref, _includes(rt.workspace, revision))
    if rt.read_objects is None:
        return lc.SyncVerdict(True, "NotObserved", "no Argo CD Application and no cluster access: "
                              "merged is as far as the operator can see", ObservedSync(revision=revision))
    paths = [c.path for c in plan.spec.changes]
    namespace = plan.metadata.namespace
    docs = manifests_at(rt.workspace, revision, paths, namespace)
    kept = {lc.manifest_key(d) for d in docs}
    removed = [d for d in manifests_at(rt.workspace, before, paths, namespace)
               if lc.manifest_key(d) not in kept] if before else []
    return lc.objects_verdict(docs, rt.read_objects(docs + removed) if docs or removed else {}, revision, removed)


def manifests_at(ws: Workspace, revision: str, paths: list[str], namespace: str | None = None) -> list[dict[str, Any]]:
    """The Kubernetes manifests in ``paths`` as of ``revision`` (other YAML is ignored). A manifest that names
    no namespace is read in ``namespace`` (the plan's), where Argo CD's destination or ``kubectl apply -n``
    puts it; the cluster read ignores it for a cluster-scoped kind."""
    ws.fetch_sha(revision)
    docs: list[dict[str, Any]] = []
    yaml = YAML(typ="safe")
    for path in sorted(set(paths)):
        text = ws.read_file(revision, path)
        if text is None or not path.endswith((".yaml", ".yml", ".json")):
            continue
        try:
            docs += [_in_namespace(d, namespace) for d in yaml.load_all(text) if lc.is_manifest(d)]
        except YAMLError:
            continue
    return docs


def _in_namespace(doc: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    if meta.get("namespace") or not namespace:
        return doc
    return {**doc, "metadata": {**meta, "namespace": namespace}}


def _wait_sync(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    merge = status.pull_request.merge_commit if status.pull_request else None
    if not merge:
        return lc.failed("NoMergeCommit", "status lost the merge commit")
    return lc.on_sync(status, _verdict(plan, rt, merge))


def _verify(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    merge = status.pull_request.merge_commit if status.pull_request else None
    if not merge:
        return lc.failed("NoMergeCommit", "status lost the merge commit")
    try:
        base, commit = check_revert(rt.workspace, plan.spec.repository.base_branch, merge, commit_date(plan))
    except GitError as exc:
        if not exc.conflict:
            raise
        return lc.Transition("Synced", "RevertConflict", sanitize(str(exc))[:900],
                             evidence={"revertCheck": {"clean": False}})
    return lc.verified(base, commit)


def _revert(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    ref = status.pull_request
    if ref is None or not ref.merge_commit or not ref.branch:
        return lc.failed("NoMergeCommit", "nothing merged to revert")
    files = status.files or sorted({c.path for c in plan.spec.changes})
    holder = rt.locks.acquire(files)
    if holder:
        return lc.Transition(lc.phase_of(status), "WaitingForLock",
                             f"{holder} holds the lock on {', '.join(files)}; the revert waits for it")
    branch = revert_branch(ref.branch)
    base_branch = plan.spec.repository.base_branch
    existing = [pr for pr in rt.forge.list_pull_requests(ListPullRequestsOptions(
        state="all", head_branch=branch, base_branch=base_branch)) if pr.open or pr.merged]
    ws = rt.workspace
    if existing:  # a crash after the revert PR was opened, before the status patch
        return lc.reverting(existing[-1], ws.remote_heads(base_branch)[base_branch])
    ws.fetch_sha(ref.merge_commit)
    message = (f"Revert PatchPlan {plan.metadata.namespace}/{plan.metadata.name}: {plan.spec.title}\n\n"
               f"This reverts merge commit {ref.merge_commit}"
               + (f" (pull request #{ref.number})" if ref.number else "") + ".\n\n" + trailers(plan))
    date = ws.git("show", "-s", "--format=@%ct +0000", ref.merge_commit).strip()
    built = build_revert(ws, base_branch, branch, ref.merge_commit, message, date)
    push_branch(ws, plan, branch, built.commit, built.remote, built.base)
    pr = rt.forge.create_pull_request(CreatePullRequestOptions(
        head=branch, base=base_branch, title=f"Revert: {plan.spec.title}"[:256],
        body=prbody.revert_body(plan, ref.number, ref.merge_commit, built.diff)))
    if pr.head_sha is None:
        pr = _with_head(pr, built.commit)
    return lc.reverting(pr, built.base)


def _wait_revert(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    ref = status.revert
    if ref is None or ref.number is None:
        return lc.failed("NoRevertPullRequest", "status lost its revert pull request reference")
    if not ref.merge_commit:
        return lc.on_revert_pull_request(status, read_pull_request(rt, ref.number))
    return lc.on_revert_sync(status, _verdict(plan, rt, ref.merge_commit, before=status.pull_request.merge_commit
                                              if status.pull_request else None))


def _cancel(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    return lc.cancelled()


def _none(plan: PatchPlan, status: PatchPlanStatus, rt: Runtime) -> lc.Transition | None:
    return None


_ACTIONS: dict[lc.Action, Callable[[PatchPlan, PatchPlanStatus, Runtime], lc.Transition | None]] = {
    lc.Action.PROPOSE: _propose,
    lc.Action.WAIT_MERGE: _wait_merge,
    lc.Action.WAIT_SYNC: _wait_sync,
    lc.Action.VERIFY: _verify,
    lc.Action.REVERT: _revert,
    lc.Action.WAIT_REVERT: _wait_revert,
    lc.Action.CANCEL: _cancel,
    lc.Action.NONE: _none,
}
