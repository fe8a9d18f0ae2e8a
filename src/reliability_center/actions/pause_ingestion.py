"""Pause ingestion: scale ingestion Deployments to 0 and suspend ingestion CronJobs.

An HPA does not scale a target whose replicas are 0, so scaling down is enough;
the HPA's settings are recorded as evidence beside the snapshot so that the
restore brings back the replica count it had chosen.
"""

from __future__ import annotations

from pydantic import Field

from reliability_center.actions.base import ActionContext, Params, Result, Skipped, Succeeded, action, ref


class PauseParams(Params):
    modules: list[str] = Field(default_factory=list)
    include_shared: bool = Field(default=False, description="For one tenant, also pause shared ingestion.")


@action("pause-ingestion", params=PauseParams, summary="Pause ingestion (scale to 0, suspend CronJobs)")
def run(ctx: ActionContext, params: PauseParams) -> Result:
    modules = ctx.modules(params.modules)
    hpas = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"]): h
            for h in ctx.read.list("HorizontalPodAutoscaler", ctx.namespace)}
    paused, evidence = [], {}
    for kind in ("Deployment", "StatefulSet", "CronJob"):
        for obj in ctx.select(kind, "ingestion", modules):
            labels = obj["metadata"].get("labels") or {}
            if ctx.tenant != "*" and "reliability.center/tenant" not in labels and not params.include_shared:
                continue  # shared ingestion serves every tenant: pausing it would cut the others
            name = obj["metadata"]["name"]
            if kind == "CronJob":
                ctx.apply({"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name}, "spec": {"suspend": True}}, seen=obj)
            else:
                ctx.apply({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": {"replicas": 0}}, seen=obj)
                hpa = hpas.get((kind, name))
                if hpa:
                    evidence[name] = {"hpa": hpa["metadata"]["name"], "minReplicas": hpa["spec"].get("minReplicas"),
                                      "maxReplicas": hpa["spec"].get("maxReplicas")}
            paused.append(ref(obj))
    if not paused:
        return Skipped("NoIngestion", f"no ingestion in scope for tenant {ctx.tenant!r}, modules {modules or 'all'}")
    return Succeeded(f"{len(paused)} ingestion targets paused", {"paused": paused, "hpa": evidence})
