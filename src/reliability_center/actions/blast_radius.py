"""Blast radius: which tenants and modules the incident touches, per the signals and the app's objects.

Read-only. The evidence goes into the step's status for the humans and the postmortem.
"""

from __future__ import annotations

from collections import Counter

from reliability_center.actions.base import ActionContext, Params, Result, Succeeded, action
from reliability_center.policy.writes import MODULE_LABEL, TENANT_LABEL


class BlastParams(Params):
    pass


@action("blast-radius", params=BlastParams, reversible=False, summary="Measure per-tenant and per-module impact")
def run(ctx: ActionContext, params: BlastParams) -> Result:
    signals = ctx.incident.spec.signals
    tenants = Counter(s.labels.get("tenant", ctx.tenant) for s in signals)
    modules = Counter(s.labels.get("module", ctx.incident.spec.module or "-") for s in signals)
    workloads = ctx.read.list("Deployment", ctx.namespace)
    per_module: Counter[str] = Counter()
    per_tenant: Counter[str] = Counter()
    for obj in workloads:
        labels = obj["metadata"].get("labels") or {}
        per_module[labels.get(MODULE_LABEL, "-")] += 1
        per_tenant[labels.get(TENANT_LABEL, "shared")] += 1
    affected = sorted(t for t in tenants if t != "*")
    scope = "all-tenants" if ctx.tenant == "*" or len(affected) > 1 else "single-tenant"
    evidence = {
        "scope": scope,
        "signalsByTenant": dict(tenants),
        "signalsByModule": dict(modules),
        "workloadsByModule": dict(per_module),
        "workloadsByTenant": dict(per_tenant),
    }
    return Succeeded(f"blast radius: {scope}, tenants {', '.join(affected) or ctx.tenant}", evidence)
