"""GitLab forge against the documented REST API shapes (https://docs.gitlab.com/ee/api/merge_requests.html)."""

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
from tests.contract.fakes import Exchange, FakeGitLabTransport, recording

TOKEN = "glpat-0123456789abcdefABCD"
URL = "https://gitlab.example.com/platform/deploy/gitops.git"
PROJECT = "/api/v4/projects/platform%2Fdeploy%2Fgitops"  # nested groups: one URL-encoded id
BRANCH = "rc/shop-scale-web-01234567"
HEAD = "8" * 40
MERGE = "9" * 40


def forge_with(*script: Exchange, token: str = TOKEN):
    transport = FakeGitLabTransport(script=list(script), token=TOKEN)
    forge = new_forge(URL, None, Credentials(token=token), ForgeOptions(transport=transport))
    return forge, transport


def test_create_merge_request():
    forge, transport = forge_with(Exchange(
        "POST", f"{PROJECT}/merge_requests", status=201, response=recording("gitlab_merge_request.json"),
        body={"source_branch": BRANCH, "target_branch": "main", "title": "Scale web to 5", "description": "why",
              "remove_source_branch": False}))
    pr = forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="Scale web to 5",
                                                            body="why"))
    transport.done()
    assert (pr.number, pr.open, pr.merged, pr.head_sha) == (133, True, False, HEAD)
    assert pr.url == "https://gitlab.example.com/platform/deploy/gitops/-/merge_requests/133"
    assert (pr.head_branch, pr.base_branch) == (BRANCH, "main")


@pytest.mark.parametrize("changes, merge_commit", [
    ({"merge_commit_sha": MERGE}, MERGE),                # a merge commit
    ({"squash_commit_sha": "7" * 40, "squash": True}, "7" * 40),  # squashed
    ({}, HEAD),                                          # fast-forward: the head lands on the target
])
def test_get_merged_merge_request(changes, merge_commit):
    merged = recording("gitlab_merge_request.json", state="merged", merged_at="2030-01-07T13:00:00.000Z",
                       merge_user={"id": 2, "username": "alice"}, **changes)
    forge, transport = forge_with(Exchange("GET", f"{PROJECT}/merge_requests/133", response=merged))
    pr = forge.get_pull_request(133)
    transport.done()
    assert pr.merged and not pr.open
    assert (pr.merge_commit, pr.merged_by) == (merge_commit, "alice")


def test_closed_merge_request_is_closed_unmerged():
    closed = recording("gitlab_merge_request.json", state="closed")
    forge, _ = forge_with(Exchange("GET", f"{PROJECT}/merge_requests/133", response=closed))
    assert forge.get_pull_request(133).closed_unmerged


def test_list_by_source_and_target_branch():
    forge, transport = forge_with(Exchange("GET", f"{PROJECT}/merge_requests",
                                           response=[recording("gitlab_merge_request.json")],
                                           query={"state": "opened", "per_page": "100", "source_branch": BRANCH,
                                                  "target_branch": "main"}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(head_branch=BRANCH, base_branch="main"))
    transport.done()
    assert [p.number for p in prs] == [133]


def test_list_closed_includes_merged_ones():
    # GitLab's "closed" excludes merged merge requests; the neutral "closed" means both.
    merged = recording("gitlab_merge_request.json", state="merged", iid=134, merge_commit_sha=MERGE)
    forge, transport = forge_with(
        Exchange("GET", f"{PROJECT}/merge_requests", response=[],
                 query={"state": "closed", "per_page": "100", "source_branch": BRANCH}),
        Exchange("GET", f"{PROJECT}/merge_requests", response=[merged],
                 query={"state": "merged", "per_page": "100", "source_branch": BRANCH}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(state="closed", head_branch=BRANCH))
    transport.done()
    assert [(p.number, p.merged) for p in prs] == [(134, True)]


def test_merge_pins_the_reviewed_head():
    merged = recording("gitlab_merge_request.json", state="merged", merge_commit_sha=MERGE,
                       merge_user={"username": "rc-bot"}, merged_at="2030-01-07T13:00:00.000Z")
    forge, transport = forge_with(Exchange("PUT", f"{PROJECT}/merge_requests/133/merge", response=merged,
                                           body={"sha": HEAD, "should_remove_source_branch": False}))
    pr = forge.merge_pull_request(133, MergePullRequestOptions(expected_head=HEAD))
    transport.done()
    assert pr.merged and pr.merge_commit == MERGE


def test_merge_refused_when_the_head_moved_is_terminal():
    forge, _ = forge_with(Exchange("PUT", f"{PROJECT}/merge_requests/133/merge", status=409,
                                   response={"message": "SHA does not match HEAD of source branch"},
                                   body={"sha": HEAD}))
    with pytest.raises(ForgeError, match="HTTP 409.*SHA does not match") as err:
        forge.merge_pull_request(133, MergePullRequestOptions(expected_head=HEAD))
    assert err.value.status == 409


def test_wrong_token_is_refused_and_not_echoed():
    forge, _ = forge_with(Exchange("GET", f"{PROJECT}/merge_requests/1"), token="glpat-wrong-wrong")
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(1)
    assert err.value.status == 401 and not err.value.retryable and "glpat-wrong" not in str(err.value)


def test_commit_url():
    forge, _ = forge_with()
    assert forge.commit_url(MERGE) == f"https://gitlab.example.com/platform/deploy/gitops/-/commit/{MERGE}"


def test_the_fake_catches_an_unencoded_project_path():
    transport = FakeGitLabTransport(script=[Exchange("GET", f"{PROJECT}/merge_requests/1")], token=TOKEN)
    forge = new_forge(URL, None, Credentials(token=TOKEN),
                      ForgeOptions(transport=transport, api_url="https://gitlab.example.com/api/v4"))
    forge._base = "/projects/platform/deploy/gitops"  # what a naive client would send
    with pytest.raises(AssertionError, match="expected GET /api/v4/projects/platform%2Fdeploy%2Fgitops"):
        forge.get_pull_request(1)
