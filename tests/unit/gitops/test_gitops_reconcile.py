"""The reconcile step against real git (a local bare repo) and the FakeForge standing in for reviewers."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from reliability_center.api.patchplan import PatchPlan
from reliability_center.gitops import reconcile as rc
from reliability_center.gitops.forges.fake import FakeForge
from reliability_center.gitops.paths import PathPolicy
from reliability_center.gitops.workspace import Workspace

#: The allow-list these plans need: the operator's default (runbook_allow) knows nothing of apps/web.
APPS = ("apps/**",)


def runtime(**parts) -> rc.Runtime:
    return rc.Runtime(**{"policy": PathPolicy(allow=APPS), **parts})


def make_plan(origin, changes=None, uid="0123456789abcdef", **spec) -> PatchPlan:
    return PatchPlan.model_validate({
        "metadata": {"name": "scale-web", "namespace": "shop", "uid": uid, "generation": 1,
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"repository": {"url": origin.url}, "title": "Scale web to 5",
                 "changes": changes or [{"path": "apps/web/deployment.yaml", "operation": "setValue",
                                         "yamlPath": "spec.replicas", "value": 5}], **spec},
    })


class Locks:
    def __init__(self, holder=None):
        self.holder, self.acquired, self.released = holder, [], 0

    def acquire(self, files):
        self.acquired.append(list(files))
        return self.holder

    def release(self):
        self.released += 1


@pytest.fixture
def env(origin, tmp_path):
    ws = Workspace(origin.url, tmp_path / "cache")
    forge = FakeForge(origin.url, head_of=lambda b: origin.head(b))
    return origin, ws, forge


def advance(plan, rt):
    new = rc.step(plan, rt)
    if new is not None:
        plan.status = new
    return new


def test_branch_name_is_deterministic_and_a_valid_ref(origin):
    plan = make_plan(origin)
    assert rc.branch_name(plan) == "rc/shop-scale-web-01234567"
    assert rc.branch_name(make_plan(origin)) == rc.branch_name(plan)
    assert rc.branch_name(make_plan(origin, uid="ffff0000")) != rc.branch_name(plan)


def test_full_lifecycle_with_merge_commit_and_revert(env):
    origin, ws, forge = env
    plan = make_plan(origin)
    locks = Locks()
    rt = runtime(forge=forge, workspace=ws, locks=locks)

    new = advance(plan, rt)
    assert new.phase == "Proposed" and new.pull_request.number == 1
    branch = "rc/shop-scale-web-01234567"
    assert origin.head(branch) == new.pull_request.head
    assert "replicas: 5  # peak: 12" in origin.show(branch, "apps/web/deployment.yaml")
    assert locks.acquired == [["apps/web/deployment.yaml"]] and locks.released == 0
    opened = forge.calls[-1][1]
    assert opened.head == branch and opened.base == "main" and "```diff" in opened.body

    assert advance(plan, rt) is None  # still open: no status change

    merge = origin.merge(branch)
    forge.merge(1, merge_commit=merge)
    assert advance(plan, rt).phase == "Merged"
    assert plan.status.pull_request.merge_commit == merge
    assert advance(plan, rt).phase == "Synced"  # no Argo CD and no cluster: merged is all we can see
    assert locks.released >= 1
    verified = advance(plan, rt)
    assert verified.phase == "Verified" and verified.evidence["revertCheck"]["clean"] is True
    assert origin.head(branch + "-revert") is None  # the check pushed nothing

    plan.spec.rollback = True
    rolling = advance(plan, rt)
    assert rolling.phase == "RollingBack" and rolling.revert.branch == branch + "-revert"
    revert_head = origin.head(branch + "-revert")
    assert "replicas: 3  # peak: 12" in origin.show(revert_head, "apps/web/deployment.yaml")
    revert_merge = origin.merge(branch + "-revert")
    forge.merge(rolling.revert.number, merge_commit=revert_merge)
    merged = advance(plan, rt)
    assert merged.phase == "RollingBack" and merged.revert.merge_commit == revert_merge
    assert advance(plan, rt).phase == "RolledBack"
    assert origin.show("main", "apps/web/deployment.yaml") == origin.show(new.pull_request.base,
                                                                          "apps/web/deployment.yaml")


def test_a_revert_of_an_added_manifest_is_rolled_back_only_once_the_object_is_gone(env):
    """The revert deletes the file the plan added: RolledBack needs the object gone from the cluster,
    not just 'no manifest left to compare' (``live`` is what a cluster read would return)."""
    origin, ws, forge = env
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: limits\n  namespace: shop\ndata:\n  a: '1'\n"
    plan = make_plan(origin, changes=[{"path": "apps/web/limits.yaml", "operation": "createFile", "content": manifest}])
    live = {"v1/ConfigMap/shop/limits": None}
    rt = runtime(forge=forge, workspace=ws, read_objects=lambda docs: dict(live))
    branch = advance(plan, rt).pull_request.branch
    forge.merge(1, merge_commit=origin.merge(branch))
    assert advance(plan, rt).phase == "Merged"
    assert advance(plan, rt).conditions[0].reason == "ObjectMissing"  # not synced until it is live
    live["v1/ConfigMap/shop/limits"] = {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "limits", "namespace": "shop"}, "data": {"a": "1"}}
    assert advance(plan, rt).phase == "Synced"
    plan.spec.rollback = True
    rolling = advance(plan, rt)
    with pytest.raises(subprocess.CalledProcessError):  # the revert deletes the file
        origin.show(origin.head(rolling.revert.branch), "apps/web/limits.yaml")
    forge.merge(rolling.revert.number, merge_commit=origin.merge(rolling.revert.branch))
    advance(plan, rt)
    waiting = advance(plan, rt)
    assert waiting.phase == "RollingBack" and waiting.conditions[0].reason == "ObjectNotPruned", waiting.conditions
    live["v1/ConfigMap/shop/limits"] = None
    assert advance(plan, rt).phase == "RolledBack"


def test_a_manifest_that_names_no_namespace_is_looked_for_in_the_plans_namespace(env):
    """A GitOps repository's manifests often leave the namespace to Argo CD's destination (or kubectl -n):
    the sync is observed in the plan's namespace, not as an object that can never be found."""
    origin, ws, forge = env
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: limits\ndata:\n  a: '1'\n"
    plan = make_plan(origin, changes=[{"path": "apps/web/limits.yaml", "operation": "createFile", "content": manifest}])
    asked: list[list[str]] = []

    def read_objects(docs):
        asked.append([d["metadata"].get("namespace") for d in docs])
        return {"v1/ConfigMap/shop/limits": {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": "limits", "namespace": "shop"}, "data": {"a": "1"}}}

    rt = runtime(forge=forge, workspace=ws, read_objects=read_objects)
    branch = advance(plan, rt).pull_request.branch
    forge.merge(1, merge_commit=origin.merge(branch))
    assert advance(plan, rt).phase == "Merged"
    assert advance(plan, rt).phase == "Synced"
    assert asked[-1] == ["shop"]


def test_a_merge_between_the_pr_read_and_the_base_read_is_seen_as_the_merge(env):
    """The pass reads the PR (open), then the base (which now holds the merge): the plan goes Merged,
    never through a BaseConflict with its own merge (and a comment saying so on the PR)."""
    origin, ws, forge = env
    plan = make_plan(origin)
    rt = runtime(forge=forge, workspace=ws)
    number = advance(plan, rt).pull_request.number
    read_while_open = forge.get_pull_request(number)
    forge.merge(number, merge_commit=origin.merge(plan.status.pull_request.branch))
    new = rc._keep_fresh(plan, plan.status, rt, read_while_open)
    assert new.phase == "Merged", new
    assert not [call for call in forge.calls if call[0] == "comment"], forge.calls


class StraddlingForge(FakeForge):
    """A forge whose next read of a merged pull request straddles the merge: closed, not yet merged
    (Gitea loads a pull request's row and its issue's in two queries)."""

    straddle_next = False

    def get_pull_request(self, number):
        pr = super().get_pull_request(number)
        if self.straddle_next and pr is not None and pr.merged:
            self.straddle_next = False
            return dataclasses.replace(pr, merged=False, merge_commit=None, merged_by=None, merged_at=None)
        return pr


def test_a_read_that_straddles_the_merge_never_ends_the_plan_rejected(origin, tmp_path):
    ws = Workspace(origin.url, tmp_path / "cache")
    forge = StraddlingForge(origin.url, head_of=lambda b: origin.head(b))
    plan = make_plan(origin)
    rt = runtime(forge=forge, workspace=ws)
    number = advance(plan, rt).pull_request.number
    forge.merge(number, merge_commit=origin.merge(plan.status.pull_request.branch))
    forge.straddle_next = True
    assert advance(plan, rt).phase == "Merged"
    assert advance(plan, rt).phase == "Synced"
    advance(plan, rt)  # Verified
    plan.spec.rollback = True
    revert = advance(plan, rt).revert
    forge.merge(revert.number, merge_commit=origin.merge(revert.branch))
    forge.straddle_next = True
    merged = advance(plan, rt)
    assert merged.phase == "RollingBack" and merged.revert.merge_commit, merged.conditions


def test_closed_unmerged_is_rejected_and_releases_locks(env):
    origin, ws, forge = env
    plan = make_plan(origin)
    locks = Locks()
    rt = runtime(forge=forge, workspace=ws, locks=locks)
    advance(plan, rt)
    forge.close_unmerged(1)
    assert advance(plan, rt).phase == "Rejected"
    assert locks.released == 1
    assert rc.step(plan, rt) is None  # terminal


def test_retry_after_crash_adopts_instead_of_opening_a_second_pr(env):
    origin, ws, forge = env
    plan = make_plan(origin)
    rt = runtime(forge=forge, workspace=ws)
    first = rc.step(plan, rt)  # status NOT saved: the operator "crashed" before its patch
    second = rc.step(plan, rt)
    assert first.pull_request.number == second.pull_request.number == 1
    assert second.conditions[0].reason == "PullRequestAdopted"
    assert [c for c, _ in forge.calls].count("create") == 1
    assert first.pull_request.head == second.pull_request.head  # same commit: deterministic


def test_blocked_by_another_plans_lock(env):
    origin, ws, forge = env
    plan = make_plan(origin)
    new = rc.step(plan, runtime(forge=forge, workspace=ws, locks=Locks(holder="shop/other/uid")))
    assert new.phase == "Pending"
    ready = next(c for c in new.conditions if c.type == "Ready")
    assert ready.reason == "WaitingForLock" and "shop/other/uid" in ready.message
    assert origin.branches() == ["main"]


@pytest.mark.parametrize("change, reason, words", [
    ({"path": "apps/link.yaml", "operation": "setValue", "yamlPath": "a", "value": 1}, "PathRefused",
     "apps/link.yaml is a symlink to '/etc/passwd', which resolves outside the repository"),
    ({"path": "apps/billing/ledger.yaml", "operation": "createFile", "content": "x: 1\n"}, "PathRefused",
     "deny-list"),
    ({"path": "apps/web/deployment.yaml", "operation": "setValue", "yamlPath": "spec.replicas.x", "value": 1},
     "EditFailed", "spec.replicas is not a mapping"),
])
def test_refusals_happen_before_any_push(env, change, reason, words):
    origin, ws, forge = env
    plan = make_plan(origin, changes=[change])
    rt = runtime(forge=forge, workspace=ws, policy=PathPolicy(allow=APPS, deny=PathPolicy().deny + ("apps/billing/**",)))
    new = rc.step(plan, rt)
    assert new.phase == "Failed"
    stalled = next(c for c in new.conditions if c.type == "Stalled")
    assert stalled.status == "True" and stalled.reason == reason and words in stalled.message
    assert origin.branches() == ["main"] and forge.calls == []


def test_oversized_diff_is_refused_before_any_push(env):
    origin, ws, forge = env
    big = "".join(f"line{i}: {i}\n" for i in range(50))
    plan = make_plan(origin, changes=[{"path": "apps/big.yaml", "operation": "createFile", "content": big}])
    new = rc.step(plan, runtime(forge=forge, workspace=ws, policy=PathPolicy(allow=APPS, max_diff_lines=20)))
    assert new.phase == "Failed" and "the diff changes 50 lines" in new.conditions[0].message
    assert origin.branches() == ["main"]


def test_no_change_fails_clearly(env):
    origin, ws, forge = env
    plan = make_plan(origin, changes=[{"path": "apps/web/deployment.yaml", "operation": "setValue",
                                       "yamlPath": "spec.replicas", "value": 3}])
    new = rc.step(plan, runtime(forge=forge, workspace=ws))
    assert new.phase == "Failed" and new.conditions[0].reason == "NoChange"


def test_base_moving_under_our_file_rebuilds_the_branch(env):
    origin, ws, forge = env
    plan = make_plan(origin)
    rt = runtime(forge=forge, workspace=ws)
    first = advance(plan, rt)
    unrelated = origin.commit({"README.md": "hello\n"})
    kept = advance(plan, rt)
    assert kept.pull_request.head == first.pull_request.head  # untouched file: the PR is left alone
    assert kept.pull_request.base == unrelated
    moved = origin.commit({"apps/web/deployment.yaml": origin.show("main", "apps/web/deployment.yaml")
                           .replace("nginx:1.25", "nginx:1.27")})
    rebuilt = advance(plan, rt)
    assert rebuilt.pull_request.base == moved and rebuilt.pull_request.head != first.pull_request.head
    content = origin.show("rc/shop-scale-web-01234567", "apps/web/deployment.yaml")
    assert "nginx:1.27" in content and "replicas: 5" in content


def test_someone_elses_commit_on_the_branch_is_never_overwritten(env):
    origin, ws, forge = env
    plan = make_plan(origin)
    rt = runtime(forge=forge, workspace=ws)
    advance(plan, rt)
    branch = "rc/shop-scale-web-01234567"
    theirs = origin.commit({"apps/web/deployment.yaml": "# reviewer fixup\n" +
                            origin.show(branch, "apps/web/deployment.yaml")}, "fixup", branch=branch)
    origin.commit({"apps/web/deployment.yaml": origin.show("main", "apps/web/deployment.yaml") + "# moved\n"})
    t = advance(plan, rt)
    assert t.conditions[0].reason == "BranchEditedByOthers"
    assert origin.head(branch) == theirs


def test_a_foreign_branch_with_our_name_is_not_overwritten(env):
    origin, ws, forge = env
    branch = "rc/shop-scale-web-01234567"
    theirs = origin.commit({"notes.md": "mine\n"}, "someone else's work", branch=branch, start="main")
    new = rc.step(make_plan(origin), runtime(forge=forge, workspace=ws))
    assert new.phase == "Failed" and "holds commits this plan did not write" in new.conditions[0].message
    assert origin.head(branch) == theirs and forge.calls[-1][0] == "list"


def test_rollback_before_anything_was_proposed_cancels(env):
    origin, ws, forge = env
    plan = make_plan(origin, rollback=True)
    new = rc.step(plan, runtime(forge=forge, workspace=ws))
    assert new.phase == "RolledBack" and new.conditions[0].reason == "NotProposed"
    assert origin.branches() == ["main"]


def test_binary_file_is_refused_clearly(env):
    origin, ws, forge = env
    origin.commit({"apps/blob.yaml": b"\xff\xfe\x00binary"}, "add a binary file")
    plan = make_plan(origin, changes=[{"path": "apps/blob.yaml", "operation": "setValue", "yamlPath": "a",
                                       "value": 1}])
    new = rc.step(plan, runtime(forge=forge, workspace=ws))
    assert new.phase == "Failed" and "apps/blob.yaml: not a UTF-8 text file" in new.conditions[0].message
    assert origin.branches() == ["main"]


def test_a_merge_is_recorded_before_git_deletes_the_branch_and_a_refused_record_deletes_nothing(env):
    """With ``Runtime.write`` (the operator's status patch), the record does not wait on git's push --delete
    (the forge webhooks' latency: bench/bench_webhook.py), and the branch goes only once the merge is recorded."""
    origin, ws, forge = env
    plan = make_plan(origin)
    branch = "rc/shop-scale-web-01234567"
    seen: list[tuple[str, list[str]]] = []

    def write(status):
        seen.append((status.phase, origin.branches()))

    plan.status = rc.step(plan, runtime(forge=forge, workspace=ws, write=write))
    forge.merge(1, merge_commit=origin.merge(branch))

    def refused(status):
        raise RuntimeError("the status patch was refused (the plan moved)")

    with pytest.raises(RuntimeError):
        rc.step(plan, runtime(forge=forge, workspace=ws, write=refused))
    assert branch in origin.branches()  # not recorded: nothing tidied, the next pass decides

    merged = rc.step(plan, runtime(forge=forge, workspace=ws, write=write))
    assert merged.phase == "Merged"
    assert seen == [("Proposed", ["main", branch]), ("Merged", ["main", branch])]
    assert origin.branches() == ["main"]


def test_a_postmortem_plan_proposes_its_threshold_edits_in_the_rules_file_with_its_comments_kept(env):
    """The postmortem of an incident whose rules fired late and flapped (operator.closing.postmortem_plan),
    through the real apply path, on the shipped rules file committed to the GitOps repository."""
    from reliability_center.operator.closing import postmortem_plan
    from tests.unit.test_postmortem_thresholds import REPO, RULES, incident

    origin, ws, forge = env
    origin.commit({"monitoring/detection-rules.yaml": RULES.read_text()})
    body = postmortem_plan(incident(), {"alertRulesPath": "monitoring/detection-rules.yaml"},
                           {**REPO, "url": origin.url}, [], [])
    body["metadata"].update(uid="0123456789abcdef", generation=1, creationTimestamp="2030-01-01T00:00:00Z")
    plan = PatchPlan.model_validate(body)
    rt = rc.Runtime(policy=PathPolicy(allow=("postmortems/**", "monitoring/**")), forge=forge, workspace=ws,
                    locks=Locks())
    new = advance(plan, rt)
    assert new.phase == "Proposed", new
    proposed = origin.show(new.pull_request.head, "monitoring/detection-rules.yaml")
    before = RULES.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), proposed.splitlines(), strict=True) if a != b]
    assert [b.rsplit(" ", 1)[1] for _, b in changed] == ["0.72", "3.75"], changed  # queue 0.9 → 0.72; errors 3 → 3.75
    assert [ln for ln in before.splitlines() if ln.lstrip().startswith("#")] == [
        ln for ln in proposed.splitlines() if ln.lstrip().startswith("#")]  # every comment line kept
    assert "## Detection thresholds" in origin.show(new.pull_request.head, "postmortems/shop/ocr-acme-1.md")


def test_a_postmortem_whose_rules_are_not_in_the_rules_file_is_proposed_with_that_file_untouched(env):
    from reliability_center.operator.closing import postmortem_plan
    from tests.unit.test_postmortem_thresholds import REPO, incident

    origin, ws, forge = env
    other = "groups:\n  - name: team  # not the seed's\n    rules:\n      - alert: Other\n        expr: up == 0\n"
    origin.commit({"monitoring/detection-rules.yaml": other})
    body = postmortem_plan(incident(), {"alertRulesPath": "monitoring/detection-rules.yaml"},
                           {**REPO, "url": origin.url}, [], [])
    body["metadata"].update(uid="0123456789abcdef", generation=1, creationTimestamp="2030-01-01T00:00:00Z")
    rt = rc.Runtime(policy=PathPolicy(allow=("postmortems/**", "monitoring/**")), forge=forge, workspace=ws,
                    locks=Locks())
    new = advance(PatchPlan.model_validate(body), rt)
    assert new.phase == "Proposed", new
    assert origin.show(new.pull_request.head, "monitoring/detection-rules.yaml") == other
