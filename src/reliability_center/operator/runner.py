"""The step runner: walks one Incident through its Runbook, one decision at a time.

Each turn asks ``engine.progress.next_decision`` (pure) what to do, runs the
step's action (which writes only through the gateway), and patches the whole
status once, with the resourceVersion read as a precondition. A crash between
an action's write and the status patch is safe: the step runs again and its
writes are idempotent (deterministic snapshots, names and markers).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from reliability_center.actions import REGISTRY
from reliability_center.actions.base import ActionContext, Escalate, Failed, Running, Skipped, Succeeded
from reliability_center.api.common import now_iso, set_condition
from reliability_center.api.incident import TIMELINE_LIMIT, Incident, IncidentStatus, StepStatus, TimelineEntry
from reliability_center.actions.validate import check_runbook
from reliability_center.api.common import Condition
from reliability_center.api.runbook import Runbook, RunbookStatus
from reliability_center.engine.matching import match_runbook
from reliability_center.engine.plan import Facts, plan
from reliability_center.engine.progress import AwaitStep, Finish, RestoreStep, RunStep, highest_level, next_decision
from reliability_center.gateway import Kube, PolicyDenied, Ref, WriteContext, WriteGateway
from reliability_center.gateway import records
from reliability_center.gateway.kube import Conflict, Invalid, NotFound, namespace_terminating, transient
from reliability_center.operator import metrics
from reliability_center.operator.settings import SETTINGS_CONFIGMAP, Settings
from reliability_center.policy import limits as guard

log = logging.getLogger("reliability_center.runner")

TERMINAL = {"Closed", "Failed"}


class Stale(Exception):
    """The Incident changed under us: stop; the next event brings the fresh state."""


class StepRunner:
    def __init__(self, kube: Kube, settings: Settings, sleep=time.sleep, clock=time.monotonic):
        self.kube = kube
        self.gateway = WriteGateway(kube)
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self._runbooks: dict[tuple[str, str | None], Runbook | None] = {}
        #: Guard ConfigMaps as last written (saves a read per admission; checked by resourceVersion).
        self.guards_seen: dict[tuple[str, str], dict[str, Any]] = {}

    # -- entry point ---------------------------------------------------------------
    def reconcile(self, body: dict[str, Any], runbooks: list[dict[str, Any]], attempts: int = 5) -> None:
        """Reconcile until a turn ends without meeting a newer version of the Incident.

        A status patch that meets a newer resourceVersion means our copy was stale;
        rather than count on another watch event, read the Incident again and retry.
        A transient apiserver error (overload, connection reset) is retried with
        backoff the same way: Kopf does not retry event handlers.
        """
        ref = Ref("Incident", body["metadata"]["namespace"], body["metadata"]["name"])
        delay = 0.2
        for attempt in range(attempts):
            try:
                Turn(self, body, runbooks).run()
                return
            except Stale as exc:
                log.info("incident %s changed during reconcile (%s); reading it again", ref.name, exc)
            except Exception as exc:
                if namespace_terminating(exc):
                    log.info("namespace %s is being deleted; incident %s left as it is", ref.namespace, ref.name)
                    return
                if not transient(exc) or attempt == attempts - 1:
                    raise
                log.warning("incident %s: transient apiserver error (%s); retrying in %.1fs", ref.name, exc, delay)
                self.sleep(delay)
                delay = min(delay * 2, 5.0)
            fresh = self.kube.get(ref)
            if fresh is None:
                return
            body = fresh

    def parse_runbook(self, raw: dict[str, Any]) -> Runbook | None:
        """Parsed and validated once per resourceVersion: every turn reads every runbook.

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
            self._runbooks[key] = runbook
            if len(self._runbooks) > 1000:
                self._runbooks.pop(next(iter(self._runbooks)))
        return self._runbooks[key]

    def facts(self, namespace: str, runbook: Runbook) -> Facts:
        """SAFE_MODE and the GitOps settings — read only when a step of the runbook needs them."""
        needed = any(REGISTRY[s.action].needs_settings or (s.when is not None and s.when.safe_mode is not None)
                     for s in runbook.spec.steps if s.action in REGISTRY)
        if not needed:
            return Facts(now=now_iso(), safe_mode=self.settings.safety.safe_mode)
        cm = self.kube.get(Ref("ConfigMap", namespace, SETTINGS_CONFIGMAP))
        settings = (cm or {}).get("data") or {}
        safe = settings.get("SAFE_MODE")
        return Facts(now=now_iso(), safe_mode=(safe.lower() == "true") if safe else self.settings.safety.safe_mode,
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

    # -- status helpers ----------------------------------------------------------------
    def condition(self, type_: str, status: str, reason: str, message: str = "") -> None:
        self.status.conditions = set_condition(self.status.conditions, type_, status, reason, message,  # type: ignore[arg-type]
                                               self.generation)

    def note(self, event: str, message: str = "", step: str | None = None) -> None:
        self.status.timeline.append(TimelineEntry(time=now_iso(), event=event, message=message[:1024], step=step))

    def phase(self, phase: str) -> None:
        if self.status.phase != phase:
            self.status.phase = phase  # type: ignore[assignment]
            metrics.INCIDENT_PHASES.labels(self.incident.spec.category, phase).inc()
            self.note(f"phase:{phase}")

    def save(self) -> None:
        self.status.timeline = self.status.timeline[-TIMELINE_LIMIT:]
        self.status.level = highest_level(self.status.steps)
        self.status.observed_generation = self.generation
        wire = self.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        try:
            updated = records.patch_status(self.runner.kube, self.ref, wire, self.rv)
        except (Conflict, NotFound) as exc:
            raise Stale(str(exc)) from None
        self.rv = updated["metadata"]["resourceVersion"]
        self.body = {**self.body, "metadata": updated["metadata"]}

    # -- the walk --------------------------------------------------------------------
    def run(self) -> None:
        if self.status.phase in TERMINAL:
            return
        runbook = self.start()
        if runbook is None:
            return
        facts = self.runner.facts(self.ref.namespace, runbook)  # type: ignore[arg-type]
        if not self.status.steps:
            self.status.steps = plan(self.incident, runbook, facts)
            self.admit(runbook, facts)
            self.phase("Mitigating")
            # Not saved yet: the plan is deterministic, and the first step's status
            # patch carries it; one round trip less before the first Level 1 write.
        while True:
            decision = next_decision(self.incident, runbook, self.status, now_iso())
            if isinstance(decision, RunStep):
                self.run_step(runbook, decision.index, facts)
            elif isinstance(decision, RestoreStep):
                self.restore_step(decision.index)
            elif isinstance(decision, AwaitStep):
                self.await_step(decision)
                return
            else:
                self.finish(decision, runbook)
                return

    def start(self) -> Runbook | None:
        """Trace id and runbook: the first status the Incident gets."""
        changed = False
        if not self.status.trace_id:
            # Derived from the uid, not random: a turn that crashes before saving it
            # must find the same trace id (restart markers and audit names use it).
            self.status.trace_id = self.incident.spec.trace_id or self.body["metadata"]["uid"].replace("-", "")
            self.status.times.detected = now_iso()
            self.phase("Detected")
            changed = True
        parsed = [rb for rb in map(self.runner.parse_runbook, self.runbooks) if rb is not None]
        if not self.status.runbook:
            match = match_runbook(self.incident, parsed)
            if match.runbook is None:
                self.condition("Matched", "False", match.reason, match.message)
                self.condition("Ready", "False", match.reason, match.message)
                self.save()
                return None
            self.status.runbook = match.runbook.metadata.name
            self.condition("Matched", "True", match.reason, match.message)
            self.note("matched", match.message)
            changed = True
        runbook = next((rb for rb in parsed if rb.metadata.name == self.status.runbook), None)
        if runbook is None:
            self.condition("Ready", "False", "RunbookNotFound", f"Runbook {self.status.runbook!r} was deleted")
            self.save()
            return None
        if changed and self.status.steps:
            self.save()
        return runbook

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
            return guard.record(state, guard.Admission(uid, facts.now, print_))

        if spec.mode == "shadow":
            self.condition("Admitted", "True", "Shadow", "shadow mode: guards not counted")
            return
        records.update_guards(self.runner.kube, self.ref.namespace, runbook.metadata.name, change,  # type: ignore[arg-type]
                              self.runner.guards_seen)
        if verdict.allowed:
            self.condition("Admitted", "True", "Allowed", "within rate limits and cooldowns")
            return
        self.condition("Admitted", "False", verdict.reason, verdict.message)
        for step in self.status.steps:
            if step.state == "Pending":
                step.state, step.reason, step.message = "Skipped", verdict.reason, "not run: " + verdict.message

    # -- one step ---------------------------------------------------------------------
    def run_step(self, runbook: Runbook, index: int, facts: Facts) -> None:
        status = self.status.steps[index]
        step = next(s for s in runbook.spec.steps if s.name == status.name)
        spec = REGISTRY[step.action]
        now = now_iso()
        if status.state in ("Pending", "AwaitingApproval"):
            status.state, status.started_at, status.reason = "Running", status.started_at or now, ""
            self.note("step:started", f"{step.action} (level {step.level})", step.name)
        status.attempts += 1
        write = WriteContext(incident=self.body, trace_id=self.status.trace_id or "", tenant=self.incident.spec.tenant,
                             step=step.name, level=step.level, shadow=self.incident.spec.mode == "shadow")
        ctx = ActionContext(gateway=self.runner.gateway, read=self.runner.kube, incident=self.incident, write=write,
                            step=step, status=status, limits=runbook.spec.limits, facts=facts, action=step.action,
                            clock=self.runner.clock, sleep=self.runner.sleep)
        started = self.runner.clock()
        retry_after = 0.0
        try:
            params = spec.params.model_validate(step.params or {})
            result = spec.run(ctx, params)
        except PolicyDenied as denied:
            ctx.entries.append(denied.entry)
            result = Failed(denied.verdict.reason, denied.verdict.message)
            status.state = "Blocked"
        except (Invalid, NotFound, ValidationError) as exc:
            result = Failed("InvalidChange", str(exc)[:1024])
        metrics.STEP_SECONDS.labels(step.action).observe(self.runner.clock() - started)
        self.status.timeline.extend(ctx.entries)
        for entry in ctx.entries:
            metrics.WRITES.labels(step.action, (entry.event or ":").split(":", 1)[1]).inc()
        status.snapshots += [s for s in ctx.snapshots if s not in status.snapshots]
        self.status.snapshots += [s for s in ctx.snapshots if s not in self.status.snapshots]
        status.targets += [t for t in ctx.touched if t not in status.targets]
        shadow = self.incident.spec.mode == "shadow"
        if isinstance(result, Succeeded):
            status.state = "Shadowed" if shadow else "Succeeded"
            status.message, status.evidence, status.finished_at = result.message, result.evidence, now_iso()
        elif isinstance(result, Running):
            status.message, status.evidence = result.message, result.evidence or status.evidence
            retry_after = result.retry_after
            if self.timed_out(step.timeout, status):
                status.state, status.reason = "Failed", "Timeout"
                status.message = f"did not finish within {step.timeout}: {result.message}"
        elif isinstance(result, Skipped):
            status.state, status.reason, status.message = "Skipped", result.reason, result.message
            status.finished_at = now_iso()
        elif isinstance(result, Escalate):
            status.state, status.reason, status.message = "Escalated", result.reason, result.message
            status.finished_at = now_iso()
            self.status.times.escalated = self.status.times.escalated or now_iso()
            if step.action == "patch-plan":
                self.status.patch_plans += [t.split("/")[-1] for t in ctx.touched
                                            if t.startswith("PatchPlan/") and t.split("/")[-1] not in self.status.patch_plans]
        else:
            if status.state != "Blocked":
                status.state = "Failed"
            status.reason, status.message, status.finished_at = result.reason, result.message, now_iso()
        if status.state != "Running":
            metrics.STEP_RESULTS.labels(step.action, status.state).inc()
            self.note(f"step:{status.state}", status.message, step.name)
        self.save()
        if retry_after:
            self.runner.sleep(retry_after)

    def timed_out(self, timeout: str, status: StepStatus) -> bool:
        if not status.started_at:
            return False
        started = datetime.fromisoformat(status.started_at.replace("Z", "+00:00"))
        return (datetime.now(timezone.utc) - started).total_seconds() > guard.seconds(timeout)

    def restore_step(self, index: int) -> None:
        status = self.status.steps[index]
        write = WriteContext(incident=self.body, trace_id=self.status.trace_id or "", tenant=self.incident.spec.tenant,
                             step=status.name, level=status.level)
        if self.status.phase != "Verifying":
            self.status.times.resolved = self.status.times.resolved or now_iso()
            self.phase("Verifying")
        conflicts = []
        for snapshot in reversed(status.snapshots):
            try:
                result = self.runner.gateway.restore(write, snapshot, action=f"restore:{status.action}")
            except NotFound as exc:
                conflicts.append(f"{snapshot}: {exc}")
                continue
            if result.entry:
                self.status.timeline.append(result.entry)
            conflicts += [f"{result.target}{p}" for p in result.conflicts]
        status.state = "Restored"
        status.reason = "RestoreConflict" if conflicts else "Restored"
        status.message = ("not restored, changed by someone else since: " + ", ".join(conflicts)) if conflicts \
            else f"{len(status.snapshots)} snapshots restored"
        self.note("step:Restored", status.message, status.name)
        if conflicts:
            self.condition("RestoreConflicts", "True", "ChangedSinceMitigation", status.message)
        self.save()

    def await_step(self, decision: AwaitStep) -> None:
        status = self.status.steps[decision.index]
        if status.state == decision.state and status.reason == decision.reason:
            return
        status.state, status.reason, status.message = decision.state, decision.reason, decision.message  # type: ignore[assignment]
        self.note(f"step:{decision.state}", decision.message, status.name)
        self.condition("AwaitingApproval", "True", decision.reason, decision.message)
        self.mark_mitigated_if_level1_done()
        self.save()

    def mark_mitigated_if_level1_done(self) -> None:
        level1 = [s for s in self.status.steps if s.level == 1]
        if all(s.state not in ("Pending", "Running") for s in level1) and self.status.phase == "Mitigating":
            self.status.times.mitigated = self.status.times.mitigated or now_iso()
            self.phase("Mitigated")

    def finish(self, decision: Finish, runbook: Runbook) -> None:
        before = self.status.model_dump()
        if decision.phase == "Mitigated":
            self.status.times.mitigated = self.status.times.mitigated or now_iso()
        if decision.phase == "Escalated":
            self.status.times.escalated = self.status.times.escalated or now_iso()
            self.condition("Escalated", "True", decision.reason, decision.message)
        if decision.phase in ("Mitigated", "Escalated") and self.status.phase != decision.phase \
                and self.incident.spec.mode != "shadow" \
                and not any(c.type == "Admitted" and c.status == "False" for c in self.status.conditions):
            uid = self.body["metadata"]["uid"]
            records.update_guards(self.runner.kube, self.ref.namespace, runbook.metadata.name,  # type: ignore[arg-type]
                                  lambda state: guard.mark_mitigated(state, uid), self.runner.guards_seen)
        self.condition("AwaitingApproval", "False", "NothingAwaiting", "")
        ready = decision.phase in ("Mitigated", "Escalated", "Verifying")
        self.condition("Ready", "True" if ready else "False", decision.reason, decision.message)
        self.phase(decision.phase)
        if self.status.model_dump() != before:
            self.save()
