"""GitLab merge requests through the REST API v4.

Only contract-tested (tests/contract/test_gitlab_contract.py): the requests
below follow https://docs.gitlab.com/ee/api/merge_requests.html (comments:
/ee/api/notes.html). A merge request's ``iid`` (per project) is the neutral
``number``. Rate limits, paging and conditional GETs are handled by the shared
helpers in ``forges/base.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from reliability_center.gitops.forges import base as f
from reliability_center.gitops.workspace import Credentials

_STATES = {"open": "opened", "closed": "closed", "all": "all"}


class GitLabForge(f.RestForge):
    def __init__(self, url: str, credentials: Credentials | None, options: f.ForgeOptions) -> None:
        repo = f.parse_repo_url(url)
        self.repo = repo
        creds = credentials or Credentials()
        headers = {"Accept": "application/json"}
        if creds.token:
            headers["PRIVATE-TOKEN"] = creds.token
        elif creds.password:
            headers["Authorization"] = f"Bearer {creds.password}"  # an OAuth2 access token
        api = options.api_url or f"{repo.web_scheme}://{repo.netloc}/api/v4"
        # Nested groups: the project id is the whole path, URL-encoded ("group%2Fsub%2Fproject").
        self.project_path = "/".join(repo.segments)
        super().__init__(api, headers, f"/projects/{quote(self.project_path, safe='')}", creds.secrets(), options)

    def create_pull_request(self, opts: f.CreatePullRequestOptions) -> f.PullRequest:
        data = self._call("POST", "/merge_requests", f"create merge request {opts.head} → {opts.base}",
                          json={"source_branch": opts.head, "target_branch": opts.base, "title": opts.title,
                                "description": opts.body, "remove_source_branch": False})
        return to_neutral(data)

    def get_pull_request(self, number: int) -> f.PullRequest | None:
        try:
            return to_neutral(self._get_one(f"/merge_requests/{number}", f"get merge request !{number}"))
        except f.ForgeError as exc:
            if exc.status == 404:
                return None
            raise

    def list_pull_requests(self, opts: f.ListPullRequestsOptions) -> list[f.PullRequest]:
        params: dict[str, Any] = {"state": _STATES[opts.state], "per_page": 100}
        if opts.head_branch:
            params["source_branch"] = opts.head_branch
        if opts.base_branch:
            params["target_branch"] = opts.base_branch
        found = [to_neutral(item) for item in self._list("/merge_requests", "list merge requests", params)]
        if opts.state == "closed":  # GitLab's "closed" excludes merged ones; the neutral "closed" includes them
            merged = self._list("/merge_requests", "list merge requests", {**params, "state": "merged"})
            found += [to_neutral(item) for item in merged]
        return found

    def merge_pull_request(self, number: int, opts: f.MergePullRequestOptions | None = None) -> f.PullRequest:
        opts = opts or f.MergePullRequestOptions()
        body: dict[str, Any] = {"should_remove_source_branch": False}
        if opts.expected_head:
            body["sha"] = opts.expected_head
        if opts.message:
            body["merge_commit_message"] = opts.message
        return to_neutral(self._call("PUT", f"/merge_requests/{number}/merge", f"merge merge request !{number}",
                                     json=body))

    def close_pull_request(self, number: int) -> f.PullRequest:
        return f.close_once(number, self.get_pull_request, self._send_close)

    def _send_close(self, pr: f.PullRequest) -> f.PullRequest:
        data = self._call("PUT", f"/merge_requests/{pr.number}", f"close merge request !{pr.number}",
                          json={"state_event": "close"})
        return to_neutral(data)

    def comment_pull_request(self, number: int, body: str) -> None:
        self._call("POST", f"/merge_requests/{number}/notes", f"comment on merge request !{number}",
                   json={"body": body})

    def commit_url(self, sha: str) -> str:
        return f"{self.repo.web_scheme}://{self.repo.netloc}/{self.project_path}/-/commit/{sha}"


def to_neutral(data: dict[str, Any]) -> f.PullRequest:
    state = data.get("state")
    merged = state == "merged"
    merged_by = data.get("merge_user") or data.get("merged_by") or {}
    return f.PullRequest(
        number=int(data["iid"]),
        url=data.get("web_url") or "",
        open=state in ("opened", "locked"),
        merged=merged,
        # A squash merge leaves the squash commit on the target branch, a fast-forward the head itself.
        merge_commit=(data.get("merge_commit_sha") or data.get("squash_commit_sha") or data.get("sha"))
        if merged else None,
        head_sha=data.get("sha"),
        head_branch=data.get("source_branch") or "",
        base_branch=data.get("target_branch") or "",
        merged_by=merged_by.get("username") if merged else None,
        merged_at=data.get("merged_at") if merged else None,
    )


f.register("gitlab", f.host_contains("gitlab"), GitLabForge, token_user="oauth2")
