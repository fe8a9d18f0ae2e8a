"""engine/admission.py: whether the apiserver vouches for approvals, judged from its answers to two
dry-runs; and engine/approvals.py counting no vote while it does not. The messages are the
apiserver's own (captured from the local cluster's kube-apiserver)."""

from __future__ import annotations

from reliability_center.api.runbook import Approval
from reliability_center.engine.admission import PROBE_USER, Answer, judge
from reliability_center.engine.approvals import Ballot, plan_digest, weigh

OPERATOR = "system:serviceaccount:reliability-center:reliability-center"
DENIED = Answer(status=403, message=(
    "approvals.reliability.center \"rc-admission-check\" is forbidden: ValidatingAdmissionPolicy "
    "'reliability-center-approvals' with binding 'reliability-center-approvals' denied request: spec.approver is "
    f"{PROBE_USER} but the apiserver authenticated {OPERATOR}: an approval names the user who made it"))
STAMPED = Answer(accepted={"metadata": {"annotations": {"reliability.center/created-by": OPERATOR}}})


def test_in_force_when_the_approval_is_refused_by_our_policy_and_the_creator_is_stamped():
    verdict = judge(DENIED, STAMPED, OPERATOR)
    assert verdict.in_force and verdict.reason == "InForce"


def test_an_approval_in_someone_elses_name_accepted_means_no_vote_counts():
    accepted = Answer(accepted={"spec": {"approver": PROBE_USER}})
    verdict = judge(accepted, STAMPED, OPERATOR)
    assert not verdict.in_force and verdict.reason == "ApprovalsNotVouched"
    assert "reliability-center-approvals is not in force" in verdict.message and "no vote counts" in verdict.message


def test_a_refusal_by_anything_but_our_policy_proves_nothing():
    rbac = Answer(status=403, message='approvals.reliability.center is forbidden: User "x" cannot create resource '
                                     '"approvals" in API group "reliability.center" in the namespace "rc"')
    verdict = judge(rbac, STAMPED, OPERATOR)
    assert not verdict.in_force and verdict.reason == "CannotCheck" and "HTTP 403" in verdict.message
    other = Answer(status=403, message="ValidatingAdmissionPolicy 'someone-elses' with binding 'b' denied request")
    assert judge(other, STAMPED, OPERATOR).reason == "CannotCheck"


def test_a_creator_stamp_left_as_the_client_typed_it_means_no_vote_counts():
    kept = Answer(accepted={"metadata": {"annotations": {"reliability.center/created-by": PROBE_USER}}})
    verdict = judge(DENIED, kept, OPERATOR)
    assert not verdict.in_force and verdict.reason == "CreatorNotStamped"
    assert "reliability-center-incident-creator is not in force" in verdict.message
    assert judge(DENIED, Answer(status=403, message="forbidden"), OPERATOR).reason == "CannotCheck"


PLAN = plan_digest({"changes": []})
UID = "u1"


def test_while_admission_is_not_in_force_no_vote_counts_neither_yes_nor_no():
    ballots = [Ballot("a1", "alice", ("approvers",), "Approve", PLAN, "2026-11-28T10:00:00Z", incident_uid=UID),
               Ballot("a2", "bob", (), "Reject", PLAN, "2026-11-28T10:01:00Z", incident_uid=UID)]
    assert weigh(Approval(), ballots[:1], PLAN, "carol", OPERATOR, UID).approved  # vouched: it counts
    why = "the apiserver does not vouch for approvals"
    tally = weigh(Approval(), ballots, PLAN, "carol", OPERATOR, UID, unvouched=why)
    assert not tally.approved and tally.rejected is None and tally.missing == why
    assert [(v.approval, v.counted, v.reason) for v in tally.votes] == [("a1", False, why), ("a2", False, why)]


def test_an_approval_made_while_admission_was_seen_off_never_counts_even_once_it_is_back():
    made_then = Ballot("a1", "alice", (), "Approve", PLAN, "2026-11-28T10:00:05Z", incident_uid=UID)
    made_after = Ballot("a2", "bob", (), "Approve", PLAN, "2026-11-28T10:00:07Z", incident_uid=UID)
    tally = weigh(Approval(), [made_then, made_after], PLAN, "carol", OPERATOR, UID,
                  unvouched_until="2026-11-28T10:00:06Z")
    assert [v.counted for v in tally.votes] == [False, True] and tally.approved
    assert tally.votes[0].reason.startswith("made at 2026-11-28T10:00:05Z, when the apiserver did not vouch")
