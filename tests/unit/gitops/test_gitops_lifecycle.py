"""The PatchPlan state machine, pure: transitions, conditions, and the Argo CD trust rule."""

from __future__ import annotations

import pytest

from reliability_center.api.patchplan import PatchPlanStatus, PullRequestRef
from reliability_center.gitops import lifecycle as lc
from reliability_center.gitops.forges import PullRequest

MERGE = "a" * 40
NOW = "2030-01-01T00:00:00Z"


def pr(**kw) -> PullRequest:
    base = dict(number=7, url="https://forge/pr/7", open=True, merged=False, merge_commit=None, head_sha="h" * 40,
                head_branch="rc/ns-plan-1234", base_branch="main")
    return PullRequest(**{**base, **kw})


def status(phase: str | None, **kw) -> PatchPlanStatus:
    return PatchPlanStatus(phase=phase, **kw)


@pytest.mark.parametrize("phase, rollback, action", [
    (None, False, lc.Action.PROPOSE),
    ("Pending", False, lc.Action.PROPOSE),
    ("Pending", True, lc.Action.CANCEL),
    ("Proposed", False, lc.Action.WAIT_MERGE),
    ("Proposed", True, lc.Action.WAIT_MERGE),  # a rollback waits for the merge (or the close)
    ("Merged", False, lc.Action.WAIT_SYNC),
    ("Merged", True, lc.Action.REVERT),
    ("Synced", False, lc.Action.VERIFY),
    ("Synced", True, lc.Action.REVERT),
    ("Verified", False, lc.Action.NONE),
    ("Verified", True, lc.Action.REVERT),
    ("RollingBack", True, lc.Action.WAIT_REVERT),
    ("RolledBack", True, lc.Action.NONE),
    ("Rejected", True, lc.Action.NONE),
    ("Failed", False, lc.Action.NONE),
])
def test_next_action(phase, rollback, action):
    assert lc.next_action(status(phase), rollback) is action


def test_failed_after_merge_can_still_be_rolled_back_once():
    merged = status("Failed", pull_request=PullRequestRef(number=1, merge_commit=MERGE))
    assert lc.next_action(merged, True) is lc.Action.REVERT
    reverted = status("Failed", pull_request=PullRequestRef(number=1, merge_commit=MERGE),
                      revert=PullRequestRef(number=2))
    assert lc.next_action(reverted, True) is lc.Action.NONE


def test_a_revert_that_conflicts_stops_the_poller_until_a_rollback_request():
    st = status("Synced", evidence={"revertCheck": {"clean": False}})
    assert lc.next_action(st, False) is lc.Action.NONE
    assert lc.next_action(st, True) is lc.Action.REVERT


def test_open_pull_request_changes_nothing():
    assert lc.on_pull_request(status("Proposed", pull_request=PullRequestRef(number=7)), pr()) is None


def test_merged_pull_request_records_the_merge_commit():
    st = status("Proposed", pull_request=PullRequestRef(number=7, base="b" * 40))
    t = lc.on_pull_request(st, pr(open=False, merged=True, merge_commit=MERGE, merged_by="alice",
                                  merged_at="2030-01-01T00:00:01Z"))
    assert t is not None and t.phase == "Merged"
    assert t.pull_request.merge_commit == MERGE and t.pull_request.merged_by == "alice"
    assert t.pull_request.base == "b" * 40


def test_merged_without_merge_commit_waits():
    st = status("Proposed", pull_request=PullRequestRef(number=7))
    assert lc.on_pull_request(st, pr(open=False, merged=True)) is None


def test_closed_unmerged_is_rejected():
    t = lc.on_pull_request(status("Proposed", pull_request=PullRequestRef(number=7)), pr(open=False))
    assert t.phase == "Rejected" and t.reason == "PullRequestClosed"


def test_vanished_pull_request_fails():
    t = lc.on_pull_request(status("Proposed", pull_request=PullRequestRef(number=7)), None)
    assert t.phase == "Failed" and "#7" in t.message


def test_revert_pull_request_transitions():
    st = status("RollingBack", revert=PullRequestRef(number=8))
    assert lc.on_revert_pull_request(st, pr(number=8)) is None
    merged = lc.on_revert_pull_request(st, pr(number=8, open=False, merged=True, merge_commit=MERGE))
    assert merged.phase == "RollingBack" and merged.revert.merge_commit == MERGE
    closed = lc.on_revert_pull_request(st, pr(number=8, open=False))
    assert closed.phase == "Failed" and closed.reason == "RevertRejected"


@pytest.mark.parametrize("phase, ready, reconciling, stalled", [
    ("Proposed", "False", "True", "False"),
    ("Synced", "True", "False", "False"),
    ("Rejected", "False", "False", "True"),
    ("RolledBack", "True", "False", "False"),
])
def test_apply_sets_phase_and_conditions(phase, ready, reconciling, stalled):
    new = lc.apply(None, lc.Transition(phase, "Why", "because"), 3, NOW)
    conds = {c.type: c for c in new.conditions}
    assert new.phase == phase and new.observed_generation == 3
    assert (conds["Ready"].status, conds["Reconciling"].status, conds["Stalled"].status) == (ready, reconciling,
                                                                                            stalled)
    assert conds["Ready"].reason == "Why" and conds["Ready"].message == "because"


def test_apply_is_stable_when_nothing_changes():
    once = lc.apply(None, lc.Transition("Proposed", "PullRequestOpened", "m"), 1, NOW)
    twice = lc.apply(once, lc.Transition("Proposed", "PullRequestOpened", "m"), 1, "2031-01-01T00:00:00Z")
    assert once == twice  # lastTransitionTime moves only when a condition's status moves


# ------------------------------------------------------------------------ Argo CD


def app(revision=MERGE, sync="Synced", health="Healthy", reconciled="2030-01-01T00:00:10Z",
        finished="2030-01-01T00:00:05Z", phase="Succeeded", **extra):
    status = {"sync": {"status": sync, "revision": revision}, "health": {"status": health},
              "reconciledAt": reconciled, "operationState": {"phase": phase, "finishedAt": finished,
                                                             "syncResult": {"revision": revision}}}
    status.update(extra)
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "status": status}


def test_argo_trusted_when_reconciled_after_the_sync_at_the_merge_commit():
    v = lc.argo_verdict(app(), MERGE, "argocd/shop")
    assert v.ok and v.reason == "Synced"
    assert v.observed.revision == MERGE and v.observed.health == "Healthy"


def test_argo_healthy_but_reconciled_before_the_sync_finished_is_not_trusted():
    v = lc.argo_verdict(app(reconciled="2030-01-01T00:00:04Z", finished="2030-01-01T00:00:05Z"), MERGE)
    assert not v.ok and v.reason == "StaleHealth"


def test_argo_reconciled_at_exactly_finished_at_is_trusted():
    assert lc.argo_verdict(app(reconciled="2030-01-01T00:00:05Z", finished="2030-01-01T00:00:05Z"), MERGE).ok


def test_argo_other_revision_is_not_trusted():
    v = lc.argo_verdict(app(revision="b" * 40), MERGE)
    assert not v.ok and v.reason == "RevisionMismatch"


def test_argo_later_revision_containing_the_merge_counts_when_git_says_so():
    later = "c" * 40
    assert lc.argo_verdict(app(revision=later), MERGE, includes=lambda rev: rev == later).ok
    assert not lc.argo_verdict(app(revision=later), MERGE, includes=lambda rev: False).ok


@pytest.mark.parametrize("kw, reason", [
    ({"sync": "OutOfSync"}, "OutOfSync"),
    ({"health": "Progressing"}, "NotHealthy"),
    ({"health": "Degraded"}, "NotHealthy"),
    ({"phase": "Running"}, "SyncRunning"),
    ({"phase": "Failed"}, "SyncFailed"),
    ({"finished": None}, "NotReconciled"),
    ({"reconciled": None}, "NotReconciled"),
])
def test_argo_untrusted_states(kw, reason):
    v = lc.argo_verdict(app(**kw), MERGE)
    assert not v.ok and v.reason == reason


def test_argo_application_missing():
    v = lc.argo_verdict(None, MERGE, "argocd/shop")
    assert not v.ok and v.reason == "ApplicationNotFound"


def test_on_sync_and_on_revert_sync():
    good = lc.argo_verdict(app(), MERGE)
    bad = lc.argo_verdict(app(health="Progressing"), MERGE)
    assert lc.on_sync(status("Merged"), good).phase == "Synced"
    stay = lc.on_sync(status("Merged"), bad)
    assert stay.phase == "Merged" and stay.reason == "NotHealthy"
    assert lc.on_revert_sync(status("RollingBack"), good).phase == "RolledBack"
    assert lc.on_revert_sync(status("RollingBack"), bad).phase == "RollingBack"


# ------------------------------------------------------------------------ without Argo CD


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
          "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}}


def live(**spec):
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "9"},
           "spec": {"replicas": 5, "strategy": {"type": "RollingUpdate"},
                    "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26",
                                                          "imagePullPolicy": "IfNotPresent"}]}}},
           "status": {"readyReplicas": 5}}
    obj["spec"].update(spec)
    return obj


def test_objects_synced_when_live_contains_the_manifest():
    key = lc.manifest_key(DEPLOY)
    assert key == "apps/v1/Deployment/shop/web"
    assert lc.objects_verdict([DEPLOY], {key: live()}, MERGE).ok


def test_objects_differ_or_missing():
    key = lc.manifest_key(DEPLOY)
    v = lc.objects_verdict([DEPLOY], {key: live(replicas=3)}, MERGE)
    assert not v.ok and v.reason == "ObjectDiffers" and ".spec.replicas" in v.message
    v = lc.objects_verdict([DEPLOY], {key: None}, MERGE)
    assert not v.ok and v.reason == "ObjectMissing"


def test_a_revert_that_removed_a_manifest_is_synced_only_once_the_object_is_gone():
    key = lc.manifest_key(DEPLOY)
    v = lc.objects_verdict([], {key: live()}, MERGE, removed=[DEPLOY])
    assert not v.ok and v.reason == "ObjectNotPruned" and key in v.message
    assert lc.objects_verdict([], {key: None}, MERGE, removed=[DEPLOY]).ok


def test_an_object_the_operator_may_not_read_is_never_taken_as_synced_or_gone():
    for desired, removed in (([DEPLOY], []), ([], [DEPLOY])):
        v = lc.objects_verdict(desired, {}, MERGE, removed=removed)
        assert not v.ok and v.reason == "ObjectUnreadable", (desired, removed)


def test_no_manifest_means_nothing_to_observe():
    assert lc.objects_verdict([], {}, MERGE).reason == "NothingToObserve"


def test_active_filter():
    assert lc.active(None, False)
    assert not lc.active(status("Verified"), False)
    assert lc.active(status("Verified"), True)
    assert not lc.active(status("Rejected"), True)


def test_an_open_plan_is_polled_less_and_less_often_as_it_waits():
    from reliability_center.api.common import Condition
    from reliability_center.gitops.lifecycle import next_poll

    def waiting_since(ts: str) -> PatchPlanStatus:
        return PatchPlanStatus(phase="Proposed", conditions=[
            Condition(type="Ready", status="False", reason="PullRequestOpened", last_transition_time=ts)])

    now = "2030-01-01T12:00:00Z"
    assert next_poll(None, now, 3, 300) == 3
    assert next_poll(waiting_since("2030-01-01T11:59:50Z"), now, 3, 300) == 3  # just changed
    assert next_poll(waiting_since("2030-01-01T11:50:00Z"), now, 3, 300) == 60  # 10 min: every minute
    assert next_poll(waiting_since("2030-01-01T09:00:00Z"), now, 3, 300) == 300  # hours: every 5 min
    # The first hour of waiting for a review costs about 60 polls in all, each hour after it 12.
    polls, t = 0, 0.0
    while t < 3600:
        t += next_poll(waiting_since("2030-01-01T00:00:00Z"), f"2030-01-01T{int(t) // 3600:02d}:"
                       f"{int(t) % 3600 // 60:02d}:{int(t) % 60:02d}Z", 3, 300)
        polls += 1
    assert polls < 70


# --- issue 19, item 9: an Application vouches only for plans of the namespace it deploys to


def test_an_application_deploying_the_plans_namespace_may_vouch_for_it():
    assert lc.application_refusal({"spec": {"destination": {"namespace": "shop"}}}, "argocd/shop", "shop") is None
    assert lc.application_refusal(None, "argocd/gone", "shop") is None  # ApplicationNotFound comes later


@pytest.mark.parametrize("destination, words", [
    ({"namespace": "billing"}, "deploys to namespace billing, not shop"),
    ({"server": "https://kubernetes.default.svc"}, "names no destination namespace"),
    (None, "names no destination namespace"),
])
def test_an_application_deploying_elsewhere_is_refused_in_words(destination, words):
    refusal = lc.application_refusal({"spec": {"destination": destination}}, "argocd/billing", "shop")
    assert refusal is not None and words in refusal and "argocd/billing" in refusal
