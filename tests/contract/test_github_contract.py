"""GitHub forge against the documented REST API shapes (https://docs.github.com/rest/pulls/pulls).

Every test's script must be played to the end (the ``scripted`` fixture checks it),
so a request the client skips fails as surely as one it sends wrong.
"""

from __future__ import annotations

import email.utils

import pytest

from reliability_center.gitops.forges import (
    ETAGS,
    MAX_PAGES,
    CreatePullRequestOptions,
    ForgeError,
    ForgeOptions,
    ListPullRequestsOptions,
    MergePullRequestOptions,
    new_forge,
)
from reliability_center.gitops.workspace import Credentials
from tests.contract.conftest import forge_builder
from tests.contract.fakes import Exchange, FakeGitHubTransport, recording

TOKEN = "ghp_0123456789abcdefABCDEF0123456789abcd"
URL = "https://github.com/acme/gitops.git"
BRANCH = "rc/shop-scale-web-01234567"
MERGE = "e5bd3914e2e596debea16f433f57875b5b90bcd6"
HEAD = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
PULL = "/repos/acme/gitops/pulls/1347"
#: The forge's clock in its Date header: rate limit resets are measured against it.
NOW = 1895598000
DATE = email.utils.formatdate(NOW, usegmt=True)


@pytest.fixture
def forge_with(scripted):
    """Builds a GitHub forge on a scripted Fake transport; ``accepted`` is the token the Fake lets in."""
    yield from forge_builder(scripted, FakeGitHubTransport, URL, TOKEN)


def merged_pull(**changes):
    merged = {"state": "closed", "merged": True, "merged_at": "2030-01-26T20:00:00Z", "merged_by": {"login": "alice"}}
    return recording("github_pull.json", **{**merged, **changes})


def test_create_pull_request(forge_with):
    forge, _ = forge_with(Exchange(
        "POST", "/repos/acme/gitops/pulls", status=201, response=recording("github_pull.json"),
        body={"title": "Scale web to 5", "head": BRANCH, "base": "main", "body": "why"}))
    pr = forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="Scale web to 5",
                                                            body="why"))
    assert (pr.number, pr.url, pr.open, pr.merged) == (1347, "https://github.com/acme/gitops/pull/1347", True, False)
    assert pr.merge_commit is None  # GitHub fills merge_commit_sha with a test merge before the merge: ignored
    assert (pr.head_sha, pr.head_branch, pr.base_branch) == (HEAD, BRANCH, "main")


def test_get_merged_pull_request(forge_with):
    forge, _ = forge_with(Exchange("GET", PULL, response=merged_pull()))
    pr = forge.get_pull_request(1347)
    assert pr.merged and not pr.open and pr.closed_unmerged is False
    assert (pr.merge_commit, pr.merged_by, pr.merged_at) == (MERGE, "alice", "2030-01-26T20:00:00Z")


def test_get_closed_unmerged_pull_request(forge_with):
    closed = recording("github_pull.json", state="closed", closed_at="2030-01-26T20:00:00Z")
    forge, _ = forge_with(Exchange("GET", PULL, response=closed))
    assert forge.get_pull_request(1347).closed_unmerged


def test_get_missing_pull_request_is_none(forge_with):
    forge, _ = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/9", status=404,
                                   response={"message": "Not Found"}))
    assert forge.get_pull_request(9) is None


def test_list_filters_by_owner_qualified_head_and_base(forge_with):
    # The list endpoint has no "merged" field: merged_at says it.
    listed = recording("github_pull.json", state="closed", merged_at="2030-01-26T20:00:00Z")
    del listed["merged"]
    forge, _ = forge_with(Exchange("GET", "/repos/acme/gitops/pulls", response=[listed], query={
        "state": "all", "per_page": "100", "head": f"acme:{BRANCH}", "base": "main"}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(state="all", head_branch=BRANCH, base_branch="main"))
    assert len(prs) == 1 and prs[0].merged and prs[0].merge_commit == MERGE


def test_merge_pins_the_reviewed_head_then_reads_back(forge_with):
    forge, _ = forge_with(
        Exchange("PUT", f"{PULL}/merge", body={"merge_method": "merge", "sha": HEAD},
                 response={"sha": MERGE, "merged": True, "message": "Pull Request successfully merged"}),
        Exchange("GET", PULL, response=merged_pull(merged_by={"login": "rc-bot"})))
    pr = forge.merge_pull_request(1347, MergePullRequestOptions(expected_head=HEAD))
    assert pr.merged and pr.merge_commit == MERGE


# ---------------------------------------------------------------------------- close and comment


def test_close_reads_then_closes_an_open_pull_request(forge_with):
    closed = recording("github_pull.json", state="closed", closed_at="2030-01-26T20:00:00Z")
    forge, _ = forge_with(
        Exchange("GET", PULL, response=recording("github_pull.json")),
        Exchange("PATCH", PULL, body={"state": "closed"}, response=closed))
    pr = forge.close_pull_request(1347)
    assert pr.closed_unmerged and pr.number == 1347


@pytest.mark.parametrize("already", [
    recording("github_pull.json", state="closed", closed_at="2030-01-26T20:00:00Z"),
    merged_pull(),
], ids=["closed", "merged"])
def test_closing_a_closed_or_merged_pull_request_sends_no_write(forge_with, already):
    forge, _ = forge_with(Exchange("GET", PULL, response=already))  # a PATCH would be an unexpected request
    pr = forge.close_pull_request(1347)
    assert not pr.open and pr.merged == already["merged"]


def test_a_close_refused_because_a_reviewer_merged_meanwhile_returns_the_merge(forge_with):
    forge, _ = forge_with(
        Exchange("GET", PULL, response=recording("github_pull.json")),
        Exchange("PATCH", PULL, status=422, body={"state": "closed"},
                 response={"message": "Validation Failed", "errors": [{"code": "custom", "field": "state",
                                                                      "message": "state cannot be changed."}]}),
        Exchange("GET", PULL, response=merged_pull()))
    pr = forge.close_pull_request(1347)
    assert pr.merged and pr.merge_commit == MERGE


def test_close_of_a_missing_pull_request_is_terminal(forge_with):
    forge, _ = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/9", status=404, response={"message": "Not Found"}))
    with pytest.raises(ForgeError, match="#9 not found") as err:
        forge.close_pull_request(9)
    assert err.value.status == 404 and not err.value.retryable


def test_comment_goes_to_the_issue_the_pull_request_is(forge_with):
    forge, transport = forge_with(Exchange("POST", "/repos/acme/gitops/issues/1347/comments", status=201,
                                           body={"body": "Superseded by a newer plan"},
                                           response=recording("github_issue_comment.json")))
    assert forge.comment_pull_request(1347, "Superseded by a newer plan") is None


# ---------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize("status", [403, 429])
def test_primary_rate_limit_is_retryable_until_the_reset(forge_with, status):
    forge, _ = forge_with(Exchange("GET", PULL, status=status, response=recording("github_rate_limited.json"),
                                   response_headers={"date": DATE, "x-ratelimit-limit": "5000",
                                                     "x-ratelimit-remaining": "0", "x-ratelimit-used": "5000",
                                                     "x-ratelimit-reset": str(NOW + 42),
                                                     "x-ratelimit-resource": "core"}))
    with pytest.raises(ForgeError, match="rate limited; retry in 42s") as err:
        forge.get_pull_request(1347)
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (status, True, 42)


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_rate_limit_waits_what_retry_after_says(forge_with, status):
    forge, _ = forge_with(Exchange("POST", "/repos/acme/gitops/issues/1347/comments", status=status,
                                   body={"body": "x"}, response=recording("github_secondary_rate_limited.json"),
                                   response_headers={"date": DATE, "retry-after": "30",
                                                     "x-ratelimit-remaining": "4990",
                                                     "x-ratelimit-reset": str(NOW + 3000)}))
    with pytest.raises(ForgeError) as err:
        forge.comment_pull_request(1347, "x")
    assert err.value.retryable and err.value.retry_after == 30


def test_secondary_rate_limit_without_a_wait_waits_a_minute(forge_with):
    # GitHub's documented fallback: "Otherwise, wait for at least one minute before retrying."
    forge, _ = forge_with(Exchange("GET", PULL, status=403, response=recording("github_secondary_rate_limited.json"),
                                   response_headers={"date": DATE, "x-ratelimit-remaining": "4990",
                                                     "x-ratelimit-reset": str(NOW + 3000)}))
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(1347)
    assert err.value.retryable and err.value.retry_after == 60


def test_a_403_that_is_no_rate_limit_stays_final(forge_with):
    # GitHub sends its rate limit headers on every answer: with quota left, a 403 is a permission problem.
    forge, _ = forge_with(
        Exchange("GET", PULL, response=recording("github_pull.json")),
        Exchange("PATCH", PULL, status=403, body={"state": "closed"}, response=recording("github_forbidden.json"),
                 response_headers={"date": DATE, "x-ratelimit-remaining": "4999",
                                   "x-ratelimit-reset": str(NOW + 3000)}),
        Exchange("GET", PULL, response=recording("github_pull.json")))  # still open: the refusal stands
    with pytest.raises(ForgeError, match="HTTP 403 \\(the credentials lack permission\\)") as err:
        forge.close_pull_request(1347)
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (403, False, None)


# ---------------------------------------------------------------------------- paging


def page_link(page: int, last: int, host: str = "api.github.com") -> str:
    """GitHub's Link header names the repository by id, not by owner/name."""
    def url(n: int) -> str:
        return f"https://{host}/repositories/1296269/pulls?state=all&per_page=100&page={n}"
    links = [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"'] if page < last else []
    return ", ".join(links + [f'<{url(1)}>; rel="first"'])


def test_list_follows_the_next_link_to_find_ours(forge_with):
    others = [recording("github_pull.json", number=n, head={"ref": f"other-{n}", "sha": "0" * 40}) for n in (1, 2)]
    forge, _ = forge_with(
        Exchange("GET", "/repos/acme/gitops/pulls", response=others, query={"state": "all", "per_page": "100"},
                 response_headers={"link": page_link(1, 2)}),
        Exchange("GET", "/repositories/1296269/pulls", response=[recording("github_pull.json")],
                 query={"state": "all", "per_page": "100", "page": "2"},
                 response_headers={"link": page_link(2, 2)}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(state="all"))
    assert [p.number for p in prs] == [1, 2, 1347]


def test_a_next_link_to_another_host_is_fetched_from_the_api_host(forge_with):
    # The Fake only answers api.github.com: the token never travels to the host an answer names.
    forge, transport = forge_with(
        Exchange("GET", "/repos/acme/gitops/pulls", response=[], response_headers={
            "link": page_link(1, 2, host="collector.example.net")}),
        Exchange("GET", "/repositories/1296269/pulls", response=[recording("github_pull.json")]))
    assert [p.number for p in forge.list_pull_requests(ListPullRequestsOptions(state="all"))] == [1347]
    assert {r.url.host for r in transport.seen} == {"api.github.com"}


def test_paging_stops_at_the_bound(forge_with):
    endless = [Exchange("GET", "/repos/acme/gitops/pulls" if n == 1 else "/repositories/1296269/pulls",
                        response=[recording("github_pull.json", number=n)],
                        response_headers={"link": page_link(n, 1000)}) for n in range(1, MAX_PAGES + 1)]
    forge, _ = forge_with(*endless)  # a request for page MAX_PAGES + 1 would be unexpected
    assert len(forge.list_pull_requests(ListPullRequestsOptions(state="all"))) == MAX_PAGES


# ---------------------------------------------------------------------------- conditional GETs


def test_a_304_reuses_the_pull_request_cached_by_an_earlier_forge(forge_with):
    etag = '"a5f0c1e4b8d2"'
    first, _ = forge_with(Exchange("GET", PULL, response=recording("github_pull.json"),
                                   request_headers={"if-none-match": None}, response_headers={"etag": etag}))
    fetched = first.get_pull_request(1347)
    first.close()
    # The next poll builds a new forge object: the cache outlives it.
    second, _ = forge_with(Exchange("GET", PULL, status=304, request_headers={"if-none-match": etag},
                                    response_headers={"etag": etag}))
    assert second.get_pull_request(1347) == fetched
    assert all(TOKEN not in part for key in ETAGS.keys() for part in key)


def test_a_changed_pull_request_replaces_the_cached_copy(forge_with):
    forge, _ = forge_with(
        Exchange("GET", PULL, response=recording("github_pull.json"), response_headers={"etag": '"v1"'}),
        Exchange("GET", PULL, response=merged_pull(), request_headers={"if-none-match": '"v1"'},
                 response_headers={"etag": '"v2"'}),
        Exchange("GET", PULL, status=304, request_headers={"if-none-match": '"v2"'}))
    assert forge.get_pull_request(1347).open
    assert forge.get_pull_request(1347).merged
    assert forge.get_pull_request(1347).merged  # the 304 reuses the merged copy, not the first one


def test_other_credentials_never_revalidate_a_cached_answer(forge_with):
    other = "ghp_another_token_0123456789abcdef012345"
    mine, _ = forge_with(Exchange("GET", PULL, response=recording("github_pull.json"),
                                  response_headers={"etag": '"v1"'}))
    mine.get_pull_request(1347)
    theirs, _ = forge_with(Exchange("GET", PULL, response=recording("github_pull.json"),
                                    request_headers={"if-none-match": None}), token=other, accepted=other)
    assert theirs.get_pull_request(1347).number == 1347


# ---------------------------------------------------------------------------- errors and the Fake itself


def test_bad_token_is_terminal_and_never_echoed(forge_with):
    forge, _ = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1"), token="ghp_wrongwrongwrong")
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(1)
    assert err.value.status == 401 and not err.value.retryable and err.value.retry_after is None
    assert "bad or missing credentials" in str(err.value) and "ghp_wrong" not in str(err.value)


def test_existing_pull_request_validation_error_is_terminal(forge_with):
    forge, _ = forge_with(Exchange(
        "POST", "/repos/acme/gitops/pulls", status=422,
        response={"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom",
                                                              "message": "A pull request already exists"}]},
        body={"head": BRANCH, "base": "main"}))
    with pytest.raises(ForgeError, match="HTTP 422.*already exists") as err:
        forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="t"))
    assert not err.value.retryable


def test_server_errors_are_retryable(forge_with):
    forge, _ = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1", status=502,
                                   response={"message": "Bad Gateway"}))
    with pytest.raises(ForgeError) as err:
        forge.get_pull_request(1)
    assert err.value.retryable and err.value.retry_after is None


def test_commit_url(forge_with):
    forge, _ = forge_with()
    assert forge.commit_url(MERGE) == f"https://github.com/acme/gitops/commit/{MERGE}"


def test_the_fake_catches_requests_off_the_recorded_contract(forge_with):
    forge, _ = forge_with(Exchange("GET", "/repos/acme/gitops/pulls/1", response=recording("github_pull.json")))
    with pytest.raises(AssertionError, match="expected GET /repos/acme/gitops/pulls/1, got GET .*/pulls/2"):
        forge.get_pull_request(2)
    forge, _ = forge_with(Exchange("POST", "/repos/acme/gitops/pulls", body={"base": "release"}))
    with pytest.raises(AssertionError, match="body 'base' is 'main', expected 'release'"):
        forge.create_pull_request(CreatePullRequestOptions(head=BRANCH, base="main", title="t"))


def test_the_fake_fails_when_an_expected_request_never_came():
    transport = FakeGitHubTransport(script=[Exchange("GET", PULL, response=recording("github_pull.json")),
                                            Exchange("PATCH", PULL)], token=TOKEN)
    forge = new_forge(URL, None, Credentials(token=TOKEN), ForgeOptions(transport=transport))
    forge.get_pull_request(1347)
    forge.close()
    with pytest.raises(AssertionError, match=r"never came: \[\('PATCH', '/repos/acme/gitops/pulls/1347'\)\]"):
        transport.done()
