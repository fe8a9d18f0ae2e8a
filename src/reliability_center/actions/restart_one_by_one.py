"""Restart (or scale down) schedulers and jobs one at a time, each after the previous one settled.

One target per call: the step runner persists the finished target in status
before the next call, so a crash never restarts a target twice nor skips one.
The restart marker is deterministic (trace and step), so re-applying it after a
crash is a no-op rather than a second rollout.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reliability_center.actions.base import ActionContext, Failed, Params, Result, Running, Skipped, Succeeded, action, ref
from reliability_center.actions.rollout import rollout_status
from reliability_center.gateway import Ref
from reliability_center.policy.limits import seconds

RESTART_ANNOTATION = "reliability.center/restarted-by"


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


def wait_settled(ctx: ActionContext, obj: dict, timeout: float) -> str | None:
    """Poll until the rollout is complete; returns an error message, or None when settled."""
    target = Ref(obj["kind"], ctx.namespace, obj["metadata"]["name"])
    deadline = ctx.clock() + timeout
    delay = 0.05
    while True:
        current = ctx.read.get(target)
        if current is None:
            return f"{target} disappeared during its rollout"
        status = rollout_status(current)
        if status.failed:
            return status.message
        if status.done or ctx.write.shadow:
            return None
        if ctx.clock() > deadline:
            return f"{target} did not settle within {timeout:.0f}s: {status.message}"
        ctx.sleep(delay)
        delay = min(delay * 2, 0.5)


@action("restart-one-by-one", params=RestartParams, reversible=True,
        summary="Controlled restart or scale-down, one target at a time, with audit")
def run(ctx: ActionContext, params: RestartParams) -> Result:
    modules = ctx.modules(params.modules)
    targets = [o for kind in ("Deployment", "StatefulSet") for o in ctx.select(kind, params.role, modules)]
    targets = targets[: params.max_targets]
    if not targets:
        return Skipped("NoTargets", f"no {params.role} in scope for modules {modules or 'all'}")
    done = set(ctx.done_targets)
    pending = [o for o in targets if ref(o) not in done]
    if not pending:
        return Succeeded(f"{len(targets)} targets settled", {"order": [ref(o) for o in targets]})
    obj = pending[0]
    if params.mode == "restart":
        ctx.apply(restart_body(obj, f"{ctx.write.trace_id}.{ctx.step.name}"), restore_on_resolve=False)
    else:
        ctx.apply({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": obj["metadata"]["name"]},
                   "spec": {"replicas": params.replicas}})
    error = wait_settled(ctx, obj, seconds(params.settle_timeout))
    if error:
        return Failed("RolloutFailed", error)
    if len(pending) == 1:
        return Succeeded(f"{len(targets)} targets settled", {"order": [ref(o) for o in targets]})
    return Running(f"{ref(obj)} settled; {len(pending) - 1} to go")
