"""The step runner: walks one Incident through its pinned Runbook, one decision at a time.

Each turn reads the Incident into a ``Draft`` (``operator/draft.py``: the status being built, written
whole once, at the turn's end, with the resourceVersion read as a precondition) and hands it to one module
per phase of the incident's life: ``start`` (trace id, the pinned runbook, the guards),
``follow_plans`` (its PatchPlans), ``mitigate`` (the step loop: ``govern`` reviews a Level 2 step,
``step`` runs one), ``restore`` (resolved: rehearse and restore), ``close`` (the post-repair gates).
Each asks ``engine/`` (pure) for its decisions; actions write only through the gateway. A step
that waits (a rollout to settle, a window to open) returns; ``reconcile`` answers how long until it
wants another look, and the work queue calls it again then: no thread is held while something is
awaited.

One status write per turn, at its end: no status write has to precede an effect outside the Incident,
because a turn cut off before its write (a crash, a conflict, a lost lease) is taken again whole with
the same effects. Every effect is idempotent: writes hold their fields under the snapshot's
deterministic name and find themselves holding them (``gateway/writes.py``); audit Events and durable
records (a turn's records appended in one write at its end, before the status: ``audit.one_append``; a
turn its incident is resolved before is not taken again, and its restore records the writes it finds
landed that no status reported: ``restore.restore_step``), Jobs, PatchPlans and restart markers have
deterministic names; the guard and isolation ledgers are keyed by the incident's uid; a restore finds
its holds gone and the values back. The other order matters once: the guards' mitigated mark is written
before the status that says Mitigated (``mitigate.finish``). What a first turn decides from what it
read, the Runbook pinned and the mode, its redo may decide otherwise (a Runbook edited, or the namespace
put in shadow mode, between a crash and the redo): the first status write came after the first step's
writes before this one-write turn too. Errors never leave an incident silently stuck: they are retried
with backoff, and those that are not passing conflicts or apiserver hiccups are written to its
``Reconciling`` condition with the time of the next attempt.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from reliability_center.actions import REGISTRY
from reliability_center.actions.validate import check_runbook
from reliability_center.api.common import Condition, now_iso, set_condition
from reliability_center.api.incident import IncidentStatus
from reliability_center.api.runbook import Runbook, RunbookStatus
from reliability_center.engine.plan import Facts, plan
from reliability_center.gateway import Kube, Ref, WriteGateway, audit, records
from reliability_center.gateway.kube import Conflict, Fenced, describe, namespace_terminating, transient
from reliability_center.operator import close, mitigate, restore, start
from reliability_center.operator.admission import AdmissionCheck
from reliability_center.operator.draft import Draft, Stale
from reliability_center.operator.follow_plans import follow_plans
from reliability_center.operator.prometheus import Prometheus
from reliability_center.operator.settings import SETTINGS_CONFIGMAP, Settings
from reliability_center.operator.workqueue import Echoes, Retry, Wakes

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
        #: Threads for a new incident's guard compare-and-swap, made while its first step reads (start.py):
        #: one per reconcile thread, so that none waits on another's.
        self.side = ThreadPoolExecutor(settings.watch.workers, thread_name_prefix="rc-guards")
        #: Failed turns in a row per incident uid: the retry backoff. Memory only, and that is enough:
        #: a restarted operator lists every Incident and reconciles each at once. Forgotten when the
        #: incident is deleted (``forget``), and bounded, for a deletion that races a failing pass.
        self.failures: dict[str, int] = {}
        self.echoes = Echoes()
        self.wakes = Wakes()
        self._identity: str | None = None
        #: Whether the apiserver vouches for approvals: no vote counts while it does not.
        self.admission = AdmissionCheck(kube, settings.admission.namespace, self.identity, settings.admission.every)
        #: Prometheus, for the steps that read the metrics they act on (blast-radius, a step's check).
        self.prometheus = Prometheus(settings.gates.prometheus_url)

    def forget(self, uid: str) -> None:
        """The incident is gone: nothing of it is kept."""
        self.failures.pop(uid, None)

    def identity(self) -> str:
        """The user the operator writes as: its approvals never count (separation of duties)."""
        if self._identity is None:
            self._identity = str(self.kube.whoami().get("username") or "")
        return self._identity

    # -- entry point ---------------------------------------------------------------
    def reconcile(self, body: dict[str, Any], runbooks: list[dict[str, Any]],
                  settings: dict[str, str] | None = None) -> float | None:
        """One reconcile; returns the seconds until another is wanted (None: at the next change).

        ``settings``: the namespace's settings ConfigMap as the watch has it (None: read it when needed)."""
        ref = Ref("Incident", body["metadata"]["namespace"], body["metadata"]["name"])
        uid = body["metadata"]["uid"]
        try:
            wake = self._turns(ref, body, runbooks, settings)
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

    def _turns(self, ref: Ref, body: dict[str, Any], runbooks: list[dict[str, Any]],
               settings: dict[str, str] | None) -> float | None:
        for _ in range(5):
            try:
                draft = Draft(self.kube, self.echoes, body)
                # The turn's durable audit records in one write, before its status (gateway/audit.py):
                # two writes, two records, one request.
                with audit.one_append(self.kube, body):
                    wake = turn(self, draft, runbooks, settings)
                draft.flush()  # the turn's one status write
                return wake
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

    def namespace_settings(self, namespace: str, known: dict[str, str] | None = None) -> dict[str, str]:
        """The namespace's reliability-center-settings ConfigMap (SAFE_MODE, mode, the GitOps repository):
        ``known``, as the operator's watch has it, else read."""
        if known is not None:
            return known
        return (self.kube.get(Ref("ConfigMap", namespace, SETTINGS_CONFIGMAP)) or {}).get("data") or {}

    def facts(self, namespace: str, runbook: Runbook, first: bool, known: dict[str, str] | None = None) -> Facts:
        """SAFE_MODE, shadow mode and the GitOps settings of the namespace (``known``: as the watch has them).

        Needed on an incident's first turn (its mode is decided then, once) and when a
        step of the runbook needs them; not on every turn.
        """
        needed = first or any(REGISTRY[s.action].needs_settings or (s.when is not None and s.when.safe_mode is not None)
                              for s in runbook.spec.steps if s.action in REGISTRY)
        safety = self.settings.safety
        if not needed:
            return Facts(now=now_iso(), safe_mode=safety.safe_mode, shadow=safety.shadow)
        settings = self.namespace_settings(namespace, known)
        safe = settings.get("SAFE_MODE")
        return Facts(now=now_iso(), safe_mode=(safe.lower() == "true") if safe else safety.safe_mode,
                     shadow=safety.shadow or settings.get("mode", "").strip().lower() == "shadow",
                     settings=settings)


def turn(runner: StepRunner, draft: Draft, runbooks: list[dict[str, Any]],
         settings: dict[str, str] | None = None) -> float | None:
    """One reconcile of one Incident: each phase in turn until one waits; returns the seconds until another
    look is due. ``settings``: the namespace's, as the watch has them (None: read when needed)."""
    resolved = draft.incident.spec.resolved
    if draft.status.phase == "Closed" or (draft.status.phase == "Failed" and not resolved):
        return None
    if draft.status.phase == "Verifying":
        return verify(runner, draft, settings)
    runbook = start.start(draft, runbooks, runner.parse_runbook, runner.pinned)
    if runbook is None:
        return verify(runner, draft, settings) if draft.status.phase == "Verifying" else None
    if not resolved and restore.signals_resolved(draft, runner.kube, runbook):
        resolved = True
    if draft.status.patch_plans:
        follow_plans(draft, runner.kube)
    first = draft.status.mode is None
    facts = runner.facts(draft.ref.namespace, runbook, first, settings)
    if first:
        draft.status.mode = "shadow" if draft.incident.spec.mode == "shadow" or facts.shadow else "enforce"
    # Resolved: what to restore is read from the cluster (snapshots by incident), not from status.
    held = runner.gateway.snapshots(draft.write_context("", 1)) if resolved else {}
    if resolved and not any(s.state == "Restored" for s in draft.status.steps):
        # Just before the restore, every inverse is dry-run again: a level 2 step may have written
        # since mitigation, and a change made since then by someone else shows here.
        restore.rehearse(draft, runner.gateway, held, again=True)
    admitting = None
    if not draft.status.steps:
        draft.status.steps = plan(draft.incident, runbook, facts)
        # Counted while the first step reads (the walk hands it the verdict to wait on before writing).
        admitting = start.admit(draft, runner.kube, runner.guards_seen, runbook, facts, runner.side)
        draft.phase("Mitigating")
        # Not written yet: the plan is deterministic, and the turn's one status write
        # carries it; one round trip less before the first Level 1 write.
    try:
        walked = mitigate.walk(draft, runbook, facts, held, kube=runner.kube, gateway=runner.gateway,
                               wakes=runner.wakes, admission=runner.admission, identity=runner.identity,
                               guards_seen=runner.guards_seen, prometheus=runner.prometheus, admitting=admitting)
    finally:
        if admitting is not None:
            admitting.wait()
    if not walked.finished:
        return walked.wake_in
    return verify(runner, draft, settings) if draft.status.phase == "Verifying" else None


def verify(runner: StepRunner, draft: Draft, settings: dict[str, str] | None) -> float | None:
    return close.verify(draft, pinned=runner.pinned, kube=runner.kube, gateway=runner.gateway,
                        admission=runner.admission, identity=runner.identity,
                        namespace_settings=lambda namespace: runner.namespace_settings(namespace, settings),
                        settings=runner.settings.gates)
