"""GitHub forge against the documented REST API shapes (https://docs.github.com/rest/pulls/pulls)."""

from __future__ import annotations

import pytest

from reliability_center.gitops.forges import (
    CreatePullRequestOptions,
    ForgeError,
    ForgeOptions,
    ListPullRequestsOptions,
    MergePullRequestOptions,
    new_forge,
)
from reliability_center.gitops.workspace import Credentials
from tests.contract.fakes import Exchange, FakeGitHubTransport, recording

TOKEN = "ghp_0123456789abcdefABCDEF0123456789abcd"
URL = "https://github.com/acme/gitops.git"
BRANCH = "rc/shop-scale-web-01234567"
MERGE = "e5bd3914e2e596debea16f433f57875b5b90bcd6"
HEAD = "6dcb09b5b57875f334f61aebed695e2e4193db5e"


def forge_with(*script: Exchange, token: str = TOKEN):
    transport = FakeGitHubTransport(script=list(script), token=TOKEN)
    forge = new_forge(URL, None, Credentials(token=token), ForgeOptions(transport=transport))
    return forge, transport


def test_create_pull_request():
    forge, transport = forge_with(Exchange(
        "POST", "/repos/acme/gitops/pulls", status=201, response=recording("github_pull.json"),
        body={"title": "Scale web to 5", "head": BRANCH, "base": "main", "body": "why"}))
    pr = forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="Scale web to 5",
                                                            body="why"))
    transport.done()
    assert (pr.number, pr.url, pr.open, pr.merged) == (1347, "https://github.com/acme/gitops/pull/1347", True, False)
    assert pr.merge_commit is None  # GitHub fills merge_commit_sha with a test merge before the merge: ignored
    assert (pr.head_sha, pr.head_branch, pr.base_branch) == (HEAD, BRANCH, "main")


def test_get_merged_pull_request():
    merged = recording("github_pull.json", state="closed", merged=True, merged_at="2030-01-26T20:00:00Z",
                       merged_by={"login": "alice"})
    forge, transport = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1347", response=merged))
    pr = forge.get_pull_request(1347)
    transport.done()
    assert pr.merged and not pr.open and pr.closed_unmerged is False
    assert (pr.merge_commit, pr.merged_by, pr.merged_at) == (MERGE, "alice", "2030-01-26T20:00:00Z")


def test_get_closed_unmerged_pull_request():
    closed = recording("github_pull.json", state="closed", closed_at="2030-01-26T20:00:00Z")
    forge, transport = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1347", response=closed))
    assert forge.get_pull_request(1347).closed_unmerged


def test_get_missing_pull_request_is_none():
    forge, transport = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/9", status=404,
                                           response={"message": "Not Found"}))
    assert forge.get_pull_request(9) is None


def test_list_filters_by_owner_qualified_head_and_base():
    # The list endpoint has no "merged" field: merged_at says it.
    listed = recording("github_pull.json", state="closed", merged_at="2030-01-26T20:00:00Z")
    del listed["merged"]
    forge, transport = forge_with(Exchange("GET", "/repos/acme/gitops/pulls", response=[listed], query={
        "state": "all", "per_page": "100", "head": f"acme:{BRANCH}", "base": "main"}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(state="all", head_branch=BRANCH, base_branch="main"))
    transport.done()
    assert len(prs) == 1 and prs[0].merged and prs[0].merge_commit == MERGE


def test_merge_pins_the_reviewed_head_then_reads_back():
    merged = recording("github_pull.json", state="closed", merged=True, merged_at="2030-01-26T20:00:00Z",
                       merged_by={"login": "rc-bot"})
    forge, transport = forge_with(
        Exchange("PUT", "/repos/acme/gitops/pulls/1347/merge", body={"merge_method": "merge", "sha": HEAD},
                 response={"sha": MERGE, "merged": True, "message": "Pull Request successfully merged"}),
        Exchange("GET", "/repos/acme/gitops/pulls/1347", response=merged))
    pr = forge.merge_pull_request(1347, MergePullRequestOptions(expected_head=HEAD))
    transport.done()
    assert pr.merged and pr.merge_commit == MERGE


def test_bad_token_is_terminal_and_never_echoed():
    forge, transport = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1"), token="ghp_wrongwrongwrong")
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(1)
    assert err.value.status == 401 and not err.value.retryable
    assert "bad or missing credentials" in str(err.value) and "ghp_wrong" not in str(err.value)


def test_existing_pull_request_validation_error_is_terminal():
    forge, transport = forge_with(Exchange(
        "POST", "/repos/acme/gitops/pulls", status=422,
        response={"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom",
                                                              "message": "A pull request already exists"}]},
        body={"head": BRANCH, "base": "main"}))
    with pytest.raises(ForgeError, match="HTTP 422.*already exists") as err:
        forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="t"))
    assert not err.value.retryable


def test_server_errors_are_retryable():
    forge, transport = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1", status=502,
                                           response={"message": "Bad Gateway"}))
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(1)
    assert err.value.retryable


def test_commit_url():
    forge, _ = forge_with()
    assert forge.commit_url(MERGE) == f"https://github.com/acme/gitops/commit/{MERGE}"


def test_the_fake_catches_requests_off_the_recorded_contract():
    forge, _ = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1", response=recording("github_pull.json")))
    with pytest.raises(AssertionError, match="expected GET /repos/acme/gitops/pulls/1, got GET .*/pulls/2"):
        forge.get_pull_request(2)
    forge, _ = forge_with(Exchange("POST", "/repos/acme/gitops/pulls", body={"base": "release"}))
    with pytest.raises(AssertionError, match="body 'base' is 'main', expected 'release'"):
        forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="t"))
