"""What the step runner keeps in memory about incidents, and when it lets go of it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import kopf

from reliability_center.gateway import Kube
from reliability_center.operator import context, incident, runner as runner_module
from reliability_center.operator.runner import StepRunner
from reliability_center.operator.settings import Settings
from reliability_center.operator.workqueue import WorkQueue


def idle_runner() -> StepRunner:
    return StepRunner(Kube(SimpleNamespace()), Settings())  # type: ignore[arg-type] - never asked anything here


def test_a_deleted_incident_s_failures_are_forgotten(monkeypatch):
    runner = idle_runner()
    runner.failures.update({"gone-uid": 7, "other-uid": 2})
    monkeypatch.setattr(context, "runner", lambda: runner)

    async def deleted() -> None:
        async def never(key, body):
            raise AssertionError("no pass expected")

        monkeypatch.setattr(context, "QUEUE", WorkQueue(never, workers=1, name="test-forget"))
        body = kopf.Body({"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                          "metadata": {"name": "gone", "namespace": "ns", "uid": "gone-uid"}})
        await incident.on_incident(body=body, type="DELETED", namespace="ns", name="gone", runbook_index={},
                                   incidents_by_phase={}, incident_pages={})

    asyncio.run(deleted())
    assert runner.failures == {"other-uid": 2}


def test_failures_are_bounded_oldest_first(monkeypatch):
    monkeypatch.setattr(runner_module, "FAILURES_KEPT", 3)
    runner = idle_runner()

    def fail(uid: str) -> None:  # a turn that raises before any request: an unknown runbook spec
        body = {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                "metadata": {"name": uid, "namespace": "ns", "uid": uid}, "spec": {"not": "an incident"}}
        monkeypatch.setattr(runner, "_report", lambda *a: None)
        assert runner.reconcile(body, []) > 0

    for uid in ("a", "b", "c", "a", "d"):
        fail(uid)
    assert runner.failures == {"c": 1, "a": 2, "d": 1}
