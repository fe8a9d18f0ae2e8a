"""Phase: Detected → Mitigating. The first status an Incident gets: its trace id, the Runbook it
matched (``engine/matching.py``), pinned for the rest of its life, and the guards that admit its
steps or skip them (``policy/limits.py``: rate limits, cooldowns, ineffective remediation).

The guards' compare-and-swap is made on a side thread while the first step reads (``Admitting``):
the step's first write waits for the verdict, so a refused incident writes nothing, and the reads
and the swap, each a round trip, are made at once rather than one after the other."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from reliability_center.actions.base import NotAdmitted
from reliability_center.api.common import now_iso
from reliability_center.api.incident import IncidentStatus
from reliability_center.api.runbook import Runbook
from reliability_center.engine.matching import match_runbook
from reliability_center.engine.plan import Facts
from reliability_center.gateway import Kube, audit, records
from reliability_center.operator.draft import Draft
from reliability_center.policy import limits as guard


def start(draft: Draft, runbooks: list[dict[str, Any]], parse: Callable[[dict[str, Any]], Runbook | None],
          pinned: Callable[[IncidentStatus], Runbook]) -> Runbook | None:
    """Trace id and the pinned runbook: the first status the Incident gets (written with the rest of the turn)."""
    if not draft.status.trace_id:
        # Derived from the uid, not random: a turn that crashes before saving it
        # must find the same trace id (restart markers and audit names use it).
        draft.status.trace_id = draft.incident.spec.trace_id or draft.body["metadata"]["uid"].replace("-", "")
        draft.status.times.detected = now_iso()
        draft.status.audit_log = audit.log_name(draft.body["metadata"]["uid"])
        draft.phase("Detected")
    if draft.status.runbook_spec is None:
        found = match(draft, [rb for rb in map(parse, runbooks) if rb is not None])
        if found is None:
            return None
        # Pinned: the incident follows this spec to its end, whatever edits the Runbook gets later.
        draft.status.runbook = found.metadata.name
        draft.status.runbook_generation = found.metadata.generation
        draft.status.runbook_spec = found.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    return pinned(draft.status)


def match(draft: Draft, parsed: list[Runbook]) -> Runbook | None:
    if draft.status.runbook:  # matched before runbooks were pinned: pin the one it named
        found = next((rb for rb in parsed if rb.metadata.name == draft.status.runbook), None)
        if found is None:
            draft.condition("Ready", "False", "RunbookNotFound", f"Runbook {draft.status.runbook!r} was deleted")
        return found
    match = match_runbook(draft.incident, parsed)
    if match.runbook is None:
        draft.condition("Matched", "False", match.reason, match.message)
        draft.condition("Ready", "False", match.reason, match.message)
        if draft.incident.spec.resolved:
            draft.mark_resolved()
            draft.phase("Verifying")  # nothing was done: nothing to restore
        return None
    draft.condition("Matched", "True", match.reason, match.message)
    draft.note("matched", match.message)
    return match.runbook


class Admitting:
    """A new incident's guards being counted: their compare-and-swap in flight on a side thread."""

    def __init__(self, verdict: Future[guard.Verdict]):
        self._verdict = verdict
        self._settled = False

    def gate(self) -> None:
        """Before the first step's first write: wait for the verdict (its error, if the swap failed);
        refused, nothing is written (``NotAdmitted``)."""
        verdict = self._verdict.result()
        if not verdict.allowed:
            raise NotAdmitted(verdict.message)

    def refused(self) -> bool:
        return not self._verdict.result().allowed

    def settle(self, draft: Draft) -> None:
        """The verdict in the Draft, once, by the turn's own thread: the Admitted condition and, refused,
        every step not run yet skipped with the reason."""
        if self._settled:
            return
        verdict = self._verdict.result()
        self._settled = True
        if verdict.allowed:
            draft.condition("Admitted", "True", "Allowed", "within rate limits and cooldowns")
            return
        draft.condition("Admitted", "False", verdict.reason, verdict.message)
        for step in draft.status.steps:
            if step.state == "Pending":
                step.state, step.reason, step.message = "Skipped", verdict.reason, "not run: " + verdict.message

    def wait(self) -> None:
        """A turn that ends otherwise (an error) lets its swap finish first: none outlives its turn."""
        with contextlib.suppress(Exception):
            self._verdict.result()


def admit(draft: Draft, kube: Kube, guards_seen: dict[Any, dict[str, Any]], runbook: Runbook, facts: Facts,
          pool: Executor) -> Admitting | None:
    """Rate limit, cooldown and ineffective-remediation guards, with their state in the cluster: counted on
    ``pool`` (None: nothing to count, shadow mode)."""
    spec, uid = draft.incident.spec, draft.body["metadata"]["uid"]
    print_ = guard.fingerprint(spec.category, spec.tenant, spec.module)
    if draft.shadow:
        draft.condition("Admitted", "True", "Shadow", "shadow mode: guards not counted")
        return None

    def count() -> guard.Verdict:
        verdict = guard.Verdict(True)

        def change(state: guard.GuardState) -> guard.GuardState:
            nonlocal verdict
            verdict = guard.admit(state, runbook.spec.limits, incident_uid=uid, tenant=spec.tenant, print_=print_,
                                  now=facts.now)
            if not verdict.allowed:
                return state
            return guard.record(state, guard.Admission(uid, facts.now, print_), guard.retention(runbook.spec.limits))

        records.update_guards(kube, draft.ref.namespace, runbook.metadata.name, spec.tenant, change, guards_seen)
        return verdict

    return Admitting(pool.submit(count))


def first_step(draft: Draft, admitting: Admitting, run: Callable[[Callable[[], None]], float]) -> float:
    """Run the first step of a new incident while its guards are counted (``run`` is handed the gate its
    writes wait on); refused, the step is as if it never ran, and every step is skipped."""
    before = draft.checkpoint()
    try:
        wait = run(admitting.gate)
    except NotAdmitted:
        wait = 0.0
    if admitting.refused():
        draft.rollback(before)  # no write was made: its reads, its timeline and its metrics count for nothing
        wait = 0.0
    admitting.settle(draft)
    return wait
