"""GitHub (and GitHub Enterprise Server) through its REST API.

Only contract-tested (tests/contract/test_github_contract.py): the requests
below follow https://docs.github.com/rest/pulls/pulls (comments: /rest/issues/comments,
since a pull request is an issue). Rate limits, paging and conditional GETs are
handled by the shared helpers in ``forges/base.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from reliability_center.gitops.forges import base as f
from reliability_center.gitops.workspace import Credentials

API_VERSION = "2022-11-28"


def api_base(repo: f.RepoURL) -> str:
    if repo.host in ("github.com", "www.github.com"):
        return "https://api.github.com"
    return f"{repo.web_scheme}://{repo.netloc}/api/v3"  # GitHub Enterprise Server


class GitHubForge(f.GitHubShapedForge):
    def __init__(self, url: str, credentials: Credentials | None, options: f.ForgeOptions) -> None:
        repo = f.parse_repo_url(url)
        self.repo = repo
        creds = credentials or Credentials()
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        secret = creds.token or creds.password
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        super().__init__(options.api_url or api_base(repo), headers,
                         f"/repos/{quote(repo.owner, safe='')}/{quote(repo.name, safe='')}", creds.secrets(), options)

    def create_pull_request(self, opts: f.CreatePullRequestOptions) -> f.PullRequest:
        data = self._call("POST", "/pulls", f"create pull request {opts.head} → {opts.base}",
                          json={"title": opts.title, "head": opts.head, "base": opts.base, "body": opts.body,
                                "maintainer_can_modify": False})
        return f.from_github_shape(data)

    def get_pull_request(self, number: int) -> f.PullRequest | None:
        try:
            return f.from_github_shape(self._get_one(f"/pulls/{number}", f"get pull request #{number}"))
        except f.ForgeError as exc:
            if exc.status == 404:
                return None
            raise

    def list_pull_requests(self, opts: f.ListPullRequestsOptions) -> list[f.PullRequest]:
        params: dict[str, Any] = {"state": opts.state, "per_page": 100}
        if opts.head_branch:
            params["head"] = f"{self.repo.owner}:{opts.head_branch}"  # GitHub wants user:ref
        if opts.base_branch:
            params["base"] = opts.base_branch
        return [f.from_github_shape(item) for item in self._list("/pulls", "list pull requests", params)]

    def merge_pull_request(self, number: int, opts: f.MergePullRequestOptions | None = None) -> f.PullRequest:
        opts = opts or f.MergePullRequestOptions()
        body: dict[str, Any] = {"merge_method": "merge"}
        if opts.expected_head:
            body["sha"] = opts.expected_head
        if opts.message:
            body["commit_title"] = opts.message
        self._call("PUT", f"/pulls/{number}/merge", f"merge pull request #{number}", json=body)
        pr = self.get_pull_request(number)
        if pr is None:
            raise f.ForgeError(f"pull request #{number} vanished after its merge", retryable=False)
        return pr

    def commit_url(self, sha: str) -> str:
        return f"https://{self.repo.netloc}/{self.repo.owner}/{self.repo.name}/commit/{sha}"


f.register("github", f.host_contains("github"), GitHubForge, token_user="x-access-token")
