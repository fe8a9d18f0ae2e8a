"""The step runner: walks one Incident through its pinned Runbook, one decision at a time.

Each turn asks ``engine.progress.next_decision`` (pure) what to do, runs the
step's action (which writes only through the gateway), and patches the whole
status once per step, with the resourceVersion read as a precondition. A step
that waits (a rollout to settle, a window to open) returns; ``reconcile``
answers how long until it wants another look, and the work queue calls it
again then: no thread is held while something is awaited.

A crash between an action's write and the status patch is safe: the step runs
again and its writes are idempotent (holds named after deterministic
snapshots; deterministic names and markers). Errors never leave an incident
silently stuck: they are retried with backoff, and those that are not passing
conflicts or apiserver hiccups are written to its ``Reconciling`` condition
with the time of the next attempt.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from reliability_center.actions import REGISTRY
from reliability_center.actions.patch_plan import repository_from
from reliability_center.actions.base import ActionContext, Escalate, Failed, OutsidePlan, Running, Skipped, Succeeded
from reliability_center.actions.validate import check_runbook
from reliability_center.api.common import Condition, now_iso, set_condition
from reliability_center.api.incident import (RESOLVED_BY, TIMELINE_LIMIT, ApprovalState, Gate, Incident, IncidentStatus,
                                             PlanState, StepStatus, TimelineEntry)
from reliability_center.api.patchplan import ROLLBACK_REQUESTED_BY
from reliability_center.api.runbook import Runbook, RunbookStatus, Step
from reliability_center.engine import gates as verdicts
from reliability_center.engine.approvals import ASKED_AGAIN, Acknowledgement, ask_again, planned_targets
from reliability_center.engine.matching import match_runbook
from reliability_center.engine.plan import Facts, plan
from reliability_center.engine.progress import (AwaitStep, Finish, RestoreStep, RunStep, highest_level, next_decision,
                                                waiting_phase)
from reliability_center.gateway import Kube, PolicyDenied, Ref, WriteContext, WriteGateway, audit, records
from reliability_center.gateway.kube import (KINDS, Conflict, Fenced, Invalid, NotFound, describe,
                                             namespace_terminating, transient)
from reliability_center.gateway.tracking import ARGO_NAMESPACE
from reliability_center.gitops import argocd
from reliability_center.operator import closing, governance, metrics
from reliability_center.operator.admission import AdmissionCheck
from reliability_center.operator.settings import SETTINGS_CONFIGMAP, Settings
from reliability_center.operator.workqueue import Echoes, Retry, Wakes
from reliability_center.policy import limits as guard
from reliability_center.policy.writes import Verdict

log = logging.getLogger("reliability_center.runner")

#: Seconds before the first retry of a failed turn, doubling up to the second; a passing error (the
#: apiserver away, a conflict) doubles only up to the third, so that an outage's end is seen soon.
BACKOFF = (0.2, 60.0, 5.0)
#: Failed turns in a row before a passing error (a conflict, an apiserver hiccup) is written to status.
QUIET_FAILURES = 3
RETRY_REASON = "ProgressingWithRetry"
#: Incidents whose failures in a row are remembered at most (the oldest failing first forgotten: it
#: restarts its backoff from 0.2 s).
FAILURES_KEPT = 10000


def seconds_since(moment: str) -> float:
    return (datetime.now(timezone.utc) - datetime.fromisoformat(moment.replace("Z", "+00:00"))).total_seconds()


#: A PatchPlan's forward path: a plan seen Verified went through Merged and Synced, even if no pass saw them.
PLAN_PATH = ("Pending", "Proposed", "Merged", "Synced", "Verified", "RollingBack", "RolledBack")
#: Phases of a plan whose pull request was merged (its merge is audited on the way into them).
MERGED_OR_LATER = frozenset(PLAN_PATH[2:])


def passed_through(last: str | None, now: str) -> list[str]:
    """The phases a plan went through since it was last seen (the last one included)."""
    if now in PLAN_PATH and (last is None or last in PLAN_PATH) and (last is None or
                                                                     PLAN_PATH.index(last) < PLAN_PATH.index(now)):
        start = PLAN_PATH.index(last) + 1 if last else PLAN_PATH.index("Proposed")
        return list(PLAN_PATH[min(start, PLAN_PATH.index(now)):PLAN_PATH.index(now) + 1])
    return [now]


def planned_of(status: StepStatus) -> dict[str, Any]:
    """The plan a governed step showed its approvers: kept in its evidence once it runs."""
    return {k: v for k, v in (status.evidence or {}).items() if k == "plan"}


class Stale(Exception):
    """The Incident changed under us: read it again and take another turn."""


def retryable(exc: BaseException) -> bool:
    """A passing error: someone wrote first, or the apiserver was briefly away."""
    return isinstance(exc, (Conflict, Stale)) or transient(exc)


class StepRunner:
    def __init__(self, kube: Kube, settings: Settings):
        self.kube = kube
        self.gateway = WriteGateway(kube, settings.safety.operator_namespace)
        self.settings = settings
        self._runbooks: dict[tuple[str, Any], Runbook | None] = {}
        #: Guard ConfigMaps as last written (saves a read per admission; checked by resourceVersion).
        self.guards_seen: dict[Any, dict[str, Any]] = {}
        #: Failed turns in a row per incident uid: the retry backoff. Memory only, and that is enough:
        #: a restarted operator lists every Incident and reconciles each at once. Forgotten when the
        #: incident is deleted (``forget``), and bounded, for a deletion that races a failing pass.
        self.failures: dict[str, int] = {}
        self.echoes = Echoes()
        self.wakes = Wakes()
        self._identity: str | None = None
        #: Whether the apiserver vouches for approvals: no vote counts while it does not.
        self.admission = AdmissionCheck(kube, settings.admission.namespace, self.identity, settings.admission.every)

    def forget(self, uid: str) -> None:
        """The incident is gone: nothing of it is kept."""
        self.failures.pop(uid, None)

    def identity(self) -> str:
        """The user the operator writes as: its approvals never count (separation of duties)."""
        if self._identity is None:
            self._identity = str(self.kube.whoami().get("username") or "")
        return self._identity

    # -- entry point ---------------------------------------------------------------
    def reconcile(self, body: dict[str, Any], runbooks: list[dict[str, Any]]) -> float | None:
        """One reconcile; returns the seconds until another is wanted (None: at the next change)."""
        ref = Ref("Incident", body["metadata"]["namespace"], body["metadata"]["name"])
        uid = body["metadata"]["uid"]
        try:
            wake = self._turns(ref, body, runbooks)
        except Exception as exc:
            if namespace_terminating(exc):
                log.info("namespace %s is being deleted; incident %s left as it is", ref.namespace, ref.name)
                return None
            if isinstance(exc, Fenced):
                return BACKOFF[0]  # leadership lapsed mid-pass: the queue waits for it, nothing to report
            failures = self.failures.pop(uid, 0) + 1
            self.failures[uid] = failures  # newest last: the oldest go first past FAILURES_KEPT
            while len(self.failures) > FAILURES_KEPT:
                self.failures.pop(next(iter(self.failures)))
            delay = min(BACKOFF[0] * 2 ** min(failures - 1, 20), BACKOFF[2] if retryable(exc) else BACKOFF[1])
            if retryable(exc):
                log.warning("incident %s/%s: %s (attempt %d); retrying in %.1fs", ref.namespace, ref.name,
                            describe(exc), failures, delay)
            else:
                log.exception("incident %s/%s: reconcile failed (attempt %d); retrying in %.1fs",
                              ref.namespace, ref.name, failures, delay)
            if not retryable(exc) or failures >= QUIET_FAILURES:
                self._report(ref, exc, failures, delay)
            return Retry(delay)
        self.failures.pop(uid, None)
        return wake

    def _turns(self, ref: Ref, body: dict[str, Any], runbooks: list[dict[str, Any]]) -> float | None:
        for _ in range(5):
            try:
                return Turn(self, body, runbooks).run()
            except Stale as exc:
                log.info("incident %s changed during reconcile (%s); reading it again", ref.name, exc)
            fresh = self.kube.get(ref)
            if fresh is None:
                return None
            body = fresh
        raise Stale("the incident kept changing during five turns")

    def _report(self, ref: Ref, exc: BaseException, failures: int, delay: float) -> None:
        """Write the error and the next attempt's time to the Incident, so it is never stuck without a word."""
        at = (datetime.now(timezone.utc) + timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{describe(exc)}; attempt {failures} failed, next attempt at {at}"
        try:
            current = self.kube.get(ref)
            if current is None:
                return
            conditions = [Condition.model_validate(c) for c in (current.get("status") or {}).get("conditions") or []]
            conditions = set_condition(conditions, "Reconciling", "True", RETRY_REASON, message,
                                       current["metadata"].get("generation"))
            updated = records.patch_status(self.kube, ref, {"conditions": [c.wire() for c in conditions]},
                                           current["metadata"]["resourceVersion"])
            # Its echo is not news: without this, each report would wake the incident again at once.
            self.echoes.wrote(updated["metadata"]["uid"], updated["metadata"]["resourceVersion"])
        except Exception as report_error:  # the apiserver may be what failed: the retry is scheduled anyway
            log.warning("could not record the error on incident %s: %s", ref.name, report_error)

    # -- runbooks --------------------------------------------------------------------
    def parse_runbook(self, raw: dict[str, Any]) -> Runbook | None:
        """Parsed and validated once per resourceVersion: every match reads every runbook.

        Readiness is decided here, by the same checks the runbook handler runs, not
        read from the Ready condition: a runbook fresh from the watch may not carry
        that condition yet, and an incident must not miss it for that.
        """
        key = (raw["metadata"]["name"], raw["metadata"].get("resourceVersion"))
        if key not in self._runbooks:
            try:
                runbook = Runbook.model_validate({k: v for k, v in raw.items() if k != "status"})
            except ValidationError:
                runbook = None  # the runbook handler reports it NotReady
            if runbook is not None:
                ready = "False" if check_runbook(runbook.spec) else "True"
                runbook.status = RunbookStatus(conditions=[Condition(type="Ready", status=ready, reason="Checked")])
            self._cache(key, runbook)
        return self._runbooks[key]

    def pinned(self, status: IncidentStatus) -> Runbook:
        """The runbook as it was when the incident matched it (one spec per name and generation)."""
        key = ("pinned", status.runbook, status.runbook_generation)
        if key not in self._runbooks:
            self._cache(key, Runbook.model_validate({"metadata": {"name": status.runbook,
                                                                  "generation": status.runbook_generation},
                                                     "spec": status.runbook_spec}))
        return self._runbooks[key]  # type: ignore[return-value]

    def _cache(self, key: tuple[str, Any], runbook: Runbook | None) -> None:
        self._runbooks[key] = runbook
        if len(self._runbooks) > 1000:
            self._runbooks.pop(next(iter(self._runbooks)))

    def namespace_settings(self, namespace: str) -> dict[str, str]:
        """The namespace's reliability-center-settings ConfigMap (SAFE_MODE, mode, the GitOps repository)."""
        return (self.kube.get(Ref("ConfigMap", namespace, SETTINGS_CONFIGMAP)) or {}).get("data") or {}

    def facts(self, namespace: str, runbook: Runbook, first: bool) -> Facts:
        """SAFE_MODE, shadow mode and the GitOps settings of the namespace.

        Read on an incident's first turn (its mode is decided then, once) and when a
        step of the runbook needs them; not on every turn.
        """
        needed = first or any(REGISTRY[s.action].needs_settings or (s.when is not None and s.when.safe_mode is not None)
                              for s in runbook.spec.steps if s.action in REGISTRY)
        safety = self.settings.safety
        if not needed:
            return Facts(now=now_iso(), safe_mode=safety.safe_mode, shadow=safety.shadow)
        settings = self.namespace_settings(namespace)
        safe = settings.get("SAFE_MODE")
        return Facts(now=now_iso(), safe_mode=(safe.lower() == "true") if safe else safety.safe_mode,
                     shadow=safety.shadow or settings.get("mode", "").strip().lower() == "shadow",
                     settings=settings)


class Turn:
    """One reconcile of one Incident."""

    def __init__(self, runner: StepRunner, body: dict[str, Any], runbooks: list[dict[str, Any]]):
        self.runner = runner
        self.body = body
        self.runbooks = runbooks
        self.incident = Incident.model_validate(body)
        self.status = self.incident.status or IncidentStatus()
        self.ref = Ref("Incident", body["metadata"]["namespace"], body["metadata"]["name"])
        self.rv = body["metadata"].get("resourceVersion")
        self.generation = body["metadata"].get("generation")
        self.held: dict[str, list[str]] = {}
        """Once resolved: the snapshots this incident took, by step."""
        self.seen = self.status.model_dump()
        """The status as read: a turn that changed nothing writes nothing."""
        self.decided: list[Callable[[], None]] = []
        """Metrics of this turn's decisions, recorded once the status holding them is saved."""

    @property
    def shadow(self) -> bool:
        return self.status.mode == "shadow"

    # -- status helpers ----------------------------------------------------------------
    def condition(self, type_: str, status: str, reason: str, message: str = "") -> None:
        self.status.conditions = set_condition(self.status.conditions, type_, status, reason, message,  # type: ignore[arg-type]
                                               self.generation)

    def note(self, event: str, message: str = "", step: str | None = None) -> None:
        self.status.timeline.append(TimelineEntry(time=now_iso(), event=event, message=message[:1024], step=step))

    def count(self, record: Callable[[], None]) -> None:
        """A metric of a decision (a phase, a step's result, a gate): recorded when the status that holds
        the decision is saved, so a turn redone after a conflict does not count it twice."""
        self.decided.append(record)

    def phase(self, phase: str) -> None:
        if self.shadow and phase in ("Mitigated", "Escalated"):
            phase = "Shadowed"  # nothing was changed: it would have been mitigated or escalated
        if self.status.phase != phase:
            self.status.phase = phase  # type: ignore[assignment]
            category = self.incident.spec.category
            self.count(metrics.INCIDENT_PHASES.labels(category, phase).inc)
            self.note(f"phase:{phase}")
            since = {"Mitigated": metrics.TIME_TO_MITIGATE, "Closed": metrics.TIME_TO_CLOSE}.get(phase)
            if since is not None and self.status.times.detected:
                seconds = seconds_since(self.status.times.detected)
                self.count(lambda: since.labels(category).observe(seconds))

    def save(self) -> None:
        self.status.timeline = self.status.timeline[-TIMELINE_LIMIT:]
        self.status.level = highest_level(self.status.steps)
        self.status.observed_generation = self.generation
        if any(c.type == "Reconciling" and c.status == "True" for c in self.status.conditions):
            self.condition("Reconciling", "False", "Succeeded", "the last turn completed")
        wire = self.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        try:
            updated = records.patch_status(self.runner.kube, self.ref, wire, self.rv)
        except (Conflict, NotFound) as exc:
            raise Stale(str(exc)) from None
        self.rv = updated["metadata"]["resourceVersion"]
        self.runner.echoes.wrote(updated["metadata"]["uid"], self.rv)
        self.body = {**self.body, "metadata": updated["metadata"]}
        self.seen = self.status.model_dump()
        for record in self.decided:
            record()
        self.decided.clear()

    def act(self, actor: str, action: str, target: str, outcome: str, message: str) -> None:
        """A person's act on the incident (its resolve, a merge, a rollback request), by whom the apiserver
        or the forge says: a durable audit record, not only a timeline entry (the timeline keeps 100)."""
        record = audit.AuditRecord(self.status.trace_id or "", self.incident.spec.tenant, actor, action, target, "",
                                   None, None, outcome, message[:1024])
        self.status.timeline.append(audit.emit(self.runner.kube, self.body, record, durable=not self.shadow))

    def mark_resolved(self) -> None:
        """Resolved from now (once): when, and who turned ``spec.resolved`` true, as admission stamped it."""
        if self.status.times.resolved:
            return
        self.status.times.resolved = now_iso()
        who = (self.body["metadata"].get("annotations") or {}).get(RESOLVED_BY)
        self.act(who or "unknown", "resolve", str(self.ref), "resolved",
                 f"spec.resolved set by {who}" if who else
                 f"spec.resolved set; by whom is unknown: no {RESOLVED_BY} annotation (the admission policy "
                 "reliability-center-incident-resolver that stamps it is not installed)")

    def write_context(self, step: str, level: int, take_ownership: bool = False) -> WriteContext:
        return WriteContext(incident=self.body, trace_id=self.status.trace_id or "", tenant=self.incident.spec.tenant,
                            step=step, level=level, shadow=self.shadow, take_ownership=take_ownership)

    # -- the walk --------------------------------------------------------------------
    def run(self) -> float | None:
        """Take decisions until one waits; returns the seconds until another look is due."""
        resolved = self.incident.spec.resolved
        if self.status.phase == "Closed" or (self.status.phase == "Failed" and not resolved):
            return None
        if self.status.phase == "Verifying":
            return self.verify()
        runbook = self.start()
        if runbook is None:
            return self.verify() if self.status.phase == "Verifying" else None
        if not resolved and self.signals_resolved(runbook):
            resolved = True
        if self.status.patch_plans:
            self.follow_plans()
        first = self.status.mode is None
        facts = self.runner.facts(self.ref.namespace, runbook, first)
        if first:
            self.status.mode = "shadow" if self.incident.spec.mode == "shadow" or facts.shadow else "enforce"
        if not self.status.steps:
            self.status.steps = plan(self.incident, runbook, facts)
            self.admit(runbook, facts)
            self.phase("Mitigating")
            # Not saved yet: the plan is deterministic, and the first step's status
            # patch carries it; one round trip less before the first Level 1 write.
        # Resolved: what to restore is read from the cluster (snapshots by incident), not from status.
        self.held = self.runner.gateway.snapshots(self.write_context("", 1)) if resolved else {}
        if resolved and not any(s.state == "Restored" for s in self.status.steps):
            # Just before the restore, every inverse is dry-run again: a level 2 step may have written
            # since mitigation, and a change made since then by someone else shows here.
            self.rehearse(self.held, again=True)
        reviewed: set[int] = set()
        while True:
            decision = next_decision(self.incident, runbook, self.status, now_iso(), set(self.held))
            if isinstance(decision, (RunStep, AwaitStep)) and decision.index not in reviewed and \
                    self.under_review(runbook, decision.index):
                # A governed step is planned (and its approvals weighed) each turn before it runs or waits.
                reviewed.add(decision.index)
                outcome = governance.review(self, runbook, decision.index, facts)
                if outcome.outcome is governance.Outcome.PLANNING:
                    if self.status.model_dump() != self.seen:
                        self.save()
                    return outcome.wake_in
                if outcome.outcome is governance.Outcome.DECIDE:
                    continue
                if isinstance(decision, AwaitStep) and decision.reason in ("ApprovalRequired", "PlanChanged"):
                    decision = dataclasses.replace(decision, wake_in=outcome.wake_in)
            if isinstance(decision, RunStep):
                wait = self.run_step(runbook, decision.index, facts)
                if wait:
                    return wait
            elif isinstance(decision, RestoreStep):
                self.restore_step(decision.index)
            elif isinstance(decision, AwaitStep):
                self.await_step(decision)
                return decision.wake_in
            else:
                self.finish(decision, runbook)
                return self.verify() if self.status.phase == "Verifying" else None

    def under_review(self, runbook: Runbook, index: int) -> bool:
        status = self.status.steps[index]
        step = next((s for s in runbook.spec.steps if s.name == status.name), None)
        return step is not None and status.state in ("Pending", "AwaitingApproval") and governance.governed(step)

    def start(self) -> Runbook | None:
        """Trace id and the pinned runbook: the first status the Incident gets."""
        changed = False
        if not self.status.trace_id:
            # Derived from the uid, not random: a turn that crashes before saving it
            # must find the same trace id (restart markers and audit names use it).
            self.status.trace_id = self.incident.spec.trace_id or self.body["metadata"]["uid"].replace("-", "")
            self.status.times.detected = now_iso()
            self.status.audit_log = audit.log_name(self.body["metadata"]["uid"])
            self.phase("Detected")
            changed = True
        if self.status.runbook_spec is None:
            found = self.match()
            if found is None:
                return None
            # Pinned: the incident follows this spec to its end, whatever edits the Runbook gets later.
            self.status.runbook = found.metadata.name
            self.status.runbook_generation = found.metadata.generation
            self.status.runbook_spec = found.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
            changed = True
        runbook = self.runner.pinned(self.status)
        if changed and self.status.steps:
            self.save()
        return runbook

    def match(self) -> Runbook | None:
        parsed = [rb for rb in map(self.runner.parse_runbook, self.runbooks) if rb is not None]
        if self.status.runbook:  # matched before runbooks were pinned: pin the one it named
            found = next((rb for rb in parsed if rb.metadata.name == self.status.runbook), None)
            if found is None:
                self.condition("Ready", "False", "RunbookNotFound", f"Runbook {self.status.runbook!r} was deleted")
                self.save()
            return found
        match = match_runbook(self.incident, parsed)
        if match.runbook is None:
            self.condition("Matched", "False", match.reason, match.message)
            self.condition("Ready", "False", match.reason, match.message)
            if self.incident.spec.resolved:
                self.mark_resolved()
                self.phase("Verifying")  # nothing was done: nothing to restore
            self.save()
            return None
        self.condition("Matched", "True", match.reason, match.message)
        self.note("matched", match.message)
        return match.runbook

    def admit(self, runbook: Runbook, facts: Facts) -> None:
        """Rate limit, cooldown and ineffective-remediation guards, with their state in the cluster."""
        spec, uid = self.incident.spec, self.body["metadata"]["uid"]
        print_ = guard.fingerprint(spec.category, spec.tenant, spec.module)
        verdict = guard.Verdict(True)

        def change(state: guard.GuardState) -> guard.GuardState:
            nonlocal verdict
            verdict = guard.admit(state, runbook.spec.limits, incident_uid=uid, tenant=spec.tenant, print_=print_,
                                  now=facts.now)
            if not verdict.allowed:
                return state
            return guard.record(state, guard.Admission(uid, facts.now, print_), guard.retention(runbook.spec.limits))

        if self.shadow:
            self.condition("Admitted", "True", "Shadow", "shadow mode: guards not counted")
            return
        records.update_guards(self.runner.kube, self.ref.namespace, runbook.metadata.name, spec.tenant, change,
                              self.runner.guards_seen)
        if verdict.allowed:
            self.condition("Admitted", "True", "Allowed", "within rate limits and cooldowns")
            return
        self.condition("Admitted", "False", verdict.reason, verdict.message)
        for step in self.status.steps:
            if step.state == "Pending":
                step.state, step.reason, step.message = "Skipped", verdict.reason, "not run: " + verdict.message

    # -- one step ---------------------------------------------------------------------
    def run_step(self, runbook: Runbook, index: int, facts: Facts) -> float:
        """Run (or continue) one step; returns the seconds to wait before calling it again (0: go on)."""
        status = self.status.steps[index]
        step = next(s for s in runbook.spec.steps if s.name == status.name)
        spec = REGISTRY[step.action]
        now = now_iso()
        if status.state in ("Pending", "AwaitingApproval"):
            status.state, status.started_at, status.reason = "Running", status.started_at or now, ""
            self.note("step:started", f"{step.action} (level {step.level})", step.name)
        status.attempts += 1
        write = self.write_context(step.name, step.level, step.take_ownership)
        # An approved step writes only what its approved plan shows: a target outside it asks again.
        approved = planned_targets((status.evidence or {}).get("plan")) if step.approval and step.approval.required \
            else None
        ctx = ActionContext(gateway=self.runner.gateway, read=self.runner.kube, incident=self.incident, write=write,
                            step=step, status=status, limits=runbook.spec.limits, facts=facts, action=step.action,
                            approved=approved)
        before = status.model_dump()
        timeline = len(self.status.timeline)
        clock = datetime.now(timezone.utc)
        wait = 0.0
        try:
            params = spec.params.model_validate(step.params or {})
            result = spec.run(ctx, params)
        except PolicyDenied as denied:
            # Refused by policy (protected data, another incident's hold): a human takes over.
            ctx.entries.append(denied.entry)
            self.count(metrics.REFUSALS.labels(denied.verdict.reason).inc)
            result = Escalate(denied.verdict.reason, denied.verdict.message)
            status.state = "Blocked"
        except (Invalid, NotFound, ValidationError) as exc:
            result = Failed("InvalidChange", str(exc)[:1024])
        except OutsidePlan as outside:
            # The writes before it (in the plan) were made: kept as any step's are.
            self.status.timeline.extend(ctx.entries)
            status.snapshots += [s for s in ctx.snapshots if s not in status.snapshots]
            self.status.snapshots += [s for s in ctx.snapshots if s not in self.status.snapshots]
            status.targets += [t for t in ctx.touched if t not in status.targets]
            self.plan_moved(step, status, outside.target)
            return 0.0
        took = (datetime.now(timezone.utc) - clock).total_seconds()
        self.count(lambda: metrics.STEP_SECONDS.labels(step.action).observe(took))
        self.report_left_out(ctx, status)
        self.status.timeline.extend(ctx.entries)
        for entry in ctx.entries:
            outcome = (entry.event or ":").split(":", 1)[1]
            self.count(metrics.WRITES.labels(step.action, outcome).inc)
            if outcome in ("applied", "created", "proposed") and not self.status.times.first_action:
                self.status.times.first_action = entry.time
                if self.status.times.detected:
                    seconds = seconds_since(self.status.times.detected)
                    self.count(lambda: metrics.TIME_TO_FIRST_ACTION.labels(self.incident.spec.category).observe(
                        seconds))
        self.warn_self_heal(ctx)
        status.snapshots += [s for s in ctx.snapshots if s not in status.snapshots]
        self.status.snapshots += [s for s in ctx.snapshots if s not in self.status.snapshots]
        status.targets += [t for t in ctx.touched if t not in status.targets]
        if isinstance(result, Succeeded):
            status.state = "Shadowed" if self.shadow else "Succeeded"
            status.message, status.finished_at = result.message, now_iso()
            status.evidence = {**planned_of(status), **(result.evidence or {})}
        elif isinstance(result, Running):
            status.message = result.message
            status.evidence = {**planned_of(status), **result.evidence} if result.evidence else status.evidence
            wait = result.retry_after
            for target in result.wake_on:
                self.runner.wakes.wait_on(target, (self.ref.namespace, self.ref.name))
            if self.timed_out(step.timeout, status):
                status.state, status.reason = "Failed", "Timeout"
                status.message = f"did not finish within {step.timeout}: {result.message}"
                wait = 0.0
        elif isinstance(result, Skipped):
            status.state, status.reason, status.message = "Skipped", result.reason, result.message
            status.finished_at = now_iso()
        elif isinstance(result, Escalate):
            if status.state != "Blocked":
                status.state = "Escalated"
            status.reason, status.message, status.finished_at = result.reason, result.message, now_iso()
            self.status.times.escalated = self.status.times.escalated or now_iso()
            if step.action == "patch-plan":
                self.status.patch_plans += [t.split("/")[-1] for t in ctx.touched
                                            if t.startswith("PatchPlan/") and t.split("/")[-1] not in self.status.patch_plans]
        else:
            status.state = "Failed"
            status.reason, status.message, status.finished_at = result.reason, result.message, now_iso()
        if status.state != "Running":
            self.count(metrics.STEP_RESULTS.labels(step.action, str(step.level), status.state).inc)
            self.note(f"step:{status.state}", status.message, step.name)
        # A step that is only being polled (nothing new) is not saved again: fewer writes while it waits.
        changed = status.model_dump(exclude={"attempts"}) != {k: v for k, v in before.items() if k != "attempts"}
        if changed or len(self.status.timeline) != timeline or status.state != "Running":
            self.save()
        return wait

    def plan_moved(self, step: Step, status: StepStatus, target: str) -> None:
        """The approved step reached a write its plan did not show: back to AwaitingApproval, its rest planned
        again (``governance.review``, next in this turn) and approved again."""
        state = status.approval or ApprovalState()
        why = ask_again(target, state.approved_digest)
        status.approval = ApprovalState(needed=state.needed)  # no plan, no votes: review plans the rest afresh
        status.evidence = {**(status.evidence or {}), ASKED_AGAIN: why}
        status.state, status.reason, status.message = "AwaitingApproval", "PlanChanged", why  # type: ignore[assignment]
        self.note("plan:changed", why, step.name)
        self.condition("AwaitingApproval", "True", "PlanChanged", f"step {step.name!r}: {why}")
        self.save()

    def warn_self_heal(self, ctx: ActionContext) -> None:
        """A write on an object an Argo CD Application syncs, without what lets it hold (gitops/argocd.py):
        said in a condition and the timeline, not refused (the change is made; self-heal may undo it)."""
        written = {e.target for e in ctx.entries if e.target and (e.event or "").endswith((":applied", ":created"))}
        for target in sorted(written):
            kind, namespace, name = target.split("/", 2)
            if kind not in KINDS:
                continue
            obj = self.runner.kube.get(Ref(kind, namespace, name))
            problem = argocd.check(self.runner.kube, obj, ARGO_NAMESPACE) if obj else None
            if problem:
                self.condition("SelfHealSafe", "False", "IgnoreDifferencesMissing", problem)
                self.note("argocd:will-revert", problem, ctx.step.name)

    def report_left_out(self, ctx: ActionContext, status: StepStatus) -> None:
        """Targets the step's selection matched but may not write: in its status, and audited once each."""
        for target, why in ctx.left_out.items():
            line = f"{target}: {why}"
            if line in status.left_out or len(status.left_out) >= 200:
                continue
            status.left_out.append(line)
            ctx.entries.append(self.runner.gateway.refuse(
                ctx.write, ctx.action, target, Verdict(False, "TenantScope", f"left out: {why}")))

    def timed_out(self, timeout: str, status: StepStatus) -> bool:
        if not status.started_at:
            return False
        started = datetime.fromisoformat(status.started_at.replace("Z", "+00:00"))
        return (datetime.now(timezone.utc) - started).total_seconds() > guard.seconds(timeout)

    def restore_step(self, index: int) -> None:
        status = self.status.steps[index]
        write = self.write_context(status.name, status.level)
        if self.status.phase != "Verifying":
            self.mark_resolved()
        conflicts, kept, refused, lost = [], [], [], []
        snapshots = self.held.get(status.name, [])
        for snapshot in reversed(snapshots):
            try:
                result = self.runner.gateway.restore(write, snapshot, action=f"restore:{status.action}")
            except NotFound as exc:
                conflicts.append(f"{snapshot}: {exc}")
                continue
            except PolicyDenied as denied:  # a snapshot naming a target this incident may not write
                self.status.timeline.append(denied.entry)
                metrics.REFUSALS.labels(denied.verdict.reason).inc()
                refused.append(denied.verdict)
                continue
            if result.entry:
                self.status.timeline.append(result.entry)
            conflicts += [f"{result.target}{p}" for p in result.conflicts]
            kept += [f"{result.target}{p}" for p in result.kept]
            lost += [f"{result.target}{p}" for p in result.lost]
        status.state = "Restored"
        status.reason = refused[0].reason if refused else "HoldLost" if lost else "RestoreConflict" if conflicts \
            else "Restored"
        parts = [f"{len(snapshots) - len(refused)} snapshots restored"]
        if refused:
            parts.insert(0, f"{len(refused)} refused: " + "; ".join(v.message for v in refused))
        if kept:
            parts.append("kept for other open incidents: " + ", ".join(kept))
        if conflicts:
            parts.append("not restored, changed by someone else since: " + ", ".join(conflicts))
        if lost:
            parts.append("not restored, still at the value the step set but its hold annotation was removed "
                         "(nobody can tell any more whether it is still needed): " + ", ".join(lost))
        status.message = "; ".join(parts)[:1024]
        self.note("step:Restored", status.message, status.name)
        if refused:
            self.condition("RestoreRefused", "True", refused[0].reason, status.message)
        if conflicts:
            self.condition("RestoreConflicts", "True", "ChangedSinceMitigation", status.message)
        if lost:
            self.condition("HoldLost", "True", "HoldAnnotationRemoved", status.message)
        self.save()

    def await_step(self, decision: AwaitStep) -> None:
        status = self.status.steps[decision.index]
        if status.state == decision.state and status.reason == decision.reason and status.message == decision.message:
            if self.status.model_dump() != self.seen:
                self.save()  # votes weighed, a plan made: nothing new to say in the timeline
            return
        status.state, status.reason, status.message = decision.state, decision.reason, decision.message  # type: ignore[assignment]
        self.note(f"step:{decision.state}", decision.message, status.name)
        self.condition("AwaitingApproval", "True", decision.reason, decision.message)
        outcome = waiting_phase(self.status.steps)
        if outcome and self.status.phase == "Mitigating":
            self.reached(self.fix_outcome(outcome))
        self.save()

    def reached(self, outcome: Finish) -> None:
        """The incident reached a phase: its times, its Escalated and Ready conditions say so."""
        if outcome.phase in ("Mitigated", "Escalated"):
            self.rehearse()
        ready = outcome.phase in ("Mitigated", "Escalated", "Verifying")
        self.condition("Ready", "True" if ready else "False", outcome.reason, outcome.message)
        if outcome.phase == "Mitigated":
            self.status.times.mitigated = self.status.times.mitigated or now_iso()
        if outcome.phase == "Escalated":
            self.status.times.escalated = self.status.times.escalated or now_iso()
            self.condition("Escalated", "True", outcome.reason, outcome.message)
        self.phase(outcome.phase)

    def finish(self, decision: Finish, runbook: Runbook) -> None:
        before = self.status.model_dump()
        if decision.phase == "Verifying":
            self.mark_resolved()
            if any(s.action == "isolate-tenant" for s in runbook.spec.steps):
                self.runner.gateway.release_isolation(self.write_context("", 1))
        if decision.phase in ("Mitigated", "Escalated") and self.status.phase != decision.phase and not self.shadow \
                and not any(c.type == "Admitted" and c.status == "False" for c in self.status.conditions):
            uid = self.body["metadata"]["uid"]
            records.update_guards(self.runner.kube, self.ref.namespace, runbook.metadata.name,
                                  self.incident.spec.tenant, lambda state: guard.mark_mitigated(state, uid),
                                  self.runner.guards_seen)
        self.condition("AwaitingApproval", "False", "NothingAwaiting", "")
        self.reached(self.fix_outcome(decision))
        if self.status.model_dump() != before:
            self.save()

    # -- after mitigation: PatchPlans, rollback rehearsal, resolution, the gates -----------
    def follow_plans(self, raw: list[dict[str, Any]] | None = None) -> None:
        """The incident's PatchPlans as they are now: each change of phase in the timeline."""
        if raw is None:
            raw = closing.plans_of(self.runner.kube, self.ref.namespace, self.ref.name)
        states = closing.plan_states(raw)
        seen = {p.name: p.phase for p in self.status.plans}
        bodies = {p["metadata"]["name"]: p for p in raw}
        for plan in states:
            if seen.get(plan.name) != plan.phase:
                link = f": {plan.pull_request}" if plan.pull_request else ""
                for phase in passed_through(seen.get(plan.name), plan.phase):
                    self.note(f"patchplan:{phase}", f"{plan.purpose} PatchPlan {plan.name}{link}")
                self.plan_acts(bodies[plan.name], plan, seen.get(plan.name))
        self.status.plans = states
        fixes = [p for p in states if p.purpose == "fix"]
        undone = [p for p in fixes if p.phase in ("Rejected", "RolledBack", "Failed")]
        if undone:
            self.condition("FixDeployed", "False", f"PatchPlan{undone[0].phase}",
                           f"PatchPlan {undone[0].name} is {undone[0].phase}: the level 3 fix is not deployed")
        elif fixes and all(p.phase == "Verified" for p in fixes):
            self.condition("FixDeployed", "True", "FixVerified",
                           "the level 3 fix was merged, synced and its revert verified")

    def plan_acts(self, body: dict[str, Any], plan: PlanState, was: str | None) -> None:
        """The people behind a PatchPlan's new phase: who merged its pull request (the forge's word), who
        asked for its rollback (admission's stamp), who merged the revert."""
        status, target = body.get("status") or {}, f"PatchPlan/{self.ref.namespace}/{plan.name}"
        pr, revert = status.get("pullRequest") or {}, status.get("revert") or {}
        if pr.get("mergeCommit") and was not in MERGED_OR_LATER:
            self.act(pr.get("mergedBy") or "unknown", "merge", target, "merged",
                     f"{plan.purpose} pull request {pr.get('url')} merged on the forge by "
                     f"{pr.get('mergedBy') or 'a user the forge did not name'} as {pr['mergeCommit'][:12]}")
        if plan.phase in ("RollingBack", "RolledBack") and was not in ("RollingBack", "RolledBack") \
                and (body.get("spec") or {}).get("rollback"):
            who = (body["metadata"].get("annotations") or {}).get(ROLLBACK_REQUESTED_BY)
            self.act(who or "unknown", "rollback", target, "rollback-requested",
                     f"revert of {plan.purpose} PatchPlan {plan.name} requested by {who}" if who else
                     f"revert of {plan.purpose} PatchPlan {plan.name} requested; by whom is unknown: no "
                     f"{ROLLBACK_REQUESTED_BY} annotation (admission policy reliability-center-rollback-requester)")
        if plan.phase == "RolledBack" and was != "RolledBack" and revert.get("mergeCommit"):
            self.act(revert.get("mergedBy") or "unknown", "merge-revert", target, "merged",
                     f"revert pull request {revert.get('url')} merged on the forge by "
                     f"{revert.get('mergedBy') or 'a user the forge did not name'} as {revert['mergeCommit'][:12]}")

    def fix_outcome(self, outcome: Finish) -> Finish:
        """An incident escalated only to propose its fix through Git is mitigated once that fix is Verified."""
        if outcome.phase != "Escalated" or not any(c.type == "FixDeployed" and c.status == "True"
                                                   for c in self.status.conditions):
            return outcome
        escalations = [s for s in self.status.steps if s.state in ("Escalated", "Blocked")]
        if all(s.state == "Escalated" and s.action == "patch-plan" for s in escalations):
            self.condition("Escalated", "False", "FixVerified", "the proposed fix was merged and verified")
            return Finish("Mitigated", "FixVerified", "the level 3 fix was merged, synced and verified")
        return outcome

    def rehearse(self, held: dict[str, list[str]] | None = None, again: bool = False) -> None:
        """Gate 3's evidence: dry-run every inverse on the apiserver, once mitigated (and again at the
        resolve), before it is needed."""
        if self.shadow or not self.status.snapshots:
            return  # nothing written (status lists every snapshot a step reported)
        if not again and any(c.type == "RollbackTested" for c in self.status.conditions):
            return
        if held is None:
            held = self.runner.gateway.snapshots(self.write_context("", 1))
        snapshots = [s for name in held for s in held[name]]
        if not snapshots:
            return
        ok, message = closing.rehearse(self.runner.gateway, self.write_context("rollback-test", 1), snapshots)
        self.condition("RollbackTested", "True" if ok else "False", "DryRunApplies" if ok else "DryRunRefused",
                       message)
        self.note("rollback:tested" if ok else "rollback:refused", message)

    def signals_resolved(self, runbook: Runbook) -> bool:
        """The runbook resolves its incidents when every alert behind them has resolved: say so in the spec."""
        signals = self.incident.spec.signals
        if not runbook.spec.resolve_when_signals_resolve or not signals or not all(s.resolved for s in signals):
            return False
        body = {k: v for k, v in self.body.items() if k != "status"}
        try:  # an update as read (resourceVersion): the role grants update on incidents, not patch
            updated = records.replace(self.runner.kube, {**body, "metadata": {**body["metadata"], "resourceVersion": self.rv},
                                                         "spec": {**body["spec"], "resolved": True}})
        except (Conflict, NotFound) as exc:
            raise Stale(str(exc)) from None
        self.rv = updated["metadata"]["resourceVersion"]
        self.body = {**self.body, "metadata": updated["metadata"]}
        self.generation = updated["metadata"].get("generation")
        self.incident.spec.resolved = True
        self.note("resolved", f"every one of its {len(signals)} signals resolved: runbook "
                              f"{runbook.metadata.name} resolves the incident (resolveWhenSignalsResolve)")
        return True

    def verify(self) -> float | None:
        """Resolved: evaluate the post-repair gates; Closed when all pass. Returns when to look again."""
        if self.shadow:
            return None  # nothing was changed: nothing to verify
        start = self.status.model_dump()
        before = {g.name: (g.passed, g.reason) for g in self.status.gates}
        runbook = self.runner.pinned(self.status) if self.status.runbook_spec else None
        kube = self.runner.kube
        raw = closing.plans_of(kube, self.ref.namespace, self.ref.name)
        self.follow_plans(raw)
        error = ""
        acknowledgement = None
        proposed = any(p.purpose == "postmortem" for p in self.status.plans)
        settings = {} if proposed else self.runner.namespace_settings(self.ref.namespace)
        if not proposed and repository_from(settings) is None:
            error = closing.unproposable(self.ref.name, self.ref.namespace)  # no draft to render: no gates twice
            # No pull request to merge: a person's acknowledgement of where it was shared closes the gate.
            acknowledgement = closing.acknowledgement(kube, self.runner.admission, self.body,
                                                      self.status.times.resolved, self.runner.identity())
            counted = acknowledgement.counted
            if counted is not None and before.get("postmortem-shared") != (True, "PostmortemAcknowledged"):
                self.act(counted.user, "postmortem-shared", f"Approval/{self.ref.namespace}/{counted.name}",
                         "counted", f"postmortem shared at {counted.shared_at}")
        elif not proposed:
            self.status.gates = self.gates(runbook, "")  # the draft shows the gates as they stand
            records_ = audit.read_log(kube, self.ref.namespace, self.body["metadata"]["uid"])
            draft = {**self.body, "spec": self.incident.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
                     "status": self.status.model_dump(by_alias=True, exclude_none=True, mode="json")}
            error = closing.propose_postmortem(self.runner.gateway, self.write_context("postmortem", 3), draft,
                                               settings, raw, records_)
            if not error:
                self.note("postmortem:proposed", f"PatchPlan {self.ref.name}-postmortem")
                self.follow_plans(closing.plans_of(kube, self.ref.namespace, self.ref.name))
        self.status.gates = self.gates(runbook, error, acknowledgement)
        for gate in self.status.gates:
            if before.get(gate.name) != (gate.passed, gate.reason):
                self.count(metrics.GATES.labels(gate.name, str(gate.passed).lower()).inc)
                self.note(f"gate:{gate.name}", f"{'passed' if gate.passed else 'failing'} ({gate.reason}): "
                                               f"{gate.evidence}")
        if verdicts.all_passed(self.status.gates):
            self.status.times.closed = now_iso()
            self.condition("Closed", "True", "GatesPassed", "every post-repair gate passed")
            self.condition("Ready", "True", "Closed", "closed: every post-repair gate passed")
            self.phase("Closed")
            self.save()
            return None
        failing = [g for g in self.status.gates if not g.passed]
        self.condition("Closed", "False", "GatesFailing",
                       "; ".join(f"{g.name}: {g.reason}" for g in failing)[:1024])
        if self.status.model_dump() != start:
            self.save()
        # Only the SLO and a field left by a lost hold (a person puts it back) change on their own;
        # PatchPlan changes wake the incident.
        by_name = {g.name: g for g in self.status.gates}
        recheck = not by_name["slo-normal"].passed or by_name["rollback-tested"].reason == "HoldLost"
        return self.runner.settings.gates.interval if recheck else None

    def gates(self, runbook: Runbook | None, postmortem_error: str,
              acknowledgement: Acknowledgement | None = None) -> list[Gate]:
        obs = closing.observe(self.runner.kube, self.status, self.incident, self.body, runbook, self.status.plans,
                              self.runner.settings.gates.prometheus_url, postmortem_error, acknowledgement)
        return verdicts.carried(self.status.gates, verdicts.evaluate(obs), now_iso())
