"""PatchPlans against a real Gitea and real git: propose, merge, reject, revert, refuse."""

from __future__ import annotations

import uuid

import pytest

from reliability_center.api.patchplan import PatchPlan
from reliability_center.gitops import reconcile as rc
from reliability_center.gitops.forges import ForgeOptions, new_forge
from reliability_center.gitops.paths import PathPolicy
from reliability_center.gitops.workspace import Credentials, Workspace
from tests.gitea.conftest import DEPLOYMENT, Repo

pytestmark = pytest.mark.gitea

#: The allow-list these plans need (the operator's default is the installed Runbooks' paths).
APPS = ("apps/**",)
SCALE = [{"path": "apps/shop/deployment.yaml", "operation": "setValue", "yamlPath": "spec.replicas", "value": 5}]


def make_plan(repo: Repo, changes=SCALE, name: str = "scale-web", **spec) -> PatchPlan:
    return PatchPlan.model_validate({
        "metadata": {"name": name, "namespace": "shop", "uid": uuid.uuid4().hex, "generation": 1,
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"repository": {"url": repo.url, "provider": "gitea", "credentialsSecret": "gitea"},
                 "title": f"PatchPlan {name}", "changes": changes, **spec},
    })


class RecordingLocks:
    """The file locks, as the operator's Leases would be held: who holds them now."""

    def __init__(self) -> None:
        self.held: list[str] = []

    def acquire(self, files: list[str]) -> str | None:
        self.held = list(files)
        return None

    def release(self) -> None:
        self.held = []


class Runtime:
    """A reconcile runtime the way the operator builds one per tick (forge closed after use)."""

    def __init__(self, repo: Repo, cache, policy: PathPolicy | None = None, token: str | None = None):
        self.repo, self.cache, self.policy = repo, cache, policy or PathPolicy(allow=APPS)
        self.creds = Credentials(username=repo.gitea.user, token=token or repo.gitea.token)
        self.locks = RecordingLocks()

    def step(self, plan: PatchPlan):
        forge = new_forge(plan.spec.repository.url, "gitea", self.creds, ForgeOptions(cache_dir=str(self.cache)))
        try:
            ws = Workspace(plan.spec.repository.url, self.cache, self.creds, token_user="oauth2")
            new = rc.step(plan, rc.Runtime(forge=forge, workspace=ws, policy=self.policy, locks=self.locks))
        finally:
            forge.close()
        if new is not None:
            plan.status = new
        return new


def test_open_pr_then_merge_via_the_api_is_detected_with_the_merge_commit(repo, cache):
    rt = Runtime(repo, cache)
    plan = make_plan(repo)
    proposed = rt.step(plan)
    assert proposed.phase == "Proposed", proposed.conditions
    pr = repo.pull(proposed.pull_request.number)
    assert pr["state"] == "open" and pr["head"]["ref"] == rc.branch_name(plan)
    assert pr["head"]["sha"] == proposed.pull_request.head
    assert "## Rollback" in pr["body"] and "replicas: 5" in pr["body"]
    content = repo.file("apps/shop/deployment.yaml", rc.branch_name(plan))
    assert content == DEPLOYMENT.replace("replicas: 3  # peak: 12", "replicas: 5  # peak: 12")  # one line only

    assert rt.step(plan) is None  # open: nothing to record

    merged_pr = repo.merge(proposed.pull_request.number)
    merged = rt.step(plan)
    assert merged.phase == "Merged"
    assert merged.pull_request.merge_commit == merged_pr["merge_commit_sha"] == repo.head("main")
    assert merged.pull_request.merged_by == repo.gitea.user


def test_closed_unmerged_is_rejected(repo, cache):
    rt = Runtime(repo, cache)
    plan = make_plan(repo)
    number = rt.step(plan).pull_request.number
    repo.close(number)
    rejected = rt.step(plan)
    assert rejected.phase == "Rejected"
    assert next(c for c in rejected.conditions if c.type == "Stalled").reason == "PullRequestClosed"
    assert repo.file("apps/shop/deployment.yaml") == DEPLOYMENT


@pytest.mark.parametrize("style", ["merge", "squash"])
def test_revert_pr_whose_merge_restores_the_previous_content(repo, cache, style):
    rt = Runtime(repo, cache)
    plan = make_plan(repo, changes=SCALE + [{"path": "apps/shop/flags.yaml", "operation": "mergePatch",
                                             "patch": {"data": {"invoicing": "off"}}}])
    before = {p: repo.file(p) for p in ("apps/shop/deployment.yaml", "apps/shop/flags.yaml")}
    number = rt.step(plan).pull_request.number
    repo.merge(number, style)
    assert rt.step(plan).phase == "Merged"
    assert rt.step(plan).phase == "Synced"  # no Argo CD here: merged is as far as it can see
    assert rt.step(plan).phase == "Verified"
    assert repo.file("apps/shop/flags.yaml") != before["apps/shop/flags.yaml"]

    plan.spec.rollback = True
    rolling = rt.step(plan)
    assert rolling.phase == "RollingBack"
    revert = repo.pull(rolling.revert.number)
    assert revert["head"]["ref"] == rc.branch_name(plan) + "-revert" and revert["state"] == "open"
    assert "reverts merge commit" in revert["body"]
    repo.merge(rolling.revert.number)
    assert rt.step(plan).phase == "RollingBack"  # revert merged; now its sync
    assert rt.step(plan).phase == "RolledBack"
    assert {p: repo.file(p) for p in before} == before


@pytest.mark.parametrize("change, words", [
    ({"path": "apps/shop/../../etc/passwd", "operation": "createFile", "content": "x\n"}, "'..' segment"),
    ({"path": "apps/billing/ledger.yaml", "operation": "setValue", "yamlPath": "entries", "value": [1]},
     "deny-list pattern 'apps/billing/**'"),
    ({"path": "apps/shop/.gitattributes", "operation": "createFile", "content": "* filter=x\n"},
     "deny-list pattern '**/.gitattributes'"),
])
def test_refused_paths_never_reach_the_remote(repo, cache, change, words):
    rt = Runtime(repo, cache, PathPolicy(allow=APPS, deny=PathPolicy().deny + ("apps/billing/**",)))
    plan = make_plan(repo, changes=[change])
    failed = rt.step(plan)
    assert failed.phase == "Failed"
    stalled = next(c for c in failed.conditions if c.type == "Stalled")
    assert stalled.reason == "PathRefused" and words in stalled.message
    assert repo.branches() == {"main"}
    assert repo.pulls() == []


def test_base_moved_under_the_file_rebuilds_and_the_merge_carries_both(repo, cache):
    rt = Runtime(repo, cache)
    plan = make_plan(repo)
    first = rt.step(plan)
    repo.push({"apps/shop/deployment.yaml": DEPLOYMENT.replace("nginx:1.25", "nginx:1.27")})
    rebuilt = rt.step(plan)
    assert rebuilt.conditions[0].reason == "BranchRefreshed"
    assert rebuilt.pull_request.head != first.pull_request.head
    assert repo.pull(first.pull_request.number)["head"]["sha"] == rebuilt.pull_request.head  # same PR, new head
    repo.merge(first.pull_request.number)
    assert rt.step(plan).phase == "Merged"
    content = repo.file("apps/shop/deployment.yaml")
    assert "nginx:1.27" in content and "replicas: 5  # peak: 12" in content


def test_a_wrong_token_fails_for_good_with_the_reason_releases_its_lock_and_leaks_nothing(repo, cache):
    bad = "0123456789abcdef0123456789abcdef01234567"
    plan = make_plan(repo)
    rt = Runtime(repo, cache, token=bad)
    new = rt.step(plan)
    stalled = next(c for c in new.conditions if c.type == "Stalled")
    assert new.phase == "Failed" and stalled.reason == "GitAuthFailed", new.conditions
    assert "refused the credentials (HTTP 401)" in stalled.message
    assert "terminal prompts disabled" not in stalled.message.split("(git said")[0]
    assert bad not in new.model_dump_json()
    assert rt.locks.held == [], "a failed plan holds no lock: later plans on its files go on"
    assert repo.branches() == {"main"}


def test_a_read_only_token_fails_for_good_as_forbidden(repo, cache):
    plan = make_plan(repo)
    rt = Runtime(repo, cache, token=repo.gitea.scoped_token("read:repository"))
    new = rt.step(plan)
    stalled = next(c for c in new.conditions if c.type == "Stalled")
    assert new.phase == "Failed" and stalled.reason == "GitForbidden", new.conditions
    assert rt.locks.held == [] and repo.branches() == {"main"}


def test_a_missing_repository_fails_for_good(repo, cache):
    gone = Repo(repo.gitea, f"gone-{uuid.uuid4().hex[:6]}")
    plan = make_plan(gone)
    rt = Runtime(repo, cache)
    new = rt.step(plan)
    stalled = next(c for c in new.conditions if c.type == "Stalled")
    assert new.phase == "Failed" and stalled.reason == "RepositoryNotFound", new.conditions
    assert rt.locks.held == []


def test_our_branch_is_deleted_once_its_pull_request_is_merged_or_closed(repo, cache):
    rt = Runtime(repo, cache)
    merged, closed = make_plan(repo, name="merged"), make_plan(repo, name="closed", changes=[
        {"path": "apps/shop/other.yaml", "operation": "createFile", "content": "a: 1\n"}])
    for plan in (merged, closed):
        rt.step(plan)
    assert repo.branches() == {"main", rc.branch_name(merged), rc.branch_name(closed)}
    repo.merge(merged.status.pull_request.number)
    repo.close(closed.status.pull_request.number)
    assert rt.step(merged).phase == "Merged" and rt.step(closed).phase == "Rejected"
    assert repo.branches() == {"main"}


def test_a_plan_that_fails_with_its_pull_request_open_closes_it_with_the_reason(repo, cache):
    rt = Runtime(repo, cache)
    plan = make_plan(repo)
    number = rt.step(plan).pull_request.number
    # The author changes the plan into one that cannot be built: the plan fails.
    plan.spec.changes[0].yaml_path = "spec.replicas.nope"
    plan.metadata.generation = 2
    failed = rt.step(plan)
    assert failed.phase == "Failed", failed.conditions
    pr = repo.pull(number)
    assert pr["state"] == "closed" and not pr["merged"]
    comments = repo.gitea.api("GET", f"{repo.path}/issues/{number}/comments").json()
    assert any("PatchPlan failed" in c["body"] for c in comments), comments
    assert repo.branches() == {"main"}


def test_a_human_edit_of_the_very_lines_the_plan_edits_is_reported_not_overwritten(repo, cache):
    rt = Runtime(repo, cache)
    plan = make_plan(repo)  # replicas: 3 → 5
    first = rt.step(plan)
    repo.push({"apps/shop/deployment.yaml": DEPLOYMENT.replace("replicas: 3  # peak: 12", "replicas: 8  # peak: 12")})
    conflict = rt.step(plan)
    ready = next(c for c in conflict.conditions if c.type == "Ready")
    assert conflict.phase == "Proposed" and ready.reason == "BaseConflict", conflict.conditions
    assert "apps/shop/deployment.yaml line" in ready.message and "plan author's decision" in ready.message
    pr = repo.pull(first.pull_request.number)
    assert pr["head"]["sha"] == first.pull_request.head  # not rebuilt over the human's 8
    comments = repo.gitea.api("GET", f"{repo.path}/issues/{first.pull_request.number}/comments").json()
    assert len([c for c in comments if "changed the lines this plan edits" in c["body"]]) == 1
    assert rt.step(plan) is None  # said once; the next poll changes nothing and comments nothing more
    assert len(repo.gitea.api("GET", f"{repo.path}/issues/{first.pull_request.number}/comments").json()) == 1
    # The author decides: a spec change rebuilds the pull request on the new base.
    plan.spec.changes[0].value = 9
    plan.metadata.generation = 2
    rebuilt = rt.step(plan)
    assert rebuilt.conditions[0].reason == "BranchRefreshed", rebuilt.conditions
    assert "replicas: 9" in repo.file("apps/shop/deployment.yaml", rc.branch_name(plan))
