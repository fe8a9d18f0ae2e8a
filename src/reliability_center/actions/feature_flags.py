"""Degraded mode: turn non-critical feature flags off (ConfigMap or OpenFeature backend).

ConfigMap backend: a ConfigMap per module labelled ``reliability.center/role=flags``;
each data key is a flag (``"true"``/``"false"``); per-tenant overrides are keys
``<flag>.tenant.<tenant>``; the annotation ``reliability.center/critical-flags``
lists flags that are never turned off. For an incident of one tenant only that
tenant's overrides are written, so the other tenants keep every feature.

OpenFeature backend: ``FeatureFlag`` objects (core.openfeature.dev); a flag is
turned off by flipping ``defaultVariant`` to its off variant — flagd treats
``state: DISABLED`` as an error and the app would fall back to its code default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reliability_center.actions.base import ActionContext, Params, Result, Skipped, Succeeded, action

CRITICAL_ANNOTATION = "reliability.center/critical-flags"


class FlagsParams(Params):
    backend: Literal["configmap", "openfeature"] = "configmap"
    modules: list[str] = Field(default_factory=list, description="Empty: the incident's module, else every module.")
    flags: list[str] = Field(default_factory=list, description="Empty: every non-critical flag.")
    off_variant: str = "off"


def _critical(obj: dict) -> set[str]:
    raw = (obj["metadata"].get("annotations") or {}).get(CRITICAL_ANNOTATION, "")
    return {f.strip() for f in raw.split(",") if f.strip()}


def _chosen(all_flags: list[str], params: FlagsParams, critical: set[str]) -> list[str]:
    wanted = params.flags or all_flags
    return [f for f in all_flags if f in wanted and f not in critical]


@action("feature-flags-off", params=FlagsParams, summary="Degraded mode: non-critical flags OFF")
def run(ctx: ActionContext, params: FlagsParams) -> Result:
    modules = ctx.modules(params.modules)
    if params.backend == "openfeature":
        return _openfeature(ctx, params, modules)
    changed: list[str] = []
    for cm in ctx.select("ConfigMap", "flags", modules):
        data = cm.get("data") or {}
        base_flags = [k for k in data if ".tenant." not in k]
        flags = _chosen(base_flags, params, _critical(cm))
        keys = flags if ctx.tenant == "*" else [f"{f}.tenant.{ctx.tenant}" for f in flags]
        if not keys:
            continue
        ctx.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm["metadata"]["name"]},
                   "data": {k: "false" for k in keys}}, seen=cm)
        changed += [f"{cm['metadata']['name']}:{k}" for k in keys]
    if not changed:
        return Skipped("NoFlags", f"no non-critical flag found for modules {modules or 'all'}")
    return Succeeded(f"{len(changed)} flags off", {"flags": changed})


def _openfeature(ctx: ActionContext, params: FlagsParams, modules: list[str]) -> Result:
    changed: list[str] = []
    for ff in ctx.select("FeatureFlag", "flags", modules):
        flags = (ff.get("spec") or {}).get("flagSpec", {}).get("flags", {})
        names = _chosen(list(flags), params, _critical(ff))
        patch = {}
        for name in names:
            variants = flags[name].get("variants") or {}
            if params.off_variant not in variants:
                continue  # a flag without an off variant cannot be switched safely
            if flags[name].get("defaultVariant") != params.off_variant:
                patch[name] = {"defaultVariant": params.off_variant}
        if not patch:
            continue
        ctx.apply({"apiVersion": ff["apiVersion"], "kind": "FeatureFlag", "metadata": {"name": ff["metadata"]["name"]},
                   "spec": {"flagSpec": {"flags": patch}}}, seen=ff)
        changed += [f"{ff['metadata']['name']}:{n}" for n in patch]
    if not changed:
        return Skipped("NoFlags", f"no FeatureFlag with an {params.off_variant!r} variant for modules {modules or 'all'}")
    return Succeeded(f"{len(changed)} flags off", {"flags": changed})
