"""Approval: one person's decision on one governed step of one Incident, as the apiserver vouches for it.

Its own object rather than a field of the Incident, like a CertificateSigningRequest's approval:
RBAC grants it (``create`` on approvals, and the ``approve`` verb on the incident, which admission
checks with the authorizer), admission stamps the approver from ``request.userInfo`` (a name the
client typed must be its own), and it is immutable once created, so the audit trail is a list of
objects nobody can edit after the fact. ``manifests/admission`` holds the policies.

A name is not an identity: an Incident deleted and created again keeps its name, and its plan's
digest repeats once the targets are back as they were. So an Approval names the Incident's uid
too (``spec.incidentUID``, immutable like the rest of the spec), and ``relctl approve`` makes it
a dependent of the Incident (an owner reference), so it is garbage-collected with it.

In a namespace without a GitOps repository there is no postmortem pull request to merge: there an
Approval of the step ``postmortem`` naming where the postmortem was shared (``spec.sharedAt``, no
plan digest) is the human act that closes the incident's last gate (``relctl postmortem-shared``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reliability_center.api.common import DNS_LABEL, Model, ObjectMeta, cel

Decision = Literal["Approve", "Reject"]
#: The digest of a step's planned change, as the step's status shows it.
DIGEST = r"^sha256:[0-9a-f]{64}$"
#: The Incident annotation admission writes with the user who created it.
CREATED_BY = "reliability.center/created-by"
#: The step an acknowledgement that the postmortem was shared names (``spec.sharedAt`` set).
POSTMORTEM_STEP = "postmortem"


class ApprovalSpec(Model):
    incident: str = Field(pattern=DNS_LABEL, max_length=253, description="The Incident, in this namespace.")
    incident_uid: str = Field(default="", alias="incidentUID", max_length=128,
                              description="The Incident's metadata.uid (relctl approve sets it): a vote counts "
                                          "only for that incident, never for a later one of the same name.")
    step: str = Field(pattern=DNS_LABEL, max_length=63, description="The level 2 step approved or rejected.")
    decision: Decision = Field(description="Approve or Reject.")
    plan_digest: str = Field(default="", pattern=DIGEST,
                             description="The digest of the planned change this decision is for (relctl steps shows "
                                         "it): a changed plan asks again. Not set on a postmortem acknowledgement.")
    shared_at: str = Field(default="", alias="sharedAt", min_length=1, max_length=2048,
                           description="A postmortem acknowledgement (step postmortem, relctl postmortem-shared): "
                                       "where the postmortem was shared (a URL). Counts only in a namespace without "
                                       "a GitOps repository, and never from the Incident's creator.")
    comment: str = Field(default="", max_length=1024)
    approver: str = Field(default="", max_length=253,
                          description="Set at admission from the authenticated user; a typed value must be that user.")
    groups: list[str] = Field(default_factory=list, max_length=100,
                              description="Set at admission from the authenticated user's groups.")

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("self == oldSelf", "an Approval is immutable once created: create another one"),
                cel("has(self.planDigest) || has(self.sharedAt)",
                    "an Approval names the plan it decides on (spec.planDigest), or, acknowledging a postmortem, "
                    "where it was shared (spec.sharedAt)"),
                cel(f"!has(self.sharedAt) || (self.step == '{POSTMORTEM_STEP}' && self.decision == 'Approve' "
                    "&& !has(self.planDigest))",
                    f"spec.sharedAt acknowledges a postmortem: step {POSTMORTEM_STEP}, decision Approve, no planDigest"),
            ]
        }
    }


class Approval(Model):
    api_version: str = "reliability.center/v1alpha1"
    kind: str = "Approval"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ApprovalSpec
