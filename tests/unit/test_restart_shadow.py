"""A restart run in shadow mode dry-runs each target and moves on at once: a dry-run starts no rollout, so
nothing would wake the step, and waiting the look-again deadline (15 s) per target only delayed the
Shadowed incident (tests/e2e/test_shadow_global.py spent 30 of its 41 s so)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from reliability_center.actions import restart_one_by_one
from reliability_center.actions.base import ActionContext, Running, Succeeded
from reliability_center.api.incident import StepStatus
from reliability_center.api.runbook import Limits, Step
from reliability_center.engine.plan import Facts
from reliability_center.gateway import WriteContext
from reliability_center.gateway.batch import GroupCommit
from tests.unit.factories import incident

STEP = {"name": "restart", "level": 1, "action": "restart-one-by-one", "params": {"role": "scheduler"}}


def deployment(name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "generation": 1,
                         "labels": {"reliability.center/role": "scheduler", "reliability.center/module": "search"}},
            "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "replicas": 1}}  # never rolled out


class Cluster:
    """Two schedulers whose rollouts never finish; the gateway records what it was asked to write."""

    def __init__(self) -> None:
        self.objects = {n: deployment(n) for n in ("sched-a", "sched-b")}
        self.writes: list[str] = []
        self.commits = GroupCommit(self)  # type: ignore[arg-type]  (the gateway's: a listing announces its writes)

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def get(self, ref: Any) -> dict[str, Any] | None:
        return self.objects.get(ref.name)

    def apply(self, write: WriteContext, desired: dict[str, Any], **_: Any) -> SimpleNamespace:
        target = f"Deployment/shop/{desired['metadata']['name']}"
        self.writes.append(target)
        return SimpleNamespace(target=target, entry=SimpleNamespace(event="restart-one-by-one:dry-run"), snapshot=None,
                               before=None, after=desired, outcome="dry-run" if write.shadow else "applied")


def context(cluster: Cluster, shadow: bool) -> ActionContext:
    write = WriteContext(incident={"metadata": {"name": "inc", "namespace": "shop", "uid": "u"}}, trace_id="t",
                         tenant="acme", step="restart", level=1, shadow=shadow)
    return ActionContext(gateway=cluster, read=cluster, incident=incident(), write=write,  # type: ignore[arg-type]
                         step=Step.model_validate(STEP), status=StepStatus(name="restart", level=1,
                                                                            action="restart-one-by-one"),
                         limits=Limits(), facts=Facts(now="2026-11-27T12:00:00Z"), action="restart-one-by-one")


def run_until_done(ctx: ActionContext) -> list[Any]:
    params = restart_one_by_one.RestartParams(role="scheduler")
    results = [restart_one_by_one.run(ctx, params)]
    while isinstance(results[-1], Running) and len(results) < 10:
        results.append(restart_one_by_one.run(ctx, params))
    return results


def test_a_shadow_restart_dry_runs_every_target_in_order_without_waiting_for_a_rollout():
    cluster = Cluster()
    results = run_until_done(context(cluster, shadow=True))
    assert isinstance(results[-1], Succeeded), results[-1]
    assert cluster.writes == ["Deployment/shop/sched-a", "Deployment/shop/sched-b"]
    waits = [(r.retry_after, r.wake_on) for r in results if isinstance(r, Running)]
    assert waits and all(w == (0.0, ()) for w in waits), waits


def test_a_real_restart_still_waits_for_the_rollout_it_started():
    cluster = Cluster()
    first = restart_one_by_one.run(context(cluster, shadow=False), restart_one_by_one.RestartParams(role="scheduler"))
    assert isinstance(first, Running)
    assert first.retry_after == restart_one_by_one.LOOK_AGAIN and first.wake_on == ("Deployment/shop/sched-a",)
