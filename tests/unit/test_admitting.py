"""A new incident's first step runs while its guards are counted (operator/start.py): its writes wait for the
verdict, and a refusal leaves the incident as if the step never ran. No apiserver: the verdict is a Future
another thread answers, the step a function that reads, then passes the gate, then writes."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from reliability_center.api.common import now_iso
from reliability_center.engine.plan import Facts, plan
from reliability_center.operator.draft import Draft
from reliability_center.operator.start import Admitting, first_step
from reliability_center.operator.workqueue import Echoes
from reliability_center.policy.limits import Verdict
from tests.unit.factories import incident, runbook

STEPS = [{"name": "flags", "level": 1, "action": "feature-flags-off"},
         {"name": "breaker", "level": 1, "action": "circuit-breaker", "params": {"integration": "x"}}]


def new_incident() -> Draft:
    body = incident().model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"]["resourceVersion"] = "1"
    draft = Draft(None, Echoes(), body)  # type: ignore[arg-type] - nothing here talks to the apiserver
    draft.status.steps = plan(draft.incident, runbook(steps=STEPS), Facts(now=now_iso()))
    draft.phase("Mitigating")
    return draft


READ = threading.Event()


def step(draft: Draft, log: list[str], writes: bool = True):
    """What run_step does to the Draft around its action: start the step, read, (write), succeed, count."""
    READ.clear()

    def run(gate) -> float:
        first = draft.status.steps[0]
        first.state = "Running"
        draft.note("step:started", "feature-flags-off (level 1)", "flags")
        log.append("read")
        READ.set()
        if writes:
            gate()
            log.append("write")
        first.state = "Succeeded"
        draft.count(lambda: log.append("counted"))
        return 0.0
    return run


def answered_later(verdict: Verdict, log: list[str]) -> Future[Verdict]:
    """The guards' swap, answered by another thread only once the step has read: were the step made to wait
    for the verdict before it reads, nothing would answer and the test would fail (``verdict late``)."""
    future: Future[Verdict] = Future()

    def answer() -> None:
        if not READ.wait(timeout=10):
            log.append("verdict late")
        log.append("verdict")
        future.set_result(verdict)

    threading.Thread(target=answer).start()
    return future


def test_an_admitted_first_step_reads_before_the_verdict_and_writes_after_it():
    draft, log = new_incident(), []
    run = step(draft, log)
    wait = first_step(draft, Admitting(answered_later(Verdict(True), log)), run)
    assert wait == 0.0 and log == ["read", "verdict", "write"]
    assert draft.status.steps[0].state == "Succeeded" and draft.status.steps[1].state == "Pending"
    assert {c.type: (c.status, c.reason) for c in draft.status.conditions}["Admitted"] == ("True", "Allowed")
    assert len(draft.decided) > 0  # its metrics count once the status is written


def test_a_refused_first_step_writes_nothing_and_every_step_is_skipped_with_the_reason():
    draft, log = new_incident(), []
    timeline = len(draft.status.timeline)
    decided = len(draft.decided)
    refusal = Verdict(False, "RateLimited", "2 mitigations for tenant 'acme' in the last hour (limit 2)")
    run = step(draft, log)
    first_step(draft, Admitting(answered_later(refusal, log)), run)
    assert log == ["read", "verdict"]  # the write waited for the verdict, and was never made
    assert [(s.state, s.reason) for s in draft.status.steps] == [("Skipped", "RateLimited")] * 2
    assert {c.type: (c.status, c.reason) for c in draft.status.conditions}["Admitted"] == ("False", "RateLimited")
    assert len(draft.status.timeline) == timeline and len(draft.decided) == decided  # no step:started, no metric


def test_a_refused_first_step_that_wrote_nothing_is_undone_all_the_same():
    draft, log = new_incident(), []
    run = step(draft, log, writes=False)
    first_step(draft, Admitting(answered_later(Verdict(False, "CoolingDown", "cooldown 5m"), log)), run)
    assert [s.state for s in draft.status.steps] == ["Skipped", "Skipped"]
    assert "counted" not in log


def test_a_swap_that_failed_fails_the_turn_before_any_write():
    draft, log = new_incident(), []
    future: Future[Verdict] = Future()
    future.set_exception(ConnectionError("apiserver away"))
    with pytest.raises(ConnectionError):
        first_step(draft, Admitting(future), step(draft, log))
    assert log == ["read"]
