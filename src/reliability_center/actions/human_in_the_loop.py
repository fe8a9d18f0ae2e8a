"""Switch a pipeline to human-in-the-loop only (no automatic entry), if SAFE_MODE allows it.

SAFE_MODE comes from the ``reliability-center-settings`` ConfigMap of the
incident's namespace (or the operator's ``RC_SAFE_MODE``), read by the step runner.
"""

from __future__ import annotations

from pydantic import Field

from reliability_center.actions.base import ActionContext, Params, Result, Skipped, Succeeded, action


class HumanLoopParams(Params):
    modules: list[str] = Field(default_factory=list)
    key: str = Field(default="mode", pattern=r"^[-._a-zA-Z0-9]+$")
    value: str = Field(default="human-in-the-loop", max_length=253)


@action("human-in-the-loop", params=HumanLoopParams, summary="Human-in-the-loop only, when SAFE_MODE allows",
        needs_settings=True)
def run(ctx: ActionContext, params: HumanLoopParams) -> Result:
    if not ctx.facts.safe_mode:
        return Skipped("SafeModeOff", "SAFE_MODE does not allow switching to human-in-the-loop")
    modules = ctx.modules(params.modules)
    pipelines = ctx.select("ConfigMap", "pipeline", modules)
    if not pipelines:
        return Skipped("NoPipeline", f"no pipeline ConfigMap for modules {modules or 'all'}")
    key = params.key if ctx.tenant == "*" else f"{params.key}.tenant.{ctx.tenant}"
    for cm in pipelines:
        ctx.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm["metadata"]["name"]},
                   "data": {key: params.value}}, seen=cm)
    return Succeeded(f"{len(pipelines)} pipelines in {params.value}", {"key": key})
