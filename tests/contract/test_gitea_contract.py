"""Gitea forge against the documented API v1 shapes, for what the real-Gitea tests cannot force.

tests/gitea runs the same forge against a real server; a Fake is still needed for a
repository with more pull requests than one page, and for a Link header that names
another host (Gitea builds it from its configured ROOT_URL).
"""

from __future__ import annotations

import pytest

from reliability_center.gitops.forges import ListPullRequestsOptions
from tests.contract.conftest import forge_builder
from tests.contract.fakes import Exchange, FakeGiteaTransport, recording

TOKEN = "3f1d0c6e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
URL = "https://gitea.example.com/acme/gitops.git"
PULL = "/api/v1/repos/acme/gitops/pulls/7"


@pytest.fixture
def forge_with(scripted):
    """Builds a Gitea forge on a scripted Fake transport that lets in TOKEN only."""
    yield from forge_builder(scripted, FakeGiteaTransport, URL, TOKEN)


def test_close_reads_then_patches_the_state(forge_with):
    forge, _ = forge_with(
        Exchange("GET", PULL, response=recording("gitea_pull.json")),
        Exchange("PATCH", PULL, status=201, body={"state": "closed"},  # Gitea answers an edit with 201
                 response=recording("gitea_pull.json", state="closed", closed_at="2030-01-26T20:00:00Z")))
    pr = forge.close_pull_request(7)
    assert pr.closed_unmerged and pr.number == 7


def test_closing_a_closed_pull_request_sends_no_write(forge_with):
    forge, _ = forge_with(Exchange("GET", PULL, response=recording("gitea_pull.json", state="closed")))
    assert forge.close_pull_request(7).closed_unmerged


def test_comment_goes_to_the_issue_the_pull_request_is(forge_with):
    forge, _ = forge_with(Exchange("POST", "/api/v1/repos/acme/gitops/issues/7/comments", status=201,
                                   body={"body": "Superseded by a newer plan"},
                                   response=recording("gitea_comment.json")))
    assert forge.comment_pull_request(7, "Superseded by a newer plan") is None


def test_list_follows_the_next_link_even_when_root_url_names_another_host(forge_with):
    others = [recording("gitea_pull.json", number=n, head={"ref": f"other-{n}", "sha": "0" * 40}) for n in (1, 2)]
    next_link = '<https://git.corp.example/api/v1/repos/acme/gitops/pulls?limit=50&page=2&state=open>; rel="next"'
    forge, transport = forge_with(
        Exchange("GET", "/api/v1/repos/acme/gitops/pulls", response=others, query={"state": "open", "limit": "50"},
                 response_headers={"link": next_link, "x-total-count": "3"}),
        Exchange("GET", "/api/v1/repos/acme/gitops/pulls", response=[recording("gitea_pull.json")],
                 query={"state": "open", "limit": "50", "page": "2"}, response_headers={"x-total-count": "3"}))
    prs = forge.list_pull_requests(ListPullRequestsOptions(head_branch="rc/shop-scale-web-01234567"))
    assert [p.number for p in prs] == [7]
    assert {r.url.host for r in transport.seen} == {"gitea.example.com"}
