"""Gitea (and Forgejo) through its REST API v1.

Its pull request JSON has GitHub's shape; comments go to the issue the pull
request is. Rate limits, paging and conditional GETs are handled by the shared
helpers in ``forges/base.py``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from reliability_center.gitops.forges import base as f
from reliability_center.gitops.workspace import Credentials


class GiteaForge(f.GitHubShapedForge):
    def __init__(self, url: str, credentials: Credentials | None, options: f.ForgeOptions) -> None:
        repo = f.parse_repo_url(url)
        self.repo = repo
        self.web = f"{repo.web_scheme}://{repo.netloc}{repo.prefix}"
        api = options.api_url or f"{self.web}/api/v1"
        creds = credentials or Credentials()
        headers = {"Accept": "application/json"}
        if creds.token:
            headers["Authorization"] = f"token {creds.token}"
        basic = (creds.username, creds.password) if creds.password and not creds.token and creds.username else None
        super().__init__(api, headers, f"/repos/{quote(repo.owner, safe='')}/{quote(repo.name, safe='')}",
                         creds.secrets(), options, auth=basic)

    def create_pull_request(self, opts: f.CreatePullRequestOptions) -> f.PullRequest:
        what = f"create pull request {opts.head} → {opts.base}"
        body = {"head": opts.head, "base": opts.base, "title": opts.title, "body": opts.body}
        try:
            return f.from_github_shape(self._call("POST", "/pulls", what, json=body))
        except f.ForgeError as exc:
            if exc.status != 404:
                raise
        # Gitea records a pushed branch asynchronously: a create right after the push can
        # miss it. Wait for the branch (poll with a deadline), then try once more.
        self._wait_branch(opts.head)
        return f.from_github_shape(self._call("POST", "/pulls", what, json=body))

    def _wait_branch(self, branch: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            response = self._http.get(f"{self._base}/branches/{quote(branch, safe='')}")
            if response.is_success:
                return
            if time.monotonic() > deadline:
                raise f.ForgeError(f"branch {branch!r} did not appear on Gitea within {timeout:.0f}s",
                                   status=response.status_code, retryable=True)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def get_pull_request(self, number: int) -> f.PullRequest | None:
        try:
            return f.from_github_shape(self._get_one(f"/pulls/{number}", f"get pull request #{number}"))
        except f.ForgeError as exc:
            if exc.status == 404:
                return None
            raise

    def list_pull_requests(self, opts: f.ListPullRequestsOptions) -> list[f.PullRequest]:
        if opts.head_branch and opts.base_branch:
            # One request instead of paging through every pull request of the repository.
            try:
                data = self._call("GET", f"/pulls/{quote(opts.base_branch, safe='')}/{quote(opts.head_branch, safe='')}",
                                  f"find pull request {opts.head_branch} → {opts.base_branch}")
            except f.ForgeError as exc:
                if exc.status == 404:
                    return []
                raise
            found = [f.from_github_shape(data)]
        else:
            batch = self._list("/pulls", "list pull requests", {"state": opts.state, "limit": 50})
            found = [f.from_github_shape(item) for item in batch]
        return [pr for pr in found if _wanted(pr, opts)]

    def merge_pull_request(self, number: int, opts: f.MergePullRequestOptions | None = None) -> f.PullRequest:
        opts = opts or f.MergePullRequestOptions()
        body: dict[str, Any] = {"Do": "merge"}
        if opts.expected_head:
            body["head_commit_id"] = opts.expected_head
        if opts.message:
            body["MergeMessageField"] = opts.message
        try:
            self._call("POST", f"/pulls/{number}/merge", f"merge pull request #{number}", json=body)
        except f.ForgeError as exc:
            if exc.status == 405 and "try again later" in str(exc).lower():
                # Gitea is still checking mergeability (the head just moved): not a refusal.
                raise f.ForgeError(str(exc), status=405, retryable=True) from None
            raise
        pr = self.get_pull_request(number)
        if pr is None:
            raise f.ForgeError(f"pull request #{number} vanished after its merge", retryable=False)
        return pr

    def commit_url(self, sha: str) -> str:
        return f"{self.web}/{self.repo.owner}/{self.repo.name}/commit/{sha}"


def _wanted(pr: f.PullRequest, opts: f.ListPullRequestsOptions) -> bool:
    if opts.state == "open" and not pr.open or opts.state == "closed" and pr.open:
        return False
    if opts.head_branch and pr.head_branch != opts.head_branch:
        return False
    return not (opts.base_branch and pr.base_branch != opts.base_branch)


f.register("gitea", f.host_contains("gitea"), GiteaForge, token_user="oauth2")
