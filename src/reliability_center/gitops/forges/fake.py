"""An in-memory forge for unit tests of the lifecycle (never registered for real URLs).

Tests drive the "human" side with ``merge`` and ``close_unmerged``, and read
``calls`` to assert what the code under test asked for and ``comments`` to read
what it said on a pull request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from reliability_center.gitops.forges import base as f


class FakeForge:
    """``head_of`` reads branch heads from a real repository when the code under test pushes there."""

    def __init__(self, url: str = "https://forge.example/org/repo.git",
                 head_of: Callable[[str], str | None] | None = None) -> None:
        self.url = url
        self.pulls: dict[int, f.PullRequest] = {}
        self.heads: dict[str, str] = {}  # branch → head sha, set by the test or by push()
        self.head_of = head_of
        self.calls: list[tuple[str, object]] = []
        self.comments: list[tuple[int, str]] = []  # (pull request number, body), oldest first
        self.closed = False
        self._next = 1

    # the test's side ---------------------------------------------------------------

    def push(self, branch: str, sha: str) -> None:
        self.heads[branch] = sha

    def merge(self, number: int, merge_commit: str, merged_by: str = "reviewer",
              merged_at: str = "2030-01-01T00:00:00Z") -> f.PullRequest:
        pr = replace(self.pulls[number], open=False, merged=True, merge_commit=merge_commit,
                     merged_by=merged_by, merged_at=merged_at)
        self.pulls[number] = pr
        return pr

    def close_unmerged(self, number: int) -> f.PullRequest:
        self.pulls[number] = replace(self.pulls[number], open=False)
        return self.pulls[number]

    # the Forge protocol --------------------------------------------------------------

    def create_pull_request(self, opts: f.CreatePullRequestOptions) -> f.PullRequest:
        self.calls.append(("create", opts))
        head = self._head(opts.head)
        if head is None:
            raise f.ForgeError(f"head branch {opts.head!r} was not pushed", status=422, retryable=False)
        if any(pr.open and pr.head_branch == opts.head for pr in self.pulls.values()):
            raise f.ForgeError(f"a pull request for {opts.head!r} already exists", status=409, retryable=False)
        number = self._next
        self._next += 1
        pr = f.PullRequest(number=number, url=f"{self.url.removesuffix('.git')}/pulls/{number}", open=True,
                           merged=False, merge_commit=None, head_sha=head, head_branch=opts.head,
                           base_branch=opts.base)
        self.pulls[number] = pr
        return pr

    def get_pull_request(self, number: int) -> f.PullRequest | None:
        self.calls.append(("get", number))
        pr = self.pulls.get(number)
        head = self._head(pr.head_branch) if pr is not None else None
        if pr is not None and pr.open and head not in (None, pr.head_sha):
            pr = self.pulls[number] = replace(pr, head_sha=head)
        return pr

    def _head(self, branch: str) -> str | None:
        return self.head_of(branch) if self.head_of is not None else self.heads.get(branch)

    def list_pull_requests(self, opts: f.ListPullRequestsOptions) -> list[f.PullRequest]:
        self.calls.append(("list", opts))
        out = []
        for pr in self.pulls.values():
            if opts.state == "open" and not pr.open or opts.state == "closed" and pr.open:
                continue
            if opts.head_branch and pr.head_branch != opts.head_branch:
                continue
            if opts.base_branch and pr.base_branch != opts.base_branch:
                continue
            out.append(pr)
        return out

    def merge_pull_request(self, number: int, opts: f.MergePullRequestOptions | None = None) -> f.PullRequest:
        self.calls.append(("merge", number))
        return self.merge(number, merge_commit=f"{number:040x}")

    def close_pull_request(self, number: int) -> f.PullRequest:
        self.calls.append(("close_pull_request", number))
        pr = self._existing(number)
        return pr if not pr.open else self.close_unmerged(number)

    def comment_pull_request(self, number: int, body: str) -> None:
        self.calls.append(("comment", (number, body)))
        self._existing(number)
        self.comments.append((number, body))

    def _existing(self, number: int) -> f.PullRequest:
        if number not in self.pulls:
            raise f.ForgeError(f"pull request #{number} not found", status=404, retryable=False)
        return self.pulls[number]

    def commit_url(self, sha: str) -> str:
        return f"{self.url.removesuffix('.git')}/commit/{sha}"

    def close(self) -> None:
        self.closed = True
