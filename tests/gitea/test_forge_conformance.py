"""Pull request conformance tests, run for every forge that can talk to a real Gitea.

The Gitea API forge and the plain-git forge (branches and record refs pushed
to the same Gitea over HTTP) must behave the same through the ``Forge`` protocol:
create, read, list, merge, close and comment.
"""

from __future__ import annotations

import pytest

from reliability_center.gitops.forges import (
    CreatePullRequestOptions,
    ForgeOptions,
    ListPullRequestsOptions,
    MergePullRequestOptions,
    new_forge,
)
from reliability_center.gitops.forges.git import GitForge
from reliability_center.gitops.workspace import Credentials

pytestmark = pytest.mark.gitea


@pytest.fixture(params=["gitea", "git"])
def forge(request, repo, cache):
    creds = Credentials(username=repo.gitea.user, token=repo.gitea.token)
    forge = new_forge(repo.url, request.param, creds, ForgeOptions(cache_dir=str(cache)))
    yield forge
    forge.close()


def test_pull_request_conformance(forge, repo):
    branch = "feature/conformance"
    head = repo.push({"apps/shop/extra.yaml": "a: 1\n"}, branch=branch, start="main")

    pr = forge.create_pull_request(CreatePullRequestOptions(head=branch, base="main", title="Conformance",
                                                            body="body"))
    assert pr.open and not pr.merged and pr.merge_commit is None
    assert (pr.head_sha, pr.head_branch, pr.base_branch) == (head, branch, "main")
    assert pr.number > 0 and pr.url

    got = forge.get_pull_request(pr.number)
    assert got is not None and (got.number, got.open, got.head_sha) == (pr.number, True, head)
    assert [p.number for p in forge.list_pull_requests(ListPullRequestsOptions(head_branch=branch))] == [pr.number]
    assert forge.list_pull_requests(ListPullRequestsOptions(state="closed", head_branch=branch)) == []

    merged = forge.merge_pull_request(pr.number, MergePullRequestOptions(expected_head=head))
    assert merged.merged and not merged.open
    assert merged.merge_commit == repo.head("main")
    assert repo.file("apps/shop/extra.yaml") == "a: 1\n"
    again = forge.get_pull_request(pr.number)
    assert again.merged and again.merge_commit == merged.merge_commit and again.merged_at
    assert forge.list_pull_requests(ListPullRequestsOptions(state="open", head_branch=branch)) == []
    assert [p.number for p in forge.list_pull_requests(ListPullRequestsOptions(state="all", head_branch=branch))] \
        == [pr.number]

    unchanged = forge.close_pull_request(pr.number)  # closing a merged pull request undoes nothing
    assert unchanged.merged and not unchanged.open and unchanged.merge_commit == merged.merge_commit

    assert merged.merge_commit in forge.commit_url(merged.merge_commit)
    assert forge.get_pull_request(987654) is None


def comments_on(forge, repo, number: int) -> list[str]:
    """What each forge keeps as comments: Gitea's issue comments, or the git forge's comment chain."""
    if isinstance(forge, GitForge):
        return forge.comments(number)
    response = repo.gitea.api("GET", f"{repo.path}/issues/{number}/comments")
    response.raise_for_status()
    return [comment["body"] for comment in response.json()]


def test_close_and_comment_conformance(forge, repo):
    branch = "feature/conformance-close"
    head = repo.push({"apps/shop/dropped.yaml": "b: 1\n"}, branch=branch, start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head=branch, base="main", title="To be closed"))

    forge.comment_pull_request(pr.number, "Superseded by a newer plan")
    forge.comment_pull_request(pr.number, "Closing:\n\n- gates failed")
    assert comments_on(forge, repo, pr.number) == ["Superseded by a newer plan", "Closing:\n\n- gates failed"]
    assert forge.get_pull_request(pr.number).open  # a comment changes nothing else

    closed = forge.close_pull_request(pr.number)
    assert closed.closed_unmerged and (closed.number, closed.head_sha, closed.head_branch) == (pr.number, head, branch)
    got = forge.get_pull_request(pr.number)
    assert got is not None and got.closed_unmerged and got.head_sha == head
    again = forge.close_pull_request(pr.number)  # idempotent
    assert (again.number, again.open, again.merged, again.head_sha) == (pr.number, False, False, head)
    assert forge.list_pull_requests(ListPullRequestsOptions(state="open", head_branch=branch)) == []
    assert [p.number for p in forge.list_pull_requests(ListPullRequestsOptions(state="closed", head_branch=branch))] \
        == [pr.number]
    assert repo.head(branch) == head  # closing keeps the branch
    on_main = repo.gitea.api("GET", f"{repo.path}/raw/apps/shop/dropped.yaml", params={"ref": "main"})
    assert on_main.status_code == 404  # and merges nothing
