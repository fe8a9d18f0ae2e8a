"""The plain-git forge and the revert, on a real local repository."""

from __future__ import annotations

import pytest

from reliability_center.gitops.forges import (
    CreatePullRequestOptions,
    ForgeError,
    ForgeOptions,
    ListPullRequestsOptions,
    new_forge,
)
from reliability_center.gitops.forges.git import COMMENTS_PREFIX, RECORD_PREFIX, GitForge, branch_number
from reliability_center.gitops.revert import build_revert, mainline_args
from reliability_center.gitops.workspace import GitError, Workspace


@pytest.fixture
def forge(origin, tmp_path) -> GitForge:
    f = new_forge(origin.url, None, None, ForgeOptions(cache_dir=str(tmp_path / "cache")))
    assert isinstance(f, GitForge)  # file:// URLs are claimed by the git forge
    return f


def test_branch_number_is_deterministic():
    assert branch_number("rc/a") == branch_number("rc/a") != branch_number("rc/b")
    assert branch_number("rc/a") > 0


def test_pull_request_lifecycle_on_plain_git(origin, forge):
    origin.commit({"apps/web/deployment.yaml": "a: 2\n"}, "change", branch="topic", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="topic", base="main", title="t"))
    assert pr.open and not pr.merged and pr.number == branch_number("topic")
    assert pr.head_sha == origin.head("topic") and pr.head_branch == "topic" and pr.base_branch == "main"
    again = forge.create_pull_request(CreatePullRequestOptions(head="topic", base="main", title="t"))
    assert again == pr  # idempotent
    assert forge.list_pull_requests(ListPullRequestsOptions(head_branch="topic")) == [pr]

    merged = forge.merge_pull_request(pr.number)
    assert merged.merged and not merged.open
    assert merged.merge_commit == origin.head("main")
    assert merged.merged_at and merged.merged_by == "reliability-center"
    assert forge.list_pull_requests(ListPullRequestsOptions(state="open")) == []


def test_human_merges_are_detected_merge_squash_fastforward(origin, forge):
    origin.commit({"a.yaml": "a: 1\n"}, "a", branch="m", start="main")
    pr_m = forge.create_pull_request(CreatePullRequestOptions(head="m", base="main", title="m"))
    merge = origin.merge("m")
    got = forge.get_pull_request(pr_m.number)
    assert got.merged and got.merge_commit == merge

    origin.commit({"b.yaml": "b: 1\n"}, "b", branch="ff", start="main")
    pr_ff = forge.create_pull_request(CreatePullRequestOptions(head="ff", base="main", title="ff"))
    origin.merge("ff", ff=True)
    got = forge.get_pull_request(pr_ff.number)
    assert got.merged and got.merge_commit == pr_ff.head_sha  # fast-forward: the head itself


def test_deleted_unmerged_branch_reads_as_closed(origin, forge):
    origin.commit({"c.yaml": "c: 1\n"}, "c", branch="gone", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="gone", base="main", title="x"))
    origin.delete_branch("gone")
    got = forge.get_pull_request(pr.number)
    assert not got.open and not got.merged


def test_close_records_the_close_and_keeps_the_branch(origin, forge):
    head = origin.commit({"d.yaml": "d: 1\n"}, "d", branch="doomed", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="doomed", base="main", title="d"))
    closed = forge.close_pull_request(pr.number)
    assert closed.closed_unmerged
    assert (closed.number, closed.head_sha, closed.head_branch) == (pr.number, head, "doomed")
    assert forge.get_pull_request(pr.number) == closed
    assert origin.head("doomed") == head  # closing is not deleting: the work stays reviewable
    assert forge.list_pull_requests(ListPullRequestsOptions(state="open")) == []
    assert forge.list_pull_requests(ListPullRequestsOptions(state="closed", head_branch="doomed")) == [closed]


def test_close_is_idempotent(origin, forge):
    origin.commit({"e.yaml": "e: 1\n"}, "e", branch="twice", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="twice", base="main", title="e"))
    closed = forge.close_pull_request(pr.number)
    record = origin.ref(f"{RECORD_PREFIX}{pr.number}")
    assert forge.close_pull_request(pr.number) == closed
    assert origin.ref(f"{RECORD_PREFIX}{pr.number}") == record  # nothing written the second time


def test_closing_a_merged_pull_request_returns_it_unchanged(origin, forge):
    origin.commit({"f.yaml": "f: 1\n"}, "f", branch="landed", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="landed", base="main", title="f"))
    merge = origin.merge("landed")
    record = origin.ref(f"{RECORD_PREFIX}{pr.number}")
    got = forge.close_pull_request(pr.number)
    assert got.merged and got.merge_commit == merge and not got.open
    assert origin.ref(f"{RECORD_PREFIX}{pr.number}") == record


def test_a_closed_pull_request_stays_closed_when_its_branch_moves_or_goes(origin, forge):
    origin.commit({"g.yaml": "g: 1\n"}, "g", branch="moving", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="moving", base="main", title="g"))
    forge.close_pull_request(pr.number)
    moved = origin.commit({"g.yaml": "g: 2\n"}, "g again", branch="moving")
    assert forge.get_pull_request(pr.number).closed_unmerged
    origin.delete_branch("moving")
    gone = forge.get_pull_request(pr.number)
    assert gone.closed_unmerged and gone.head_sha != moved  # the head recorded at the close


def test_creating_again_reopens_a_closed_pull_request(origin, forge):
    origin.commit({"h.yaml": "h: 1\n"}, "h", branch="again", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="again", base="main", title="h"))
    forge.close_pull_request(pr.number)
    reopened = forge.create_pull_request(CreatePullRequestOptions(head="again", base="main", title="h"))
    assert reopened.open and reopened.number == pr.number  # the number is the branch's


def test_close_of_a_missing_pull_request_is_terminal(forge):
    with pytest.raises(ForgeError, match="not found") as err:
        forge.close_pull_request(12345)
    assert err.value.status == 404 and not err.value.retryable


def test_comments_are_kept_on_the_remote_in_order(origin, forge, tmp_path):
    origin.commit({"i.yaml": "i: 1\n"}, "i", branch="talk", start="main")
    pr = forge.create_pull_request(CreatePullRequestOptions(head="talk", base="main", title="i"))
    assert forge.comments(pr.number) == []
    forge.comment_pull_request(pr.number, "Superseded by plan shop-scale-web-2")
    forge.comment_pull_request(pr.number, "Closing:\n\n- gates failed\n- rollback done")
    assert origin.ref(f"{COMMENTS_PREFIX}{pr.number}") is not None
    elsewhere = GitForge(origin.url, None, ForgeOptions(cache_dir=str(tmp_path / "another-cache")))
    assert elsewhere.comments(pr.number) == ["Superseded by plan shop-scale-web-2",
                                             "Closing:\n\n- gates failed\n- rollback done"]
    assert forge.get_pull_request(pr.number).open  # a comment changes nothing else


def test_comment_on_a_missing_pull_request_is_terminal(origin, forge):
    with pytest.raises(ForgeError, match="not found") as err:
        forge.comment_pull_request(12345, "hello")
    assert err.value.status == 404 and not err.value.retryable
    assert origin.ref(f"{COMMENTS_PREFIX}12345") is None


def test_missing_branch_is_a_terminal_error(forge):
    with pytest.raises(ForgeError, match="branch 'nope' does not exist") as err:
        forge.create_pull_request(CreatePullRequestOptions(head="nope", base="main", title="x"))
    assert err.value.retryable is False


def test_mainline_args():
    assert mainline_args(1) == []
    assert mainline_args(2) == ["-m", "1"]
    with pytest.raises(GitError, match="octopus"):
        mainline_args(3)


@pytest.mark.parametrize("how", ["merge", "squash", "ff"])
def test_revert_restores_the_previous_content(origin, tmp_path, how):
    before = origin.show("main", "apps/web/deployment.yaml")
    origin.commit({"apps/web/deployment.yaml": before.replace("replicas: 3", "replicas: 9")}, "scale",
                  branch="scale", start="main")
    merged = origin.merge("scale", squash=how == "squash", ff=how == "ff")
    ws = Workspace(origin.url, tmp_path / "cache")
    built = build_revert(ws, "main", "scale-revert", merged, "revert scale\n", "@1893456000 +0000")
    parents = ws.parents(built.commit)
    assert parents == [merged]
    assert ws.read_file(built.commit, "apps/web/deployment.yaml") == before
    assert "-replicas: 9" not in built.diff and "+  replicas: 3" in built.diff
    assert len(ws.parents(merged)) == (2 if how == "merge" else 1)
    assert origin.head("scale-revert") is None  # built, not pushed


def test_revert_that_conflicts_says_so(origin, tmp_path):
    before = origin.show("main", "apps/web/deployment.yaml")
    origin.commit({"apps/web/deployment.yaml": before.replace("replicas: 3", "replicas: 9")}, "scale",
                  branch="scale", start="main")
    merged = origin.merge("scale")
    origin.commit({"apps/web/deployment.yaml": before.replace("replicas: 3", "replicas: 11")}, "again")
    ws = Workspace(origin.url, tmp_path / "cache")
    with pytest.raises(GitError, match="conflict") as err:
        build_revert(ws, "main", "scale-revert", merged, "revert\n", "@1893456000 +0000")
    assert err.value.conflict and not err.value.retryable
