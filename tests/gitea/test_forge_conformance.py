"""One pull request conformance test, run for every forge that can talk to a real Gitea.

The Gitea API forge and the plain-git forge (branches and record refs pushed
to the same Gitea over HTTP) must behave the same through the ``Forge`` protocol.
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

    assert merged.merge_commit in forge.commit_url(merged.merge_commit)
    assert forge.get_pull_request(987654) is None
