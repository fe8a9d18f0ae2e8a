"""Rollback of a merged PatchPlan: a revert of its merge commit, on its own branch, in its own pull request.

A merge commit has two parents: ``git revert -m 1 <sha>`` undoes what the
merge brought relative to the base's first parent. A squash or fast-forward
merge leaves an ordinary commit: a plain ``git revert <sha>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reliability_center.gitops.workspace import GitError, Workspace


def mainline_args(parent_count: int) -> list[str]:
    if parent_count > 2:
        raise GitError(f"an octopus merge ({parent_count} parents) cannot be reverted automatically", retryable=False)
    return ["-m", "1"] if parent_count == 2 else []


def revert_branch(branch: str) -> str:
    return f"{branch}-revert"


@dataclass(frozen=True)
class RevertBuild:
    base: str       # the base-branch head the revert sits on
    commit: str     # the revert commit
    remote: str | None  # what the revert branch pointed at before (None: new branch)
    diff: str


def build_revert(ws: Workspace, base_branch: str, branch: str, merge_commit: str, message: str,
                 date: str) -> RevertBuild:
    """The revert commit of ``merge_commit`` on top of the current base (nothing pushed yet)."""
    heads = ws.fetch(base_branch, branch)
    base = heads[base_branch]
    if base is None:
        raise GitError(f"base branch {base_branch!r} is gone from {ws.display_url}", retryable=False)
    ws.fetch_sha(merge_commit)
    if not ws.is_ancestor(merge_commit, base):
        raise GitError(f"merge commit {merge_commit[:12]} is not on {base_branch} any more (history rewritten?)",
                       retryable=False)
    mainline = mainline_args(len(ws.parents(merge_commit)))
    commit = ws.revert(base, merge_commit, message, date=date, mainline=mainline)
    diff = ws.git("diff", base, commit)
    return RevertBuild(base=base, commit=commit, remote=heads[branch], diff=diff)


def check_revert(ws: Workspace, base_branch: str, merge_commit: str, date: str) -> tuple[str, str]:
    """Prove the rollback path: the revert applies cleanly on today's base. Returns (base, commit); nothing pushed."""
    built = build_revert(ws, base_branch, "rc/none", merge_commit, f"check revert of {merge_commit}", date)
    return built.base, built.commit
