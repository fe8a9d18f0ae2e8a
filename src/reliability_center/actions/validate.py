"""Runbook checks the CRD schema cannot express: known actions, their params, their levels."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from reliability_center.actions.base import REGISTRY
from reliability_center.api.runbook import RunbookSpec
from reliability_center.engine import templates
from reliability_center.policy.limits import seconds


@dataclass(frozen=True)
class Problem:
    reason: str  # UnknownAction, InvalidParams, LevelNotAllowed, InvalidTemplate, CheckOutlastsTimeout
    message: str


def check_runbook(spec: RunbookSpec) -> list[Problem]:
    problems: list[Problem] = []
    for index, step in enumerate(spec.steps):
        earlier = {s.name for s in spec.steps[:index]}
        for name in step.after or []:
            if name not in earlier:  # later steps cannot be waited for: the walk goes in order
                problems.append(Problem("UnknownDependency", f"step {step.name!r}: after names {name!r}, which is "
                                                             f"not an earlier step of this runbook"))
        found = REGISTRY.get(step.action)
        if found is None:
            problems.append(Problem("UnknownAction", f"step {step.name!r}: unknown action {step.action!r} "
                                                     f"(known: {', '.join(sorted(REGISTRY))})"))
            continue
        if step.level not in found.levels:
            allowed = ", ".join(str(lv) for lv in sorted(found.levels))
            problems.append(Problem("LevelNotAllowed", f"step {step.name!r}: action {step.action!r} runs at level "
                                                       f"{allowed}, not {step.level}"))
        for why in templates.problems(step.params or {}) + templates.problems(step.check.query if step.check else ""):
            problems.append(Problem("InvalidTemplate", f"step {step.name!r}: {why}"))
        if step.check is not None and seconds(step.check.within) >= seconds(step.timeout):
            problems.append(Problem("CheckOutlastsTimeout", f"step {step.name!r}: its check watches for "
                                                            f"{step.check.within}, not shorter than the step's "
                                                            f"timeout {step.timeout}, which bounds the action and "
                                                            f"its check together"))
        # A templated value is known only when the step runs: it is validated then, once rendered.
        later = templates.templated(step.params or {})
        try:
            found.params.model_validate(step.params or {})
        except ValidationError as exc:
            errors = [e for e in exc.errors() if not any(tuple(e["loc"][:len(p)]) == p for p in later)]
            detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in errors)
            if detail:
                problems.append(Problem("InvalidParams", f"step {step.name!r}: {detail}"))
    return problems
