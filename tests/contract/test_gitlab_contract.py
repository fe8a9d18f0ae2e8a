"""GitLab forge against the documented REST API shapes (https://docs.gitlab.com/ee/api/merge_requests.html).

Every test's script must be played to the end (the ``scripted`` fixture checks it),
so a request the client skips fails as surely as one it sends wrong.
"""

from __future__ import annotations

import email.utils

import pytest

from reliability_center.gitops.forges import (
    ETAGS,
    CreatePullRequestOptions,
    ForgeError,
    ListPullRequestsOptions,
    MergePullRequestOptions,
)
from tests.contract.conftest import forge_builder
from tests.contract.fakes import Exchange, FakeGitLabTransport, recording

TOKEN = "glpat-0123456789abcdefABCD"
URL = "https://gitlab.example.com/platform/deploy/gitops.git"
PROJECT = "/api/v4/projects/platform%2Fdeploy%2Fgitops"  # nested groups: one URL-encoded id
BRANCH = "rc/shop-scale-web-01234567"
HEAD = "8" * 40
MERGE = "9" * 40
MR = f"{PROJECT}/merge_requests/133"
#: The forge's clock in its Date header: rate limit resets are measured against it.
NOW = 1893934800
DATE = email.utils.formatdate(NOW, usegmt=True)


@pytest.fixture
def forge_with(scripted):
    """Builds a GitLab forge on a scripted Fake transport that lets in TOKEN only."""
    yield from forge_builder(scripted, FakeGitLabTransport, URL, TOKEN)


def test_create_merge_request(forge_with):
    forge, _ = forge_with(Exchange(
        "POST", f"{PROJECT}/merge_requests", status=201, response=recording("gitlab_merge_request.json"),
        body={"source_branch": BRANCH, "target_branch": "main", "title": "Scale web to 5", "description": "why",
              "remove_source_branch": False}))
    pr = forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="Scale web to 5",
                                                            body="why"))
    assert (pr.number, pr.open, pr.merged, pr.head_sha) == (133, True, False, HEAD)
    assert pr.url == "https://gitlab.example.com/platform/deploy/gitops/-/merge_requests/133"
    assert (pr.head_branch, pr.base_branch) == (BRANCH, "main")


@pytest.mark.parametrize("changes, merge_commit", [
    ({"merge_commit_sha": MERGE}, MERGE),                # a merge commit
    ({"squash_commit_sha": "7" * 40, "squash": True}, "7" * 40),  # squashed
    ({}, HEAD),                                          # fast-forward: the head lands on the target
])
def test_get_merged_merge_request(forge_with, changes, merge_commit):
    merged = recording("gitlab_merge_request.json", state="merged", merged_at="2030-01-07T13:00:00.000Z",
                       merge_user={"id": 2, "username": "alice"}, **changes)
    forge, _ = forge_with(Exchange("GET", f"{PROJECT}/merge_requests/133", response=merged))
    pr = forge.get_pull_request(133)
    assert pr.merged and not pr.open
    assert (pr.merge_commit, pr.merged_by) == (merge_commit, "alice")


def test_closed_merge_request_is_closed_unmerged(forge_with):
    closed = recording("gitlab_merge_request.json", state="closed")
    forge, _ = forge_with(Exchange("GET", f"{PROJECT}/merge_requests/133", response=closed))
    assert forge.get_pull_request(133).closed_unmerged


def test_list_by_source_and_target_branch(forge_with):
    forge, _ = forge_with(Exchange("GET", f"{PROJECT}/merge_requests",
                                           response=[recording("gitlab_merge_request.json")],
                                           query={"state": "opened", "per_page": "100", "source_branch": BRANCH,
                                                  "target_branch": "main"}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(head_branch=BRANCH, base_branch="main"))
    assert [p.number for p in prs] == [133]


def test_list_closed_includes_merged_ones(forge_with):
    # GitLab's "closed" excludes merged merge requests; the neutral "closed" means both.
    merged = recording("gitlab_merge_request.json", state="merged", iid=134, merge_commit_sha=MERGE)
    forge, _ = forge_with(
        Exchange("GET", f"{PROJECT}/merge_requests", response=[],
                 query={"state": "closed", "per_page": "100", "source_branch": BRANCH}),
        Exchange("GET", f"{PROJECT}/merge_requests", response=[merged],
                 query={"state": "merged", "per_page": "100", "source_branch": BRANCH}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(state="closed", head_branch=BRANCH))
    assert [(p.number, p.merged) for p in prs] == [(134, True)]


def test_merge_pins_the_reviewed_head(forge_with):
    merged = recording("gitlab_merge_request.json", state="merged", merge_commit_sha=MERGE,
                       merge_user={"username": "rc-bot"}, merged_at="2030-01-07T13:00:00.000Z")
    forge, _ = forge_with(Exchange("PUT", f"{PROJECT}/merge_requests/133/merge", response=merged,
                                           body={"sha": HEAD, "should_remove_source_branch": False}))
    pr = forge.merge_pull_request(133, MergePullRequestOptions(expected_head=HEAD))
    assert pr.merged and pr.merge_commit == MERGE


def test_merge_refused_when_the_head_moved_is_terminal(forge_with):
    forge, _ = forge_with(Exchange("PUT", f"{PROJECT}/merge_requests/133/merge", status=409,
                                   response={"message": "SHA does not match HEAD of source branch"},
                                   body={"sha": HEAD}))
    with pytest.raises(ForgeError, match="HTTP 409.*SHA does not match") as err:
        forge.merge_pull_request(133, MergePullRequestOptions(expected_head=HEAD))
    assert err.value.status == 409


# ---------------------------------------------------------------------------- close and comment


def test_close_reads_then_closes_an_open_merge_request(forge_with):
    forge, _ = forge_with(
        Exchange("GET", MR, response=recording("gitlab_merge_request.json")),
        Exchange("PUT", MR, body={"state_event": "close"},
                 response=recording("gitlab_merge_request.json", state="closed", closed_at="2030-01-07T13:30:00Z")))
    pr = forge.close_pull_request(133)
    assert pr.closed_unmerged and pr.number == 133


def test_closing_a_merged_merge_request_returns_it_unchanged(forge_with):
    merged = recording("gitlab_merge_request.json", state="merged", merge_commit_sha=MERGE)
    forge, _ = forge_with(Exchange("GET", MR, response=merged))  # a PUT would be an unexpected request
    pr = forge.close_pull_request(133)
    assert pr.merged and pr.merge_commit == MERGE


def test_comment_is_a_note_on_the_merge_request(forge_with):
    forge, _ = forge_with(Exchange("POST", f"{MR}/notes", status=201, body={"body": "Superseded by a newer plan"},
                                   response=recording("gitlab_note.json")))
    assert forge.comment_pull_request(133, "Superseded by a newer plan") is None


# ---------------------------------------------------------------------------- rate limits


def test_429_waits_what_retry_after_says(forge_with):
    forge, _ = forge_with(Exchange("GET", MR, status=429, response={"message": "Retry later"},
                                   response_headers={"date": DATE, "retry-after": "17", "ratelimit-limit": "600",
                                                     "ratelimit-remaining": "0", "ratelimit-reset": str(NOW + 60)}))
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(133)
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (429, True, 17)


def test_429_without_retry_after_waits_until_the_reset(forge_with):
    # Some GitLab limiters send only RateLimit-Reset, and a "remaining" of another limit.
    forge, _ = forge_with(Exchange("GET", MR, status=429,
                                   response={"message": {"error": "This endpoint has been requested too many times."}},
                                   response_headers={"date": DATE, "ratelimit-remaining": "595",
                                                     "ratelimit-reset": str(NOW + 25)}))
    with pytest.raises(ForgeError, match="rate limited; retry in 25s") as err:
        forge.get_pull_request(133)
    assert err.value.retryable and err.value.retry_after == 25


def test_a_403_that_is_no_rate_limit_stays_final(forge_with):
    forge, _ = forge_with(Exchange("POST", f"{MR}/notes", status=403, body={"body": "x"},
                                   response={"message": "403 Forbidden"},
                                   response_headers={"date": DATE, "ratelimit-remaining": "599",
                                                     "ratelimit-reset": str(NOW + 60)}))
    with pytest.raises(ForgeError) as err:
        forge.comment_pull_request(133, "x")
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (403, False, None)


# ---------------------------------------------------------------------------- paging


def test_list_follows_the_next_link_across_pages(forge_with):
    other = recording("gitlab_merge_request.json", iid=7, source_branch="other")
    # GitLab's Link names the project by numeric id and repeats every query parameter.
    next_link = ("<https://gitlab.example.com/api/v4/projects/15513260/merge_requests?id=15513260&page=2"
                 '&per_page=100&state=opened>; rel="next"')
    forge, _ = forge_with(
        Exchange("GET", f"{PROJECT}/merge_requests", response=[other], query={"state": "opened", "per_page": "100"},
                 response_headers={"link": next_link, "x-page": "1", "x-next-page": "2", "x-total-pages": "2"}),
        Exchange("GET", "/api/v4/projects/15513260/merge_requests", response=[recording("gitlab_merge_request.json")],
                 query={"id": "15513260", "page": "2", "per_page": "100", "state": "opened"},
                 response_headers={"x-page": "2", "x-next-page": "", "x-total-pages": "2"}))
    assert [p.number for p in forge.list_pull_requests(ListPullRequestsOptions())] == [7, 133]


def test_list_follows_x_next_page_when_there_is_no_link(forge_with):
    forge, _ = forge_with(
        Exchange("GET", f"{PROJECT}/merge_requests", response=[], query={"state": "all", "per_page": "100"},
                 response_headers={"x-next-page": "2"}),
        Exchange("GET", f"{PROJECT}/merge_requests", response=[recording("gitlab_merge_request.json")],
                 query={"state": "all", "per_page": "100", "page": "2"}, response_headers={"x-next-page": ""}))
    assert [p.number for p in forge.list_pull_requests(ListPullRequestsOptions(state="all"))] == [133]


# ---------------------------------------------------------------------------- conditional GETs


def test_a_304_reuses_the_merge_request_cached_by_an_earlier_forge(forge_with):
    etag = 'W/"6c1b0cf3a6b5e0e2"'  # GitLab's API answers carry weak ETags
    first, _ = forge_with(Exchange("GET", MR, response=recording("gitlab_merge_request.json"),
                                   request_headers={"if-none-match": None}, response_headers={"etag": etag}))
    fetched = first.get_pull_request(133)
    second, _ = forge_with(Exchange("GET", MR, status=304, request_headers={"if-none-match": etag}))
    assert second.get_pull_request(133) == fetched
    assert all(TOKEN not in part for key in ETAGS.keys() for part in key)


def test_wrong_token_is_refused_and_not_echoed(forge_with):
    forge, _ = forge_with(Exchange("GET", f"{PROJECT}/merge_requests/1"), token="glpat-wrong-wrong")
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(1)
    assert err.value.status == 401 and not err.value.retryable and "glpat-wrong" not in str(err.value)


def test_commit_url(forge_with):
    forge, _ = forge_with()
    assert forge.commit_url(MERGE) == f"https://gitlab.example.com/platform/deploy/gitops/-/commit/{MERGE}"


def test_the_fake_catches_an_unencoded_project_path(forge_with):
    forge, _ = forge_with(Exchange("GET", f"{PROJECT}/merge_requests/1"), api_url="https://gitlab.example.com/api/v4")
    forge._base = "/projects/platform/deploy/gitops"  # what a naive client would send
    with pytest.raises(AssertionError, match="expected GET /api/v4/projects/platform%2Fdeploy%2Fgitops"):
        forge.get_pull_request(1)
