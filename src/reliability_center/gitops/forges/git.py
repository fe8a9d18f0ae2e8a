"""Plain git as a forge: a "pull request" is a pushed branch plus a record ref.

There is no review UI: a human merges the branch into the base with any git
client, and the plan counts as merged once the branch head is reachable from
the base branch. ``create_pull_request`` pushes a small record commit to
``refs/rc/pulls/<number>`` (its message names the head and base branches, its
parent is the head) so that a merged-then-deleted branch is still found, and a
branch deleted without a merge reads as "closed". The number is a CRC of the
branch name: the same branch always maps to the same number.

``close_pull_request`` pushes a new record whose message adds ``"closed": true``
(its parent is still the head), so a closed pull request keeps its branch and
still reads as closed; creating a pull request for that branch again reopens
the same number. Comments are a chain of empty commits under
``refs/rc/comments/<number>``, oldest first, one message per comment; ``comments``
reads them back.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from reliability_center.gitops.forges import base as f
from reliability_center.gitops.workspace import Credentials, GitError, Workspace

RECORD_PREFIX = "refs/rc/pulls/"
COMMENTS_PREFIX = "refs/rc/comments/"
T = TypeVar("T")


def branch_number(branch: str) -> int:
    return (zlib.crc32(branch.encode()) & 0x7FFFFFFF) or 1


def default_cache() -> str:
    return os.environ.get("RC_GITOPS_CACHE") or os.path.expanduser("~/.cache/reliability-center/gitops")


class GitForge:
    def __init__(self, url: str, credentials: Credentials | None, options: f.ForgeOptions) -> None:
        self.ws = Workspace(url, options.cache_dir or default_cache(), credentials)

    def close(self) -> None:
        """Nothing to release: every git call has already exited."""

    def _git(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except GitError as exc:
            raise f.ForgeError(f"{what}: {exc}", retryable=exc.retryable) from None

    def create_pull_request(self, opts: f.CreatePullRequestOptions) -> f.PullRequest:
        number = branch_number(opts.head)
        existing = self.get_pull_request(number)
        if existing is not None and existing.head_branch == opts.head and existing.open:
            return existing
        heads = self._git("read branches", self.ws.fetch, opts.head, opts.base)
        if heads[opts.head] is None or heads[opts.base] is None:
            missing = opts.head if heads[opts.head] is None else opts.base
            raise f.ForgeError(f"branch {missing!r} does not exist on {self.ws.display_url}", status=404,
                               retryable=False)
        meta = json.dumps({"head": opts.head, "base": opts.base, "title": opts.title}, sort_keys=True)
        date = self.ws.commit_date(heads[opts.head])
        record = self._git("write record", lambda: self.ws.commit_empty(heads[opts.head], meta, date=date))
        self._git("push record", self.ws.push_ref, record, f"{RECORD_PREFIX}{number}")
        pr = self.get_pull_request(number)
        if pr is None:
            raise f.ForgeError(f"pull request record {number} vanished after its push")
        return pr

    def _record(self, number: int) -> tuple[str, dict[str, Any]] | None:
        """The record commit of pull request ``number`` and its metadata, or None when there is none."""
        ref = f"{RECORD_PREFIX}{number}"
        refs = self._git("read records", self.ws.remote_refs, ref)
        if ref not in refs:
            return None
        self._git("fetch record", lambda: self.ws.fetch(refs=(ref,)))
        return refs[ref], json.loads(self.ws.message(refs[ref]))

    def get_pull_request(self, number: int) -> f.PullRequest | None:
        found = self._record(number)
        if found is None:
            return None
        record, meta = found
        recorded_head = self.ws.parents(record)[0]
        heads = self._git("read branches", self.ws.fetch, meta["head"], meta["base"])
        head = heads[meta["head"]] or recorded_head
        base = heads[meta["base"]]
        merged = bool(base) and self.ws.is_ancestor(head, base)
        merge_commit = self._merge_commit(head, base) if merged and base else None
        return f.PullRequest(
            number=number,
            url=f"{self.ws.display_url}#{meta['head']}",
            open=not merged and heads[meta["head"]] is not None and not meta.get("closed"),
            merged=merged,
            merge_commit=merge_commit,
            head_sha=head,
            head_branch=meta["head"],
            base_branch=meta["base"],
            merged_by=self.ws.git("show", "-s", "--format=%cn", merge_commit).strip() if merge_commit else None,
            merged_at=self.ws.commit_date(merge_commit) if merge_commit else None,
        )

    def _merge_commit(self, head: str, base: str) -> str:
        """The commit that brought ``head`` into the base's first-parent line."""
        after = self.ws.git("rev-list", "--first-parent", "--ancestry-path", "--reverse", f"{head}..{base}").split()
        if not after:
            return head  # the base is the head itself
        first = after[0]
        parents = self.ws.parents(first)
        return head if parents and parents[0] == head else first  # fast-forward, or a merge commit

    def list_pull_requests(self, opts: f.ListPullRequestsOptions) -> list[f.PullRequest]:
        if opts.head_branch:
            numbers = [branch_number(opts.head_branch)]
        else:
            refs = self._git("read records", self.ws.remote_refs, f"{RECORD_PREFIX}*")
            numbers = [int(r[len(RECORD_PREFIX):]) for r in refs if r[len(RECORD_PREFIX):].isdigit()]
        out = []
        for number in numbers:
            pr = self.get_pull_request(number)
            if pr is None:
                continue
            if opts.head_branch and pr.head_branch != opts.head_branch:
                continue
            if opts.base_branch and pr.base_branch != opts.base_branch:
                continue
            if opts.state == "open" and not pr.open or opts.state == "closed" and pr.open:
                continue
            out.append(pr)
        return out

    def merge_pull_request(self, number: int, opts: f.MergePullRequestOptions | None = None) -> f.PullRequest:
        opts = opts or f.MergePullRequestOptions()
        pr = self.get_pull_request(number)
        if pr is None:
            raise f.ForgeError(f"pull request {number} not found", status=404, retryable=False)
        if pr.merged:
            return pr
        if not pr.open or pr.head_sha is None:
            raise f.ForgeError(f"pull request {number} is closed", status=405, retryable=False)
        if opts.expected_head and opts.expected_head != pr.head_sha:
            raise f.ForgeError(f"pull request {number} head moved to {pr.head_sha[:12]}", status=409,
                               retryable=False)
        message = opts.message or f"Merge branch '{pr.head_branch}' into {pr.base_branch}"
        self._git("merge", self.ws.merge, pr.base_branch, pr.head_sha, message)
        merged = self.get_pull_request(number)
        if merged is None:
            raise f.ForgeError(f"pull request record {number} vanished during its merge")
        return merged

    def close_pull_request(self, number: int) -> f.PullRequest:
        return f.close_once(number, self.get_pull_request, self._close)

    def _close(self, pr: f.PullRequest) -> f.PullRequest:
        """Push a record that says closed; its parent is the head, so a deleted branch is still found."""
        found = self._record(pr.number)
        head = pr.head_sha
        if found is None or head is None:
            raise f.ForgeError(f"pull request record {pr.number} vanished during its close")
        meta = json.dumps({**found[1], "closed": True}, sort_keys=True)
        record = self._git("write record", lambda: self.ws.commit_empty(head, meta, date=_now()))
        self._git("push record", self.ws.push_ref, record, f"{RECORD_PREFIX}{pr.number}")
        closed = self.get_pull_request(pr.number)
        if closed is None:
            raise f.ForgeError(f"pull request record {pr.number} vanished during its close")
        return closed

    def comment_pull_request(self, number: int, body: str) -> None:
        """Append a commit whose message is ``body`` to the pull request's comment chain.

        A plain push (no force) only fast-forwards: when someone else commented at the same
        moment, git refuses it and the retryable error asks for another try; no comment is lost.
        """
        if self.get_pull_request(number) is None:
            raise f.ForgeError(f"pull request {number} not found", status=404, retryable=False)
        ref = f"{COMMENTS_PREFIX}{number}"
        last = self._comments_tip(ref)
        comment = self._git("write comment", lambda: self.ws.commit_empty(last, body, date=_now()))
        self._git("push comment", lambda: self.ws.git("push", "--quiet", self.ws.url, f"{comment}:{ref}"))

    def comments(self, number: int) -> list[str]:
        """The comments on pull request ``number``, oldest first (not part of the Forge protocol)."""
        tip = self._comments_tip(f"{COMMENTS_PREFIX}{number}")
        if tip is None:
            return []
        shas = self.ws.git("rev-list", "--reverse", "--first-parent", tip).split()
        return [self.ws.message(sha).removesuffix("\n") for sha in shas]

    def _comments_tip(self, ref: str) -> str | None:
        refs = self._git("read comments", self.ws.remote_refs, ref)
        if ref not in refs:
            return None
        self._git("fetch comments", lambda: self.ws.fetch(refs=(ref,)))
        return refs[ref]

    def commit_url(self, sha: str) -> str:
        return f"{self.ws.display_url}@{sha}"


def _now() -> str:
    """A git date for records and comments: when they happened (no retry replays them byte for byte)."""
    return f"@{int(time.time())} +0000"


def _claims(url: str) -> bool:
    """Local paths and file:// URLs: nothing else can be a forge for them."""
    return url.startswith(("file://", "/"))


f.register("git", _claims, GitForge)
