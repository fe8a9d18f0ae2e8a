"""Incident: a namespaced report of something going wrong for one tenant (or all: ``*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from reliability_center.api.common import Condition, Model, ObjectMeta, cel, free_form
from reliability_center.api.runbook import Severity

Mode = Literal["enforce", "shadow"]
Phase = Literal["Detected", "Mitigating", "Mitigated", "Escalated", "Shadowed", "Verifying", "Closed", "Failed"]
StepState = Literal[
    "Pending", "Running", "Succeeded", "Skipped", "Failed",
    "AwaitingApproval", "Escalated", "Blocked", "Shadowed", "Restored", "Rejected",
]

TENANT = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"
TRACE_ID = r"^[A-Za-z0-9._-]{1,128}$"
#: The timeline keeps the newest entries; an object must stay well under etcd's 1.5 MiB.
TIMELINE_LIMIT = 100
#: The Incident annotation admission writes with the user who turned ``spec.resolved`` true
#: (``manifests/admission``): the actor of the durable audit record of the resolve.
RESOLVED_BY = "reliability.center/resolved-by"


class Signal(Model):
    """One piece of detection evidence."""

    source: str = Field(max_length=253)
    name: str = Field(max_length=253)
    value: float | None = None
    threshold: float | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{1,64}$",
                                    description="Alertmanager's fingerprint: a later post updates this signal.")
    resolved: bool = Field(default=False, description="The alert behind this signal has resolved.")
    resolved_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    refires: int = Field(default=0, ge=0, description="How often the alert resolved and fired again while the "
                                                       "incident was open (the intake counts).")


class IncidentSpec(Model):
    category: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63,
                          description="perf, cross-tenant, ocr, billing, or a custom category.")
    severity: Severity
    tenant: str = Field(pattern=TENANT, max_length=63, description='The tenant concerned; "*" means all tenants.')
    module: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    summary: str = Field(default="", max_length=4096)
    trace_id: str | None = Field(default=None, pattern=TRACE_ID, description="Generated when absent.")
    signals: list[Signal] = Field(default_factory=list, max_length=50)
    runbook_ref: str | None = Field(default=None, max_length=253,
                                    description="The Runbook to use; otherwise one is matched.")
    mode: Mode = "enforce"
    resolved: bool = Field(default=False, description="Set when the cause is gone: Level 1 changes are restored.")

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("!has(oldSelf.traceId) || (has(self.traceId) && self.traceId == oldSelf.traceId)",
                    "traceId is immutable once set"),
                cel("self.tenant == oldSelf.tenant", "tenant is immutable"),
            ]
        }
    }


class Vote(Model):
    """One Approval as the operator weighed it."""

    approval: str = Field(description="The Approval object's name.")
    user: str
    decision: str
    at: str | None = None
    counted: bool
    reason: str = Field(default="", description="Why it did not count (creator, operator, not an approver, "
                                                "another plan).")


class ApprovalState(Model):
    """Where a governed step's approval stands: what is approved, by whom, what is still needed."""

    plan_digest: str | None = Field(default=None, description="The digest of the planned change: approvals name it.")
    requested_at: str | None = None
    deadline: str | None = Field(default=None, description="When the step escalates if still not approved.")
    needed: int = 1
    approved: bool = False
    approved_digest: str | None = Field(default=None, description="The plan the counted approvals were for.")
    votes: list[Vote] = Field(default_factory=list, max_length=50)
    missing: str = Field(default="", description="What is still needed, in words.")


class StepStatus(Model):
    name: str
    level: int
    action: str
    state: StepState = "Pending"
    reason: str = ""
    message: str = ""
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    targets: list[str] = Field(default_factory=list)
    snapshots: list[str] = Field(default_factory=list, description="Snapshots this step took: what resolution restores.")
    evidence: dict[str, Any] | None = free_form("What the step observed (blast radius, dry-run result...).")
    progress: dict[str, Any] | None = free_form("Where a step that waits is (the target it is on), to resume there.")
    left_out: list[str] = Field(default_factory=list, max_length=200,
                                description="Targets the step's selection matched but may not write, with why.")
    approval: ApprovalState | None = Field(default=None, description="Level 2: the plan put to approval and the "
                                                                     "approvals weighed.")


class TimelineEntry(Model):
    time: str
    event: str
    message: str = ""
    step: str | None = None
    actor: str | None = None
    target: str | None = None
    before_digest: str | None = None
    after_digest: str | None = None


GateName = Literal["audit-complete", "gateway-only", "rollback-tested", "slo-normal", "postmortem-shared"]


class Gate(Model):
    """One post-repair check (the seed's checklist), re-evaluated until it passes."""

    name: GateName
    passed: bool
    reason: str = Field(default="", description="CamelCase: why it passed or what is missing.")
    evidence: str = Field(default="", max_length=4096, description="What was checked, with what result.")
    missing: list[str] = Field(default_factory=list, max_length=50, description="The evidence that is missing.")
    checked_at: str | None = None
    passed_at: str | None = None


class PlanState(Model):
    """A PatchPlan of this incident as last seen: its phase drives the incident's."""

    name: str
    phase: str
    pull_request: str | None = None
    purpose: Literal["fix", "postmortem"] = "fix"


class Times(Model):
    detected: str | None = None
    first_action: str | None = None
    mitigated: str | None = None
    escalated: str | None = None
    resolved: str | None = None
    closed: str | None = None


class IncidentStatus(Model):
    observed_generation: int | None = None
    phase: Phase | None = None
    level: int | None = Field(default=None, description="Highest level reached so far.")
    trace_id: str | None = None
    mode: Mode | None = Field(default=None, description="The mode decided at detection (the incident's, or shadow "
                                                        "when the operator or the namespace is in shadow mode).")
    runbook: str | None = None
    runbook_generation: int | None = None
    runbook_spec: dict[str, Any] | None = free_form(
        "The Runbook's spec as matched: the incident follows it to the end, whatever later edits the Runbook gets.")
    conditions: list[Condition] = Field(default_factory=list)
    steps: list[StepStatus] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    snapshots: list[str] = Field(default_factory=list, description="Names of the snapshot ConfigMaps.")
    patch_plans: list[str] = Field(default_factory=list)
    plans: list[PlanState] = Field(default_factory=list, max_length=50,
                                   description="The PatchPlans' phases as last seen (fix and postmortem).")
    audit_log: str | None = Field(default=None, description="The ConfigMap holding this incident's durable audit "
                                                            "records (append-only; outlives Events and the timeline).")
    gates: list[Gate] = Field(default_factory=list)
    times: Times = Field(default_factory=Times)


class Incident(Model):
    api_version: str = "reliability.center/v1alpha1"
    kind: str = "Incident"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: IncidentSpec
    status: IncidentStatus | None = None
