"""Who has approved a governed step, and is it enough? Pure: the Approval objects are given.

An Approval counts when it names the Incident's uid (not only its name: an incident deleted and
created again under the same name is another incident, and last week's votes are not for it), the
apiserver stamped an approver (admission, ``manifests/admission``)
who is one of the runbook's ``approvers`` (a user or a group), is neither the Incident's
creator nor the operator itself (separation of duties), and approved the plan as it is now
(its digest). ``minApprovals`` distinct people must approve, one of them in ``requiredGroup``
when the runbook names one. A rejection from anyone allowed to approve ends the step Rejected,
whatever plan it was for: a no is never outdated by a new plan. None of this holds unless the
apiserver's admission vouches for who made each Approval: while it does not, no vote counts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from reliability_center.api.incident import Vote
from reliability_center.api.runbook import Approval


@dataclass(frozen=True)
class Ballot:
    """An Approval object as read: who (as admission stamped them), what, for which plan."""

    name: str
    user: str
    groups: tuple[str, ...]
    decision: str  # Approve | Reject
    digest: str
    at: str | None = None
    order: int = 0
    incident_uid: str = ""
    """Creation order: an Approval is immutable, so its resourceVersion is etcd's revision at creation
    (finer than creationTimestamp's second)."""
    shared_at: str = ""
    """A postmortem acknowledgement: where the postmortem was shared."""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Ballot:
        spec, meta = obj.get("spec") or {}, obj["metadata"]
        version = str(meta.get("resourceVersion") or "0")
        return cls(meta["name"], spec.get("approver") or "", tuple(spec.get("groups") or ()),
                   spec.get("decision", "Approve"), spec.get("planDigest", ""), meta.get("creationTimestamp"),
                   int(version) if version.isdigit() else 0, spec.get("incidentUID") or "",
                   spec.get("sharedAt") or "")


@dataclass(frozen=True)
class Tally:
    votes: list[Vote]
    approved: bool
    rejected: Vote | None
    missing: str


def plan_digest(planned: Any) -> str:
    """The digest an approval binds to: of the planned change (targets, before and after), canonical JSON."""
    return "sha256:" + hashlib.sha256(json.dumps(planned, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


#: The key of a step's evidence that says why the step, approved before, asks again.
ASKED_AGAIN = "askedAgain"


def planned_targets(plan: dict[str, Any] | None) -> frozenset[str]:
    """The targets a plan shown to the approvers writes (``evidence.plan`` of the step): all its changes."""
    return frozenset(str(c.get("target")) for c in (plan or {}).get("changes") or [])


def ask_again(target: str, approved_digest: str | None) -> str:
    """Why an approved step stops before a write its plan did not show (a later wave's fresh selection)."""
    return (f"{target} is not in the approved plan {approved_digest or '?'} (the selection changed while the "
            f"step ran): it was not written, and the rest of the step is planned again for a new approval")


def _allowed(rule: Approval, ballot: Ballot) -> bool:
    return not rule.approvers or ballot.user in rule.approvers or bool(set(ballot.groups) & set(rule.approvers))


def weigh(rule: Approval, ballots: list[Ballot], digest: str, creator: str | None, operator: str | None,
          incident_uid: str, unvouched: str = "", unvouched_until: str | None = None) -> Tally:
    """The votes on one step of the incident whose uid is ``incident_uid``, each counted or not with
    why, oldest first. ``unvouched``: why the apiserver does not vouch for who made an Approval
    (``engine/admission.py``); while it does not, no vote counts, neither yes nor no.
    ``unvouched_until``: the last time (UTC, ``...Z``) it was seen not vouching; an Approval made
    then or before never counts, even once admission is back (anyone could have typed its name)."""
    if unvouched:
        votes = [Vote(approval=b.name, user=b.user or "?", decision=b.decision, at=b.at, counted=False,
                      reason=unvouched) for b in sorted(ballots, key=lambda b: (b.at or "", b.order, b.name))]
        return Tally(votes[-50:], False, None, unvouched)
    votes: list[Vote] = []
    counted: dict[str, Ballot] = {}
    rejected: Vote | None = None
    for ballot in sorted(ballots, key=lambda b: (b.at or "", b.order, b.name)):
        why = ""
        if not ballot.incident_uid:
            why = ("names no incident uid (spec.incidentUID): relctl approve sets it; an Approval made by hand "
                   "must carry the Incident's metadata.uid")
        elif ballot.incident_uid != incident_uid:
            why = (f"was given for another incident of the same name (uid {ballot.incident_uid}), "
                   f"not this one ({incident_uid})")
        elif why := _unvouched(ballot, unvouched_until):
            pass
        elif operator and ballot.user == operator:
            why = "the operator's own identity never approves its own steps"
        elif not _allowed(rule, ballot):
            why = f"not one of the approvers ({', '.join(rule.approvers)})"
        elif ballot.decision == "Reject":
            pass  # counted below: anyone who may approve may say no, the creator included
        elif creator is None:
            why = "the incident's creator was not recorded at admission: separation of duties cannot be checked"
        elif ballot.user == creator:
            why = "created the incident: the creator's approval never counts"
        elif ballot.digest != digest:
            why = f"approved another plan ({ballot.digest[:19]}…): the plan changed since"
        elif ballot.user in counted:
            why = "already counted: approvals are counted per person"
        vote = Vote(approval=ballot.name, user=ballot.user or "?", decision=ballot.decision, at=ballot.at,
                    counted=not why, reason=why)
        votes.append(vote)
        if why:
            continue
        if ballot.decision == "Reject":
            rejected = rejected or vote
        else:
            counted[ballot.user] = ballot
    needs = []
    if len(counted) < rule.min_approvals:
        needs.append(f"{rule.min_approvals} approvals from distinct people ({len(counted)} so far)")
    if rule.required_group and not any(rule.required_group in b.groups for b in counted.values()):
        needs.append(f"one approver in group {rule.required_group}")
    approvers = f" by {', '.join(rule.approvers)}" if rule.approvers else ""
    missing = f"needs {' and '.join(needs)}{approvers}" if needs else ""
    return Tally(votes[-50:], rejected is None and not needs, rejected, missing)


def _unvouched(ballot: Ballot, unvouched_until: str | None) -> str:
    """Why the apiserver does not vouch for who made this Approval (empty: it does): made while admission was
    last seen off, or no approver stamped. Votes and acknowledgements alike."""
    if unvouched_until and (ballot.at or "") <= unvouched_until:
        return (f"made at {ballot.at or '?'}, when the apiserver did not vouch for who made an Approval "
                f"(seen so until {unvouched_until}): make it again")
    if not ballot.user:
        return "no approver was stamped at admission (is the reliability-center admission policy installed?)"
    return ""


@dataclass(frozen=True)
class Acknowledgement:
    """The acknowledgements that the postmortem was shared, weighed: the first that counts, if any."""

    counted: Ballot | None
    not_counted: list[str]
    """Each one that does not count, with why."""


def acknowledged(ballots: list[Ballot], creator: str | None, operator: str | None, incident_uid: str,
                 resolved_at: str | None, unvouched: str = "", unvouched_until: str | None = None) -> Acknowledgement:
    """Has someone other than the incident's creator, as the apiserver vouches, said where its
    postmortem was shared? Separation of duties as for votes (``weigh``): the creator, the operator,
    an Approval admission did not stamp or made while it was off, another incident's: none counts.
    Made before the resolve it does not count either: the postmortem is written after the repair."""
    not_counted: list[str] = []
    for ballot in sorted((b for b in ballots if b.shared_at), key=lambda b: (b.at or "", b.order, b.name)):
        if unvouched:
            why = unvouched
        elif ballot.incident_uid != incident_uid:
            why = f"names another incident's uid ({ballot.incident_uid or 'none'}), not this one's ({incident_uid})"
        elif why := _unvouched(ballot, unvouched_until):
            pass
        elif operator and ballot.user == operator:
            why = "the operator's own identity never acknowledges its own postmortem"
        elif creator is None:
            why = "the incident's creator was not recorded at admission: separation of duties cannot be checked"
        elif ballot.user == creator:
            why = "created the incident: the creator's acknowledgement never counts"
        elif not resolved_at or (ballot.at or "") < resolved_at:
            why = f"made at {ballot.at or '?'}, before the incident was resolved ({resolved_at or 'not yet'})"
        else:
            return Acknowledgement(ballot, not_counted)
        not_counted.append(f"Approval {ballot.name} by {ballot.user or '?'} not counted: {why}")
    return Acknowledgement(None, not_counted)
