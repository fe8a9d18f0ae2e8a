"""Open the circuit breaker of one named external integration.

The integration's ConfigMap (role ``integration``, label
``reliability.center/integration=<name>``) holds ``circuitBreaker: closed|open``;
for one tenant the key is ``circuitBreaker.tenant.<tenant>`` so others keep it.
"""

from __future__ import annotations

from pydantic import Field

from reliability_center.actions.base import ActionContext, Failed, Params, Result, Succeeded, action

INTEGRATION_LABEL = "reliability.center/integration"


class BreakerParams(Params):
    integration: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@action("circuit-breaker", params=BreakerParams, summary="Open the circuit breaker on an integration")
def run(ctx: ActionContext, params: BreakerParams) -> Result:
    found = [o for o in ctx.select("ConfigMap", "integration")
             if (o["metadata"].get("labels") or {}).get(INTEGRATION_LABEL) == params.integration]
    if not found:
        return Failed("IntegrationNotFound", f"no ConfigMap with role=integration and "
                                             f"{INTEGRATION_LABEL}={params.integration} in {ctx.namespace}")
    key = "circuitBreaker" if ctx.tenant == "*" else f"circuitBreaker.tenant.{ctx.tenant}"
    for cm in found:
        ctx.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm["metadata"]["name"]},
                   "data": {key: "open"}}, seen=cm)
    return Succeeded(f"circuit open on {params.integration}", {"integration": params.integration, "key": key})
