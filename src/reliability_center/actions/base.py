"""What every action shares: its context, its results, and the registry it joins.

An action resolves its targets, builds the change and verifies the result.
It never holds a writing client: it reads through ``ctx.read`` and writes
through ``ctx.apply`` / ``ctx.create``, which pass the Write Gateway and
collect the audit entries and snapshots the step runner stores in status.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from reliability_center.api.incident import Incident, StepStatus, TimelineEntry
from reliability_center.api.runbook import Limits, Step
from reliability_center.engine import templates
from reliability_center.engine.measure import Answer
from reliability_center.engine.plan import Facts
from reliability_center.gateway import Ref, WriteContext, WriteGateway
from reliability_center.policy.writes import MODULE_LABEL, ROLE_LABEL, TENANT_LABEL, Verdict


class Params(BaseModel):
    """Base of every action's parameters: camelCase keys, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    promql: ClassVar[tuple[str, ...]] = ()
    """The params (keys as the runbook writes them) that hold PromQL: a templated label value is quoted
    there as a PromQL string's content, so it cannot end the string and change the query."""


class Reader(Protocol):
    def get(self, ref: Ref) -> dict[str, Any] | None: ...
    def list(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[dict[str, Any]]: ...


class MetricsSource(Protocol):
    """Prometheus, for the steps that read the metrics they act on (``operator/prometheus.py``)."""

    def query(self, promql: str) -> Answer: ...


# -- results -----------------------------------------------------------------------------
@dataclass
class Succeeded:
    message: str = ""
    evidence: dict[str, Any] | None = None


@dataclass
class Running:
    """Progress was made (or is awaited): persist, then call again after ``retry_after`` seconds,
    or as soon as one of the ``wake_on`` objects (``Kind/namespace/name``) changes."""

    message: str = ""
    retry_after: float = 0.0
    evidence: dict[str, Any] | None = None
    wake_on: tuple[str, ...] = ()


@dataclass
class Skipped:
    reason: str
    message: str


@dataclass
class Failed:
    reason: str
    message: str


@dataclass
class Escalate:
    """Hand over to a human: a guard refused, or the step is level 3."""

    reason: str
    message: str


Result = Succeeded | Running | Skipped | Failed | Escalate


@dataclass
class Planned:
    """What a governed step will do, shown to its approvers: the approval binds to its digest."""

    changes: list[dict[str, Any]]
    """Each write: target, the written fields before (None: created) and after."""
    report: dict[str, Any] | None = None
    """What a dry-run Job reported (run-job), when the action plans that way."""


class NotAdmitted(Exception):
    """The incident's guards (rate limit, cooldown, refires) refused it while its first step read: the step
    makes no write, and its reads count for nothing."""


class OutsidePlan(Exception):
    """A governed step was about to write a target its approved plan does not name: not written."""

    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


@dataclass
class ActionContext:
    gateway: WriteGateway
    read: Reader
    incident: Incident
    write: WriteContext
    step: Step
    status: StepStatus
    limits: Limits
    facts: Facts
    action: str
    entries: list[TimelineEntry] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    """Targets the step's selection matched but may not write (another tenant's), with why."""
    planned_on: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each target written, as ``select`` listed it just before its write (``seen``), by target."""
    changes: list[dict[str, Any]] = field(default_factory=list)
    """Writes dry-run while the step is planned (shadow context): the plan approvers see."""
    approved: frozenset[str] | None = None
    """The targets of the approved plan (a governed step with an approval): a write to any other target,
    such as a later wave's fresh selection, is not made (``OutsidePlan``) and the step asks again."""
    metrics: MetricsSource | None = None
    """Prometheus (``RC_PROMETHEUS_URL``); None where the caller has none (the step then says so)."""
    admitted: Callable[[], None] | None = None
    """The first step of a new incident runs while its guards are counted (``operator/start.py``): this
    waits for their verdict before the step's first write, and raises ``NotAdmitted`` when they refuse."""

    def admit(self) -> None:
        """Before anything is written (a change, a refusal's audit record): the incident is admitted."""
        if self.admitted is not None:
            self.admitted()
            self.admitted = None  # admitted: the step's later writes need not ask again

    @property
    def namespace(self) -> str:
        return self.write.namespace

    @property
    def tenant(self) -> str:
        return self.incident.spec.tenant

    @property
    def progress(self) -> dict[str, Any]:
        """Where a step that returns ``Running`` is: kept in its status, so a restart resumes there."""
        if self.status.progress is None:
            self.status.progress = {}
        return self.status.progress

    def apply(self, desired: dict[str, Any], *, seen: dict[str, Any] | None = None,
              items: list[tuple[str, Any]] | None = None, removals: list[tuple[str, Any]] | None = None,
              restore_on_resolve: bool = True) -> str:
        """Write through the gateway; returns the outcome (applied, unchanged, dry-run, created).

        ``desired`` is a partial object: only the fields it sets are written and held.
        ``items``: (pointer, item) pairs, each one item added to the list at that pointer;
        ``removals``: each one item taken out of it (put back at its index on resolve).
        ``restore_on_resolve=False`` for changes that are not undone when the incident
        resolves (a restart marker: removing it would restart the target again).
        ``seen``: the target as just read by ``select`` (saves a read; its fields are tested).
        """
        desired.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        self._within_plan(desired)
        self.admit()
        result = self.gateway.apply(self.write, desired, action=self.action, seen=seen, items=items,
                                    removals=removals, restore=restore_on_resolve)
        if seen is not None:
            self.planned_on[result.target] = seen
        self._collect(result.target, result.entry, result.snapshot)
        if self.write.shadow:
            self.changes.append({"target": result.target, "before": result.before, "after": result.after})
        return result.outcome

    def create(self, obj: dict[str, Any]) -> str:
        obj.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        self._within_plan(obj)
        self.admit()
        result = self.gateway.create(self.write, obj, action=self.action)
        self._collect(result.target, result.entry, None)
        if self.write.shadow:
            self.changes.append({"target": result.target, "before": None, "after": result.after})
        return result.outcome

    def propose(self, plan: dict[str, Any]) -> str:
        """Level 3: create the PatchPlan (owned by the Incident); the operator never applies it."""
        plan.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        self.admit()
        result = self.gateway.propose(self.write, plan, action=self.action)
        self._collect(result.target, result.entry, None)
        return result.outcome

    def reserve_isolation(self) -> tuple[Verdict, list[str]]:
        """The storm guard: may this tenant be isolated now? Counted and reserved atomically in the cluster."""
        self.admit()
        return self.gateway.reserve_isolation(self.write, self.limits)

    def _within_plan(self, obj: dict[str, Any]) -> None:
        if self.approved is not None and not self.write.shadow and ref(obj) not in self.approved:
            raise OutsidePlan(ref(obj))

    def _collect(self, target: str, entry: TimelineEntry, snapshot: str | None) -> None:
        self.entries.append(entry)
        if snapshot and snapshot not in self.snapshots:
            self.snapshots.append(snapshot)
        if target not in self.touched:
            self.touched.append(target)

    def select(self, kind: str, role: str, modules: list[str] | None = None) -> list[dict[str, Any]]:
        """Objects of the protected app with this role, in the incident's tenant scope, sorted by name.

        Another tenant's objects are never selected (they are recorded in ``left_out``,
        which the step's status and audit report); shared objects (no tenant label) are.
        """
        selector = f"{ROLE_LABEL}={role}" + (f",{MODULE_LABEL} in ({','.join(sorted(modules))})" if modules else "")
        if not self.write.shadow:  # about to write some of them: a group commit of one waits for this step
            self.gateway.commits.selecting(self.namespace, kind, lambda labels: labels.get(ROLE_LABEL) == role and (
                not modules or labels.get(MODULE_LABEL) in modules))
        found = self.read.list(kind, self.namespace, selector)  # the apiserver filters: a big app lists little
        out = []
        for obj in found:
            labels = obj["metadata"].get("labels") or {}
            if modules and labels.get(MODULE_LABEL) not in modules:
                continue
            owner = labels.get(TENANT_LABEL)
            if owner and self.tenant != "*" and owner != self.tenant:
                if ref(obj) not in self.left_out:
                    self.left_out[ref(obj)] = f"belongs to tenant {owner!r}, not {self.tenant!r}"
                continue
            out.append(obj)
        return sorted(out, key=lambda o: o["metadata"]["name"])

    def modules(self, explicit: list[str]) -> list[str]:
        """The modules a step acts on: its params, else the incident's module (empty: all)."""
        if explicit:
            return explicit
        return [self.incident.spec.module] if self.incident.spec.module else []


def resolve_params(model: type[Params], step: Step, incident: Incident) -> Params:
    """The step's params with their templates (``{{ labels.NAME }}``) rendered from the incident's signals,
    validated by the action's model. Raises ``TemplateError`` (the step fails with its reason) or
    pydantic's ``ValidationError``."""
    ctx = templates.context(incident, step.when.signals if step.when else [])
    raw = step.params or {}
    return model.model_validate({key: templates.render(value, ctx, templates.promql_string if key in model.promql
                                                       else None) for key, value in raw.items()})


Run = Callable[[ActionContext, Any], Result]
Plan = Callable[[ActionContext, Any], "Planned | Result"]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    params: type[Params]
    levels: frozenset[int]
    run: Run
    reversible: bool
    summary: str
    needs_settings: bool
    """Reads the namespace's reliability-center-settings (SAFE_MODE, GitOps repo): fetched only then."""
    plan: Plan | None = None
    """How a governed step is planned before approval; by default its run, dry-run (``operator/planning.py``)."""


REGISTRY: dict[str, ActionSpec] = {}


def action(name: str, *, params: type[Params], levels: tuple[int, ...] = (1, 2),
           reversible: bool = True, summary: str = "", needs_settings: bool = False,
           plan: Plan | None = None) -> Callable[[Run], Run]:
    """Register an action type under ``name``; a duplicate name is a programming error."""

    def register(run: Run) -> Run:
        if name in REGISTRY:
            raise RuntimeError(f"action {name!r} registered twice")
        REGISTRY[name] = ActionSpec(name, params, frozenset(levels), _acting(run), reversible,
                                    summary or (run.__doc__ or ""), needs_settings, plan)
        return run

    return register


def _acting(run: Run) -> Run:
    """While the action runs, the objects it lists count as writes on their way (``ActionContext.select``):
    a group commit of one of them waits for it (gateway/batch.py); they stop counting when it returns."""

    @functools.wraps(run)
    def acting(ctx: ActionContext, params: Any) -> Any:
        with ctx.gateway.commits.acting():
            return run(ctx, params)

    return acting


def ref(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj.get('kind')}/{meta.get('namespace')}/{meta['name']}"


JOB_NAME_MAX = 63
"""A Job's name goes into its pods' ``batch.kubernetes.io/job-name`` label: 63 characters at most, or the
apiserver refuses the Job."""


def job_name(template: str, purpose: str, key: str) -> str:
    """``<template>-<purpose>-<key>``, the template's name cut short when the whole would not fit a label
    (the key, derived from the incident and step, keeps it distinct and deterministic)."""
    room = JOB_NAME_MAX - len(purpose) - len(key) - 2
    return f"{template[:room].rstrip('-')}-{purpose}-{key}"
