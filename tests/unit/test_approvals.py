"""engine/approvals.py: who counts, for which plan, and when it is enough."""

from __future__ import annotations

from reliability_center.api.runbook import Approval
from reliability_center.engine.approvals import Ballot, plan_digest, weigh

PLAN = plan_digest({"changes": [{"target": "ConfigMap/shop/flags", "before": {"/data/x": "true"},
                                 "after": {"/data/x": "false"}}]})
OPERATOR = "system:serviceaccount:reliability-center:reliability-center"


UID = "7d0c2e1a-4f7e-4a55-9d7e-0a6c1b2f3e4d"
EARLIER = "0b9f8e7d-1111-4c3b-8a2f-5e6d7c8b9a01"  # an incident of the same name, deleted since


def ballot(name, user, *groups, decision="Approve", digest=PLAN, at="2026-11-28T10:00:00Z", uid=UID):
    return Ballot(name, user, tuple(groups), decision, digest, at, incident_uid=uid)


def test_the_digest_is_of_the_plan_whatever_the_key_order():
    assert plan_digest({"a": 1, "b": [2]}) == plan_digest({"b": [2], "a": 1}) != plan_digest({"a": 2, "b": [2]})
    assert PLAN.startswith("sha256:") and len(PLAN) == 71


def test_the_creator_alone_is_not_enough_for_two_of_n_two_distinct_others_are():
    rule = Approval(min_approvals=2)
    alone = weigh(rule, [ballot("a1", "carol")], PLAN, "carol", OPERATOR, UID)
    assert not alone.approved and alone.votes[0].reason.startswith("created the incident")
    assert alone.missing == "needs 2 approvals from distinct people (0 so far)"
    twice = weigh(rule, [ballot("a1", "alice"), ballot("a2", "alice")], PLAN, "carol", OPERATOR, UID)
    assert not twice.approved and twice.votes[1].reason.startswith("already counted")
    both = weigh(rule, [ballot("a1", "carol"), ballot("a2", "alice"), ballot("a3", "bob")], PLAN, "carol", OPERATOR, UID)
    assert both.approved and [v.counted for v in both.votes] == [False, True, True] and both.missing == ""


def test_the_operator_never_counts_nor_does_a_ballot_without_a_stamped_approver():
    tally = weigh(Approval(), [ballot("a1", OPERATOR, UID), ballot("a2", "")], PLAN, "carol", OPERATOR, UID)
    assert not tally.approved
    assert "operator's own identity" in tally.votes[0].reason and "admission policy" in tally.votes[1].reason


def test_approvers_are_users_or_groups_and_a_required_group_must_be_among_the_counted():
    rule = Approval(approvers=["security-review", "dana"])
    outsider = weigh(rule, [ballot("a1", "alice", "approvers")], PLAN, "carol", OPERATOR, UID)
    assert not outsider.approved and outsider.votes[0].reason == "not one of the approvers (security-review, dana)"
    assert weigh(rule, [ballot("a1", "sam", "security-review")], PLAN, "carol", OPERATOR, UID).approved
    assert weigh(rule, [ballot("a1", "dana")], PLAN, "carol", OPERATOR, UID).approved
    grouped = Approval(min_approvals=2, required_group="security-review")
    two = weigh(grouped, [ballot("a1", "alice"), ballot("a2", "bob")], PLAN, "carol", OPERATOR, UID)
    assert not two.approved and two.missing == "needs one approver in group security-review"
    assert weigh(grouped, [ballot("a1", "alice"), ballot("a2", "sam", "security-review")], PLAN, "carol",
                 OPERATOR, UID).approved


def test_an_approval_of_another_plan_does_not_count():
    tally = weigh(Approval(), [ballot("a1", "alice", digest="sha256:" + "0" * 64)], PLAN, "carol", OPERATOR, UID)
    assert not tally.approved and tally.votes[0].reason.startswith("approved another plan")


def test_without_a_recorded_creator_no_approval_counts():
    tally = weigh(Approval(), [ballot("a1", "alice")], PLAN, None, OPERATOR, UID)
    assert not tally.approved and "separation of duties cannot be checked" in tally.votes[0].reason


def test_a_rejection_by_an_allowed_user_rejects_whatever_plan_it_was_for_the_creator_included():
    rule = Approval(approvers=["security-review"])
    no = weigh(rule, [ballot("a1", "sam", "security-review", decision="Reject", digest="sha256:" + "1" * 64),
                      ballot("a2", "tom", "security-review")], PLAN, "sam", OPERATOR, UID)
    assert no.rejected is not None and no.rejected.user == "sam" and not no.approved
    ignored = weigh(rule, [ballot("a1", "eve", decision="Reject")], PLAN, "carol", OPERATOR, UID)
    assert ignored.rejected is None and not ignored.votes[0].counted


def test_a_vote_counts_only_for_the_incident_whose_uid_it_names_not_for_a_later_one_of_its_name():
    earlier = weigh(Approval(), [ballot("a1", "alice", uid=EARLIER)], PLAN, "carol", OPERATOR, UID)
    assert not earlier.approved and not earlier.votes[0].counted
    assert earlier.votes[0].reason == (f"was given for another incident of the same name (uid {EARLIER}), "
                                       f"not this one ({UID})")
    unbound = weigh(Approval(), [ballot("a1", "alice", uid="")], PLAN, "carol", OPERATOR, UID)
    assert not unbound.approved and unbound.votes[0].reason.startswith("names no incident uid (spec.incidentUID)")
    assert weigh(Approval(), [ballot("a1", "alice")], PLAN, "carol", OPERATOR, UID).approved


def test_a_rejection_given_for_an_earlier_incident_of_the_name_rejects_nothing():
    tally = weigh(Approval(), [ballot("a1", "bob", decision="Reject", uid=EARLIER), ballot("a2", "alice")],
                  PLAN, "carol", OPERATOR, UID)
    assert tally.rejected is None and tally.approved


def test_the_uid_is_read_from_the_approval_as_stored():
    stored = {"metadata": {"name": "a1", "resourceVersion": "42", "creationTimestamp": "2026-11-28T10:00:00Z"},
              "spec": {"incident": "bill", "incidentUID": UID, "step": "s", "decision": "Approve",
                       "planDigest": PLAN, "approver": "alice", "groups": ["g"]}}
    assert Ballot.of(stored).incident_uid == UID
    assert Ballot.of({**stored, "spec": {k: v for k, v in stored["spec"].items() if k != "incidentUID"}}) \
        .incident_uid == ""
