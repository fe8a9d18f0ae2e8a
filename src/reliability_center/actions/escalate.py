"""Level 3 hand-over to a human, when no PatchPlan can describe the fix."""

from __future__ import annotations

from pydantic import Field

from reliability_center.actions.base import ActionContext, Escalate, Params, Result, action


class EscalateParams(Params):
    reason: str = Field(default="data or sensitive configuration change needs a human", max_length=1024)


@action("escalate", params=EscalateParams, levels=(3,), reversible=False, summary="Hand over to a human")
def run(ctx: ActionContext, params: EscalateParams) -> Result:
    return Escalate("HumanRequired", params.reason)
