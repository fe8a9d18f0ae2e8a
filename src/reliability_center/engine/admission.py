"""Is the admission that vouches for approvals in force? Judged from the apiserver's answers. Pure.

A vote counts only because the apiserver says who made it: the admission policies
(``manifests/admission``) stamp an Approval's approver and groups and refuse one typed in
someone else's name, and stamp who created an Incident. Without them (the chart's
``admission.enabled=false``, a cluster older than 1.34, a partial ``kubectl apply`` where
the MutatingAdmissionPolicy kinds are unknown) anyone who may create Approvals could write
any name, and the creator any creator. So the operator asks the apiserver, with server-side
dry-runs that store nothing (``operator/admission.py``):

- an Approval in someone else's name, with a group they are not in: it must be refused by
  the ValidatingAdmissionPolicy ``reliability-center-approvals`` (which also checks the
  groups against the authenticated user's);
- an Incident whose ``reliability.center/created-by`` names someone else: admission must
  replace it with the operator's own name (the MutatingAdmissionPolicy
  ``reliability-center-incident-creator``).

Anything else (accepted, refused for another reason, the check itself forbidden) means no
vote counts until a later check says otherwise, and the reason is given in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reliability_center.api.approval import CREATED_BY

#: Whose name the checks write: no one's (a name no authenticated user has).
PROBE_USER = "system:reliability-center:admission-check"
PROBE_GROUP = "system:reliability-center:admission-check"
APPROVALS_POLICY = "reliability-center-approvals"
CREATOR_POLICY = "reliability-center-incident-creator"


@dataclass(frozen=True)
class Answer:
    """What the apiserver answered one dry-run create: the object as admission left it, or a refusal."""

    accepted: dict[str, Any] | None = None
    status: int | None = None  # the HTTP status of a refusal
    message: str = ""


@dataclass(frozen=True)
class Verdict:
    in_force: bool
    reason: str  # InForce | ApprovalsNotVouched | CreatorNotStamped | CannotCheck | NotChecked
    message: str


NOT_CHECKED = Verdict(False, "NotChecked", "the operator has not yet checked that the apiserver vouches for "
                                            "approvals (manifests/admission): no vote counts until it has")


def _denied_by(answer: Answer, policy: str) -> bool:
    # The apiserver names the policy that refused: "ValidatingAdmissionPolicy 'x' with binding 'y' denied request".
    return answer.accepted is None and f"ValidatingAdmissionPolicy '{policy}'" in answer.message


def judge(approval: Answer, incident: Answer, operator: str) -> Verdict:
    """The verdict on both checks; ``operator`` is the name the apiserver authenticates the operator as."""
    if approval.accepted is not None:
        return Verdict(False, "ApprovalsNotVouched",
                       f"an Approval in someone else's name ({PROBE_USER}) was accepted (server-side dry-run): "
                       f"the ValidatingAdmissionPolicy {APPROVALS_POLICY} is not in force, so the apiserver does "
                       f"not vouch for who approved (manifests/admission; the chart's admission.enabled); "
                       f"no vote counts")
    if not _denied_by(approval, APPROVALS_POLICY):
        return Verdict(False, "CannotCheck",
                       f"cannot check that the apiserver vouches for approvals: a dry-run Approval in someone "
                       f"else's name was refused, but not by the ValidatingAdmissionPolicy {APPROVALS_POLICY} "
                       f"(HTTP {approval.status}: {approval.message[:300]}); the operator needs create on "
                       f"approvals for this check; no vote counts")
    if incident.accepted is None:
        return Verdict(False, "CannotCheck",
                       f"cannot check that admission stamps who created an Incident: a dry-run Incident was "
                       f"refused (HTTP {incident.status}: {incident.message[:300]}); no vote counts")
    stamped = ((incident.accepted.get("metadata") or {}).get("annotations") or {}).get(CREATED_BY)
    if stamped != operator:
        return Verdict(False, "CreatorNotStamped",
                       f"an Incident created with {CREATED_BY}={PROBE_USER} kept {stamped!r} (server-side "
                       f"dry-run, as {operator}): the MutatingAdmissionPolicy {CREATOR_POLICY} is not in force, "
                       f"so the incident's creator is not known and could approve their own incident; "
                       f"no vote counts")
    return Verdict(True, "InForce", f"the apiserver vouches for approvals: {APPROVALS_POLICY} refused an Approval "
                                    f"in someone else's name, {CREATOR_POLICY} stamped an Incident's creator")
