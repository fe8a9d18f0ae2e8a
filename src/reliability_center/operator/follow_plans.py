"""Phase: the incident's PatchPlans (Level 3 fixes, its postmortem) while they move through the forge.

Each change of a plan's phase goes into the timeline; the people behind it (who merged,
who asked for a rollback) into the durable audit trail; the fixes' state into the
``FixDeployed`` condition, which lets an incident escalated only to propose its fix count
as mitigated once that fix is verified (``fix_outcome``).
"""

from __future__ import annotations

from typing import Any

from reliability_center.api.incident import PlanState
from reliability_center.api.patchplan import ROLLBACK_REQUESTED_BY
from reliability_center.engine.progress import Finish
from reliability_center.gateway import Kube
from reliability_center.operator import closing
from reliability_center.operator.draft import Draft

#: A PatchPlan's forward path: a plan seen Verified went through Merged and Synced, even if no pass saw them.
PLAN_PATH = ("Pending", "Proposed", "Merged", "Synced", "Verified", "RollingBack", "RolledBack")
#: Phases of a plan whose pull request was merged (its merge is audited on the way into them).
MERGED_OR_LATER = frozenset(PLAN_PATH[2:])


def passed_through(last: str | None, now: str) -> list[str]:
    """The phases a plan went through since it was last seen (the last one included)."""
    if now in PLAN_PATH and (last is None or last in PLAN_PATH) and (last is None or
                                                                     PLAN_PATH.index(last) < PLAN_PATH.index(now)):
        start = PLAN_PATH.index(last) + 1 if last else PLAN_PATH.index("Proposed")
        return list(PLAN_PATH[min(start, PLAN_PATH.index(now)):PLAN_PATH.index(now) + 1])
    return [now]


def follow_plans(draft: Draft, kube: Kube, raw: list[dict[str, Any]] | None = None) -> None:
    """The incident's PatchPlans as they are now: each change of phase in the timeline."""
    if raw is None:
        raw = closing.plans_of(kube, draft.ref.namespace, draft.ref.name)
    states = closing.plan_states(raw)
    seen = {p.name: p.phase for p in draft.status.plans}
    bodies = {p["metadata"]["name"]: p for p in raw}
    for plan in states:
        if seen.get(plan.name) != plan.phase:
            link = f": {plan.pull_request}" if plan.pull_request else ""
            for phase in passed_through(seen.get(plan.name), plan.phase):
                draft.note(f"patchplan:{phase}", f"{plan.purpose} PatchPlan {plan.name}{link}")
            plan_acts(draft, bodies[plan.name], plan, seen.get(plan.name))
    draft.status.plans = states
    fixes = [p for p in states if p.purpose == "fix"]
    undone = [p for p in fixes if p.phase in ("Rejected", "RolledBack", "Failed")]
    if undone:
        draft.condition("FixDeployed", "False", f"PatchPlan{undone[0].phase}",
                        f"PatchPlan {undone[0].name} is {undone[0].phase}: the level 3 fix is not deployed")
    elif fixes and all(p.phase == "Verified" for p in fixes):
        draft.condition("FixDeployed", "True", "FixVerified",
                        "the level 3 fix was merged, synced and its revert verified")


def plan_acts(draft: Draft, body: dict[str, Any], plan: PlanState, was: str | None) -> None:
    """The people behind a PatchPlan's new phase: who merged its pull request (the forge's word), who
    asked for its rollback (admission's stamp), who merged the revert."""
    status, target = body.get("status") or {}, f"PatchPlan/{draft.ref.namespace}/{plan.name}"
    pr, revert = status.get("pullRequest") or {}, status.get("revert") or {}
    if pr.get("mergeCommit") and was not in MERGED_OR_LATER:
        draft.act(pr.get("mergedBy") or "unknown", "merge", target, "merged",
                  f"{plan.purpose} pull request {pr.get('url')} merged on the forge by "
                  f"{pr.get('mergedBy') or 'a user the forge did not name'} as {pr['mergeCommit'][:12]}")
    if plan.phase in ("RollingBack", "RolledBack") and was not in ("RollingBack", "RolledBack") \
            and (body.get("spec") or {}).get("rollback"):
        who = (body["metadata"].get("annotations") or {}).get(ROLLBACK_REQUESTED_BY)
        draft.act(who or "unknown", "rollback", target, "rollback-requested",
                  f"revert of {plan.purpose} PatchPlan {plan.name} requested by {who}" if who else
                  f"revert of {plan.purpose} PatchPlan {plan.name} requested; by whom is unknown: no "
                  f"{ROLLBACK_REQUESTED_BY} annotation (admission policy reliability-center-rollback-requester)")
    if plan.phase == "RolledBack" and was != "RolledBack" and revert.get("mergeCommit"):
        draft.act(revert.get("mergedBy") or "unknown", "merge-revert", target, "merged",
                  f"revert pull request {revert.get('url')} merged on the forge by "
                  f"{revert.get('mergedBy') or 'a user the forge did not name'} as {revert['mergeCommit'][:12]}")


def fix_outcome(draft: Draft, outcome: Finish) -> Finish:
    """An incident escalated only to propose its fix through Git is mitigated once that fix is Verified."""
    if outcome.phase != "Escalated" or not any(c.type == "FixDeployed" and c.status == "True"
                                               for c in draft.status.conditions):
        return outcome
    escalations = [s for s in draft.status.steps if s.state in ("Escalated", "Blocked")]
    if all(s.state == "Escalated" and s.action == "patch-plan" for s in escalations):
        draft.condition("Escalated", "False", "FixVerified", "the proposed fix was merged and verified")
        return Finish("Mitigated", "FixVerified", "the level 3 fix was merged, synced and verified")
    return outcome
