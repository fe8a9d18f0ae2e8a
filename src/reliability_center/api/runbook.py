"""Runbook: a cluster-scoped playbook — what matches, and the ordered steps by autonomy level."""

from __future__ import annotations

from datetime import timezone as dt_timezone, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field, field_validator, model_validator

from reliability_center.api.common import DNS_LABEL, DURATION, Condition, Model, ObjectMeta, cel, free_form

Severity = Literal["critical", "high", "medium", "low", "info"]
Level = Literal[1, 2, 3]
OnFailure = Literal["continue", "stop", "escalate"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

#: Level 3 never acts on the cluster: it proposes a change in Git or hands over to a human.
LEVEL3_ACTIONS = ("patch-plan", "escalate")

ACTION_NAME = r"^[a-z][a-z0-9-]{0,62}$"
CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Match(Model):
    """Which incidents this runbook answers."""

    category: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    severities: list[Severity] = Field(default_factory=list, max_length=5,
                                       description="Empty means every severity.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Incident labels that must all be present with these values.")


class When(Model):
    """A step runs only when every condition given here holds (all are optional)."""

    signals: list[str] = Field(default_factory=list, max_length=20,
                               description="Runs when the incident carries at least one signal of these names.")
    modules: list[str] = Field(default_factory=list, max_length=20,
                               description="Runs when the incident's module is one of these.")
    severities: list[Severity] = Field(default_factory=list, max_length=5)
    labels: dict[str, str] = Field(default_factory=dict)
    safe_mode: bool | None = Field(default=None,
                                   description="Runs only when the cluster's SAFE_MODE setting equals this.")


class Freeze(Model):
    """A period in which no governed step starts, even inside its window (a release freeze, a sale)."""

    start: AwareDatetime = Field(description="RFC 3339 date-time with an offset.")
    end: AwareDatetime = Field(description="RFC 3339 date-time with an offset; the freeze lifts at this moment.")
    reason: str = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> Freeze:
        if self.end <= self.start:
            raise ValueError(f"freeze {self.reason!r} must end after it starts (start {self.start.isoformat()}, "
                             f"end {self.end.isoformat()})")
        return self


class Window(Model):
    """A daily window in which a governed step may start: clock times in a time zone, on some days, outside freezes."""

    # Wall-clock times in ``timezone``; an end before the start crosses midnight.
    start: str = Field(pattern=CLOCK)
    end: str = Field(pattern=CLOCK)
    timezone: str = Field(default="UTC", max_length=64, description="An IANA time zone name, e.g. Europe/Paris.")
    days: list[Day] = Field(default_factory=list, max_length=7,
                            description="The days on which the window starts (22:00-02:00 on fri ends Saturday 02:00); "
                                        "empty means every day.")
    freeze: list[Freeze] = Field(default_factory=list, max_length=50)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            zone(name)
        except (ZoneInfoNotFoundError, ValueError):  # ValueError: not a zone key at all (a path, empty)
            raise ValueError(f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'") from None
        return name


def zone(name: str) -> tzinfo:
    # UTC needs no time zone database: a runbook without a timezone works on an image without tzdata.
    return dt_timezone.utc if name == "UTC" else ZoneInfo(name)


class Approval(Model):
    """Level 2 governance: who must approve, how many, by when, and when the step may run.

    Approvals are ``Approval`` objects whose approver the apiserver stamps at admission
    (``engine/approvals.py`` counts them); the Incident's creator and the operator never count.
    """

    required: bool = True
    approvers: list[str] = Field(default_factory=list, max_length=20,
                                 description="Users or groups (as the apiserver authenticates them) whose approval "
                                             "counts; empty means anyone granted the approve verb on incidents.")
    min_approvals: int = Field(default=1, ge=1, le=10, description="Distinct people who must approve (M of N).")
    required_group: str | None = Field(default=None, max_length=253,
                                       description="At least one counted approver must be in this group.")
    timeout: str = Field(default="4h", pattern=DURATION,
                         description="A step still waiting for approval after this long escalates.")
    window: Window | None = None


class StepCheck(Model):
    """After a level 1 step, did its signal move as expected? Watched in the manner of an Argo Rollouts
    analysis: measured as the step starts, then every ``interval``; not improving within ``within``
    escalates the incident, with the values as evidence."""

    query: str = Field(min_length=1, max_length=4096,
                       description="PromQL; may use {{ labels.NAME }} (the alert's labels) and {{ incident.tenant }}, "
                                   "module, namespace, name. Several series: the worst is judged. Make it return a "
                                   "value even when all is well (e.g. `or vector(0)`): no series counts as no data.")
    direction: Literal["decrease", "increase"] = Field(description="Where the value should go once the step acted.")
    within: str = Field(pattern=DURATION, description="Not improved after this long (from the step's end): escalate.")
    interval: str = Field(default="10s", pattern=DURATION, description="How often the query is evaluated.")


class Step(Model):
    """One runbook step. Level 1 acts at once, level 2 is governed, level 3 goes through Git."""

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    level: Level
    action: str = Field(pattern=ACTION_NAME)
    description: str = Field(default="", max_length=1024)
    when: When | None = None
    params: dict[str, Any] | None = free_form("Action parameters, validated by the action's own model.")
    on_failure: OnFailure = "stop"
    timeout: str = Field(default="5m", pattern=DURATION)
    approval: Approval | None = None
    dry_run_first: bool = Field(default=True, description="Level 2: the step's writes are dry-run on the apiserver "
                                                          "first; the result is what an approval approves.")
    after: list[str] | None = Field(default=None, max_length=50,
                                    description="The steps this one waits for (earlier ones); unset means every "
                                                "earlier step, [] means none: a level 3 fix is not held back "
                                                "behind an unapproved level 2 step.")
    take_ownership: bool = Field(
        default=False,
        description="May change fields another field manager set (Argo CD, Helm, kubectl apply): the change is "
                    "made and audited as taken over. Without it such a step is refused and escalated.")
    check: StepCheck | None = Field(default=None, description="Level 1: the signal the step should move, watched "
                                                              "after it; not moving escalates.")

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("self.level != 1 || !has(self.approval)",
                    "approval applies to level 2 steps only: a level 1 step acts at once"),
                cel("self.level == 1 || !has(self.check)",
                    "check applies to level 1 steps only: level 2 is judged by its approvers, level 3 in Git"),
                cel("self.level != 3 || self.action in ['patch-plan', 'escalate']",
                    "a level 3 step may only open a PatchPlan or escalate: the operator never applies it"),
            ]
        }
    }


class Guard(Model):
    """A rule of the playbook that is enforced by policy rather than by a step (documented here)."""

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    description: str = Field(max_length=1024)
    enforced_by: str = Field(default="policy", max_length=253)


class Limits(Model):
    """Rate limits and guards, kept in the cluster so they survive restarts."""

    max_runs_per_hour: int = Field(default=10, ge=1, le=1000,
                                   description="Mitigations per runbook and tenant per hour.")
    cooldown: str = Field(default="0s", pattern=DURATION,
                          description="Minimum time between two mitigations for the same runbook and tenant.")
    max_isolated_tenants: int = Field(default=3, ge=1, le=1000,
                                      description="Storm guard: never isolate more tenants at once; escalate instead.")
    max_refires: int = Field(default=1, ge=0, le=100,
                             description="Ineffective remediation: re-fires of the same incident after mitigation before escalating.")


class SLOCheck(Model):
    """Post-repair gate 4: a PromQL query that must hold on the right side of a threshold for a while."""

    query: str = Field(min_length=1, max_length=4096, description="PromQL; may use {tenant}, {module}, {namespace}.")
    threshold: float
    comparison: Literal["below", "above"] = Field(default="below",
                                                  description="below: every sample under the threshold.")
    for_: str = Field(default="5m", alias="for", pattern=DURATION,
                      description="How long it must have held (a subquery over this range).")


class RunbookSpec(Model):
    match: Match
    steps: list[Step] = Field(min_length=1, max_length=50)
    limits: Limits = Field(default_factory=Limits)
    guards: list[Guard] = Field(default_factory=list, max_length=50)
    postmortem: list[str] = Field(default_factory=list, max_length=50,
                                  description="Postmortem checklist items for this category.")
    slo: SLOCheck | None = Field(default=None, description="The SLO the post-repair gate checks through Prometheus.")
    resolve_when_signals_resolve: bool = Field(
        default=False, description="Once every signal of an incident has resolved (Alertmanager says so), the "
                                   "incident is resolved and its level 1 changes restored; otherwise a person resolves.")

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("self.steps.all(s, self.steps.exists_one(t, t.name == s.name))",
                    "step names must be unique within a runbook"),
            ]
        }
    }


class RunbookStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    steps: int | None = Field(default=None, description="Number of steps, for the printer column.")
    max_level: int | None = None


class Runbook(Model):
    api_version: str = "reliability.center/v1alpha1"
    kind: str = "Runbook"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RunbookSpec
    status: RunbookStatus | None = None
