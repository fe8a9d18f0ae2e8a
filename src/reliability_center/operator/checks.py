"""A level 1 step's check: did the signal it should move move? (``check`` in the Runbook step.)

In the manner of an Argo Rollouts analysis: the query is measured as the step starts (the baseline),
then, once its action succeeded, every ``interval`` until the value moved in the declared direction
(the step succeeds) or ``within`` passed without it (the step escalates, the values in its evidence).
The step stays Running meanwhile, so the steps after it wait, and where it is lives in the step's
``progress``: a restarted operator goes on watching, it does not run the action again. The verdict
is ``engine/measure.judge``'s; this module only queries and keeps the values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reliability_center.actions.base import ActionContext, Escalate, Failed, Result, Running, Succeeded
from reliability_center.api.runbook import StepCheck
from reliability_center.engine import measure, templates
from reliability_center.engine.measure import Answer
from reliability_center.policy.limits import seconds

#: The step progress key the check keeps its state under.
KEY = "check"
#: Values kept in the evidence (the newest): enough to show the trend, bounded for the status' size.
KEPT = 20


def checked(ctx: ActionContext, run: Callable[[], Result]) -> Result:
    """Run the step's action (once it succeeded, never again) and watch its check, if it declares one.
    In shadow mode nothing was changed: there is nothing to watch."""
    check = ctx.step.check
    if check is None or ctx.write.shadow:
        return run()
    state = ctx.progress.get(KEY)
    if state is None:
        try:
            query = templates.render(check.query, templates.context(ctx.incident, _signals(ctx)),
                                     templates.promql_string)
        except templates.TemplateError as exc:
            return Failed(exc.reason, f"check: {exc}")
        value, error = _measure(ctx, query, check)
        state = ctx.progress[KEY] = {"query": query, "direction": check.direction, "within": check.within,
                                     "baseline": value, "baselineAt": ctx.facts.now, "values": []}
        if error:
            state["baselineError"] = error
    if "since" not in state:
        result = run()
        if not isinstance(result, Succeeded):
            return result
        state["since"] = ctx.facts.now
        state["action"] = {"message": result.message, "evidence": result.evidence or {}}
    return _observe(ctx, check, state)


def _signals(ctx: ActionContext) -> list[str]:
    return ctx.step.when.signals if ctx.step.when else []


def _measure(ctx: ActionContext, query: str, check: StepCheck) -> tuple[float | None, str]:
    answer = ctx.metrics.query(query) if ctx.metrics is not None else Answer(None, "no Prometheus client")
    if answer.samples is None:
        return None, answer.error
    value = measure.worst(answer.samples, check.direction)
    return value, "" if value is not None else "the query returned no series"


def _observe(ctx: ActionContext, check: StepCheck, state: dict[str, Any]) -> Result:
    value, error = _measure(ctx, state["query"], check)
    if state["baseline"] is None and value is not None:
        # Prometheus had nothing before the step: the first value after it is the one to move from.
        state["baseline"], state["baselineAt"] = value, ctx.facts.now
    state["values"] = [*state["values"], {"at": ctx.facts.now, "value": value, **({"error": error} if error else {})}
                       ][-KEPT:]
    verdict = measure.judge(check.direction, state["baseline"], value, state["since"], seconds(check.within),
                            seconds(check.interval), ctx.facts.now)
    shown = {k: v for k, v in state.items() if k != "action"}
    evidence = {**state["action"]["evidence"], KEY: {**shown, "verdict": verdict.outcome}}
    said = state["action"]["message"]
    if verdict.outcome == "improved":
        return Succeeded(f"{said}; check: {verdict.message}", evidence)
    if verdict.outcome == "not-improved":
        ctx.status.evidence = {**(ctx.status.evidence or {}), **evidence}  # the values go with the escalation
        return Escalate("CheckNotImproved",
                        f"check of step {ctx.step.name!r}: {state['query']} {verdict.message}"[-1024:])
    return Running(f"{said}; check: {verdict.message}", retry_after=verdict.wake_in, evidence=evidence)
