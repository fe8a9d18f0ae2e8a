"""Isolate one tenant without cutting the others: a tenant flag plus a NetworkPolicy.

NetworkPolicies are additive: an existing allow policy that selects the
tenant's pods would still let traffic in. So each such shared policy is
narrowed to exclude the tenant (a ``NotIn`` selector expression, snapshotted and
restored like any write), and one policy of ours allows the tenant's pods to
talk only to each other (and to DNS). The storm guard refuses to isolate more
than ``limits.maxIsolatedTenants`` tenants at once and escalates instead.
"""

from __future__ import annotations

from reliability_center.actions.base import ActionContext, Escalate, Failed, Params, Result, Succeeded, action, ref
from reliability_center.policy.limits import storm_guard
from reliability_center.policy.writes import TENANT_LABEL

ISOLATED_LABEL = "reliability.center/isolated-tenant"


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


def selects_tenant(policy: dict, tenant: str) -> bool:
    """Could this policy's pod selector pick the tenant's pods?"""
    selector = policy["spec"].get("podSelector") or {}
    label = (selector.get("matchLabels") or {}).get(TENANT_LABEL)
    if label is not None and label != tenant:
        return False
    for expr in selector.get("matchExpressions") or []:
        if expr.get("key") != TENANT_LABEL:
            continue
        if expr["operator"] == "NotIn" and tenant in expr.get("values", []):
            return False
        if expr["operator"] == "In" and tenant not in expr.get("values", []):
            return False
        if expr["operator"] == "DoesNotExist":
            return False
    return True


def excluding(policy: dict, tenant: str) -> dict:
    # A LabelSelector is an atomic map for server-side apply: send it whole, or the
    # matchLabels we leave out would be dropped and the policy would select more pods.
    selector = dict(policy["spec"].get("podSelector") or {})
    selector["matchExpressions"] = list(selector.get("matchExpressions") or []) + [
        {"key": TENANT_LABEL, "operator": "NotIn", "values": [tenant]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": policy["metadata"]["name"]},
            "spec": {"podSelector": selector}}


@action("isolate-tenant", params=IsolateParams, summary="Isolate one tenant (flag + NetworkPolicy)")
def run(ctx: ActionContext, params: IsolateParams) -> Result:
    tenant = ctx.tenant
    if tenant == "*":
        return Escalate("CannotIsolateAll", 'an incident for every tenant ("*") cannot isolate one tenant')
    policies = ctx.read.list("NetworkPolicy", ctx.namespace)
    isolated = {p["metadata"]["labels"][ISOLATED_LABEL] for p in policies
                if ISOLATED_LABEL in (p["metadata"].get("labels") or {})}
    verdict = storm_guard(isolated, tenant, ctx.limits)
    if not verdict.allowed:
        return Escalate(verdict.reason, verdict.message)
    flags = [cm for cm in ctx.select("ConfigMap", "tenant") if (cm["metadata"].get("labels") or {}).get(TENANT_LABEL) == tenant]
    if not flags:
        return Failed("TenantNotFound", f"tenant {tenant!r} has no ConfigMap with role=tenant in {ctx.namespace}")
    for cm in flags:
        ctx.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm["metadata"]["name"]},
                   "data": {"isolated": "true"}}, seen=cm)
    narrowed, foreign = [], []
    for policy in policies:
        labels = policy["metadata"].get("labels") or {}
        if ISOLATED_LABEL in labels or not selects_tenant(policy, tenant):
            continue
        owner = labels.get(TENANT_LABEL)
        if owner and owner != tenant:
            foreign.append(ref(policy))  # another tenant's policy: not ours to narrow
            continue
        ctx.apply(excluding(policy, tenant), seen=policy)
        narrowed.append(ref(policy))
    ctx.apply(isolation_policy(tenant))
    evidence = {"tenant": tenant, "narrowedPolicies": narrowed, "isolatedTenants": sorted(isolated | {tenant})}
    if foreign:
        return Escalate("ForeignAllowPolicy", f"isolated {tenant!r}, but policies of other tenants still select "
                                              f"its pods: {', '.join(foreign)}")
    return Succeeded(f"tenant {tenant!r} isolated", evidence)
