"""Purge corrupt or overloaded caches — only those whose owners allow it.

A cache allows purging with the annotation ``reliability.center/purge-allowed: "true"``
(the seed's "if policy allows"). A cache Deployment is purged by a rollout
restart (not awaited: a purge needs no settling before the next step); a cache
ConfigMap by bumping its ``purgeGeneration`` key, which the cache watches.
"""

from __future__ import annotations

from pydantic import Field

from reliability_center.actions.base import ActionContext, Params, Result, Skipped, Succeeded, action, ref
from reliability_center.actions.restart_one_by_one import restart_body

ALLOW_ANNOTATION = "reliability.center/purge-allowed"


class PurgeParams(Params):
    modules: list[str] = Field(default_factory=list)


@action("purge-cache", params=PurgeParams, reversible=False, summary="Purge caches where policy allows")
def run(ctx: ActionContext, params: PurgeParams) -> Result:
    modules = ctx.modules(params.modules)
    purged, refused = [], []
    for kind in ("Deployment", "ConfigMap"):
        for obj in ctx.select(kind, "cache", modules):
            if (obj["metadata"].get("annotations") or {}).get(ALLOW_ANNOTATION) != "true":
                refused.append(ref(obj))
                continue
            if kind == "Deployment":
                ctx.apply(restart_body(obj, f"{ctx.write.trace_id}.{ctx.step.name}"), restore_on_resolve=False)
            else:
                ctx.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": obj["metadata"]["name"]},
                           "data": {"purgeGeneration": ctx.write.trace_id}}, restore_on_resolve=False)
            purged.append(ref(obj))
    if not purged:
        return Skipped("PurgeNotAllowed", f"no cache allows purging ({len(refused)} refused: {', '.join(refused)})")
    return Succeeded(f"{len(purged)} caches purged", {"purged": purged, "notAllowed": refused})
