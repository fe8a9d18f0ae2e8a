"""Restart (or scale down) schedulers and jobs one at a time, each after the previous one settled.

The step does not wait in place: it starts one target's rollout, records which
target it is on in the step's progress, and returns ``Running``: it is woken when
the target changes (a watch), or at the latest after ``LOOK_AGAIN`` seconds. Each
later call checks that rollout with kubectl's rules and, once it has settled,
moves to the next target. A crash never restarts a target twice nor
skips one: the restart marker is deterministic (trace and step), so re-applying it
is a no-op, and the settled targets are in the step's status.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import Field

from reliability_center.actions.base import ActionContext, Failed, Params, Result, Running, Skipped, Succeeded, action, ref
from reliability_center.actions.rollout import rollout_status
from reliability_center.api.common import now_iso
from reliability_center.gateway import Ref
from reliability_center.policy.limits import seconds

RESTART_ANNOTATION = "reliability.center/restarted-by"
#: The step is woken when the target changes (its rollout moves); this is only the deadline of a look
#: in case a change was missed (the operator restarted, a watch gap).
LOOK_AGAIN = 15.0


class RestartParams(Params):
    role: Literal["scheduler", "worker", "cache", "ingestion"] = "scheduler"
    modules: list[str] = Field(default_factory=list)
    mode: Literal["restart", "scale"] = "restart"
    replicas: int = Field(default=0, ge=0, le=1000, description="scale mode: the replica count to set.")
    settle_timeout: str = Field(default="120s", pattern=r"^[0-9]+(s|m)$")
    max_targets: int = Field(default=20, ge=1, le=100)


def restart_body(obj: dict, marker: str) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": obj["metadata"]["name"]},
            "spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: marker}}}}}


def _elapsed(since: str) -> float:
    started = datetime.fromisoformat(since.replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - started).total_seconds()


@action("restart-one-by-one", params=RestartParams, reversible=True,
        summary="Controlled restart or scale-down, one target at a time, with audit")
def run(ctx: ActionContext, params: RestartParams) -> Result:
    progress = ctx.progress
    settled = list(progress.get("settled") or [])
    if progress.get("current"):  # waiting on a rollout: read that target alone, no listing
        kind, _, name = progress["current"].split("/", 2)
        obj = ctx.read.get(Ref(kind, ctx.namespace, name.split("/")[-1]))
        if obj is None:
            return Failed("RolloutFailed", f"{progress['current']} disappeared during its rollout")
        return _wait(ctx, params, progress, settled, obj)
    modules = ctx.modules(params.modules)
    targets = [o for kind in ("Deployment", "StatefulSet") for o in ctx.select(kind, params.role, modules)]
    targets = targets[: params.max_targets]
    order = [ref(o) for o in targets]
    pending = [o for o in targets if ref(o) not in settled]
    if not targets:
        return Skipped("NoTargets", f"no {params.role} in scope for modules {modules or 'all'}")
    if not pending:
        return Succeeded(f"{len(targets)} targets settled", {"order": order})
    obj = pending[0]
    # Start this target's rollout; the step's status records it before anything waits. A retry after a
    # crash re-applies the same deterministic marker: a no-op, not a second rollout.
    if params.mode == "restart":
        ctx.apply(restart_body(obj, f"{ctx.write.trace_id}.{ctx.step.name}"), restore_on_resolve=False)
    else:
        ctx.apply({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": obj["metadata"]["name"]},
                   "spec": {"replicas": params.replicas}})
    progress.update(current=ref(obj), since=now_iso(), order=order)
    if ctx.write.shadow:  # a dry-run starts no rollout: no change will wake the step, and none is awaited
        return Running(f"{ref(obj)}: rollout dry-run")
    return Running(f"{ref(obj)}: rollout started", retry_after=LOOK_AGAIN, wake_on=(ref(obj),))


def _wait(ctx: ActionContext, params: RestartParams, progress: dict, settled: list[str], obj: dict) -> Result:
    """One look at the rollout this step waits on: done (next target, or the step), failed, or not yet."""
    status = rollout_status(obj)
    order = list(progress.get("order") or [])
    if status.failed:
        return Failed("RolloutFailed", status.message)
    if status.done or ctx.write.shadow:
        progress.update(settled=settled + [ref(obj)], current=None)
        left = [t for t in order if t not in settled + [ref(obj)]]
        if not left:
            return Succeeded(f"{len(order)} targets settled", {"order": order})
        return Running(f"{ref(obj)} settled; {len(left)} to go")
    left = seconds(params.settle_timeout) - _elapsed(progress["since"])
    if left < 0:
        return Failed("RolloutFailed", f"{ref(obj)} did not settle within {params.settle_timeout}: {status.message}")
    # The same message while it waits: a pass that learns nothing new writes nothing.
    return Running(f"{ref(obj)}: waiting for its rollout", retry_after=min(LOOK_AGAIN, left + 0.1),
                   wake_on=(ref(obj),))
