"""Blast radius: which tenants and modules the incident touches, from Prometheus' own numbers.

Read-only. With a ``query`` in its params (PromQL whose series carry ``tenant`` and ``module`` labels,
with a ``threshold``), the step asks Prometheus (``RC_PROMETHEUS_URL``) and records which tenants and
modules breach, by how much (``engine/measure.breaches``). When the step names no query, or Prometheus
does not answer, it falls back to counting the incident's signal labels, and its evidence says so
(``source`` and ``prometheus``). The evidence goes into the step's status for the humans and the postmortem.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar, Literal

from pydantic import Field

from reliability_center.actions.base import ActionContext, Params, Result, Succeeded, action
from reliability_center.engine import measure
from reliability_center.policy.writes import MODULE_LABEL, TENANT_LABEL


class BlastParams(Params):
    query: str | None = Field(default=None, min_length=1, max_length=4096,
                              description="PromQL, one series per tenant and module (labels tenant, module); may use "
                                          "{{ labels.NAME }} and {{ incident.namespace }}. Unset: signal labels only.")
    threshold: float = Field(default=0.0, description="A series past it breaches.")
    comparison: Literal["above", "below"] = Field(default="above", description="above: a value over the "
                                                                               "threshold breaches.")

    promql: ClassVar[tuple[str, ...]] = ("query",)


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
    measured = _measured(ctx, params)
    if measured.get("source") == "prometheus":
        affected = sorted(t for t in measured["breaching"]["tenant"] if t not in ("-", "*"))
        breaching_modules = sorted(measured["breaching"]["module"])
    else:
        affected = sorted(t for t in tenants if t != "*")
        breaching_modules = []
    scope = "all-tenants" if ctx.tenant == "*" or len(affected) > 1 else "single-tenant"
    evidence = {
        "scope": scope,
        **measured,
        "signalsByTenant": dict(tenants),
        "signalsByModule": dict(modules),
        "workloadsByModule": dict(per_module),
        "workloadsByTenant": dict(per_tenant),
    }
    if measured.get("source") == "prometheus":
        found = (f"tenants {', '.join(affected) or 'none'}, modules {', '.join(breaching_modules) or 'none'} "
                 f"{params.comparison} {params.threshold:g}")
        return Succeeded(f"blast radius (Prometheus): {scope}, {found}", evidence)
    return Succeeded(f"blast radius (signal labels: {measured['prometheus']}): {scope}, tenants "
                     f"{', '.join(affected) or ctx.tenant}", evidence)


def _measured(ctx: ActionContext, params: BlastParams) -> dict[str, Any]:
    """What Prometheus says breaches, or why the signal labels stand in for it."""
    query = params.query  # its templates rendered already (``resolve_params``)
    if query is None:
        return {"source": "signals", "prometheus": "not asked: the step names no query"}
    if ctx.metrics is None:
        return {"source": "signals", "query": query, "prometheus": "not asked: no Prometheus client here"}
    answer = ctx.metrics.query(query)
    if answer.samples is None:
        return {"source": "signals", "query": query, "prometheus": f"no answer: {answer.error}"}
    return {"source": "prometheus", "query": query, "threshold": params.threshold, "comparison": params.comparison,
            "series": len(answer.samples),
            "breaching": measure.breaches(answer.samples, params.threshold, params.comparison)}
