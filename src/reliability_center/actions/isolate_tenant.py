"""Isolate one tenant without cutting the others: a tenant flag plus a NetworkPolicy.

NetworkPolicies are additive: an existing allow policy that selects the
tenant's pods would still let traffic in. So each such shared policy is
narrowed to exclude the tenant: one ``NotIn`` expression per tenant, added as
its own list item and held like any write, so two tenants' exclusions on one
policy come and go independently. One policy of ours allows the tenant's pods
to talk only to each other (and to DNS). The storm guard refuses to isolate
more than ``limits.maxIsolatedTenants`` tenants of a namespace at once and
escalates instead; it counts and decides in one compare-and-swap.
"""

from __future__ import annotations

from typing import Any

from reliability_center.actions.base import ActionContext, Escalate, Failed, Params, Result, Succeeded, action, ref
from reliability_center.policy.writes import ROLE_LABEL, TENANT_LABEL

ISOLATED_LABEL = "reliability.center/isolated-tenant"
MATCH_EXPRESSIONS = "/spec/podSelector/matchExpressions"


class IsolateParams(Params):
    pass


def isolation_policy(tenant: str) -> dict:
    same_tenant = [{"podSelector": {"matchLabels": {TENANT_LABEL: tenant}}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"rc-isolate-{tenant}"[:63],
                     "labels": {ISOLATED_LABEL: tenant, TENANT_LABEL: tenant}},
        "spec": {
            "podSelector": {"matchLabels": {TENANT_LABEL: tenant}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": same_tenant}],
            "egress": [{"to": same_tenant},
                       {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}],
        },
    }


def exclusion(tenant: str) -> dict[str, Any]:
    """The selector expression that narrows a shared policy: this tenant's pods are no longer selected."""
    return {"key": TENANT_LABEL, "operator": "NotIn", "values": [tenant]}


def selects_tenant(policy: dict, tenant: str) -> bool:
    """Could this policy's pod selector pick the tenant's pods (our own exclusion of it aside)?"""
    selector = policy["spec"].get("podSelector") or {}
    label = (selector.get("matchLabels") or {}).get(TENANT_LABEL)
    if label is not None and label != tenant:
        return False
    for expr in selector.get("matchExpressions") or []:
        if expr.get("key") != TENANT_LABEL or expr == exclusion(tenant):
            continue  # an incident of this tenant narrowed it already: hold that narrowing too
        if expr["operator"] == "NotIn" and tenant in expr.get("values", []):
            return False
        if expr["operator"] == "In" and tenant not in expr.get("values", []):
            return False
        if expr["operator"] == "DoesNotExist":
            return False
    return True


@action("isolate-tenant", params=IsolateParams, summary="Isolate one tenant (flag + NetworkPolicy)")
def run(ctx: ActionContext, params: IsolateParams) -> Result:
    tenant = ctx.tenant
    if tenant == "*":
        return Escalate("CannotIsolateAll", 'an incident for every tenant ("*") cannot isolate one tenant')
    flags = ctx.read.list("ConfigMap", ctx.namespace, f"{ROLE_LABEL}=tenant,{TENANT_LABEL}={tenant}")
    if not flags:
        return Failed("TenantNotFound", f"tenant {tenant!r} has no ConfigMap with role=tenant in {ctx.namespace}")
    verdict, isolated = ctx.reserve_isolation()
    if not verdict.allowed:
        return Escalate(verdict.reason, verdict.message)
    for cm in flags:
        ctx.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm["metadata"]["name"]},
                   "data": {"isolated": "true"}}, seen=cm)
    narrowed, foreign = [], []
    for policy in ctx.read.list("NetworkPolicy", ctx.namespace):
        labels = policy["metadata"].get("labels") or {}
        if ISOLATED_LABEL in labels or not selects_tenant(policy, tenant):
            continue
        owner = labels.get(TENANT_LABEL)
        if owner and owner != tenant:
            foreign.append(ref(policy))  # another tenant's policy: not ours to narrow
            continue
        ctx.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": policy["metadata"]["name"]}},
                  seen=policy, items=[(MATCH_EXPRESSIONS, exclusion(tenant))])
        narrowed.append(ref(policy))
    ctx.apply(isolation_policy(tenant))
    evidence = {"tenant": tenant, "narrowedPolicies": narrowed, "isolatedTenants": isolated}
    if foreign:
        return Escalate("ForeignAllowPolicy", f"isolated {tenant!r}, but policies of other tenants still select "
                                              f"its pods: {', '.join(foreign)}")
    return Succeeded(f"tenant {tenant!r} isolated", evidence)
