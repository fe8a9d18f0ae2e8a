"""Plan an Incident's steps from its Runbook: which run, which are skipped and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from reliability_center.api.incident import Incident, StepStatus
from reliability_center.api.runbook import Runbook, Step


@dataclass(frozen=True)
class Facts:
    """What the engine knows about the world beyond the Incident and Runbook (read at the edge)."""

    now: str
    safe_mode: bool = False
    shadow: bool = False
    """The operator (``RC_MODE``) or the namespace (settings ``mode``) is in shadow mode: nothing is written."""
    settings: dict[str, str] = field(default_factory=dict)
    """The namespace's ``reliability-center-settings`` ConfigMap (GitOps repo, SAFE_MODE...)."""


def when_holds(step: Step, incident: Incident, facts: Facts) -> tuple[bool, str]:
    """Whether the step's ``when`` condition holds, and if not, the reason in words."""
    when = step.when
    if when is None:
        return True, ""
    spec = incident.spec
    if when.signals and not any(s.name in when.signals for s in spec.signals):
        return False, f"no signal named {', '.join(when.signals)}"
    if when.modules and spec.module not in when.modules:
        return False, f"module {spec.module!r} is not one of {', '.join(when.modules)}"
    if when.severities and spec.severity not in when.severities:
        return False, f"severity {spec.severity!r} is not one of {', '.join(when.severities)}"
    for key, value in when.labels.items():
        if incident.metadata.labels.get(key) != value:
            return False, f"label {key}={value} is not set"
    if when.safe_mode is not None and when.safe_mode != facts.safe_mode:
        return False, f"SAFE_MODE is {'on' if facts.safe_mode else 'off'}"
    return True, ""


def plan(incident: Incident, runbook: Runbook, facts: Facts) -> list[StepStatus]:
    """The initial step list: every runbook step appears, Pending or Skipped with its reason."""
    steps = []
    for step in runbook.spec.steps:
        holds, why = when_holds(step, incident, facts)
        steps.append(
            StepStatus(
                name=step.name,
                level=step.level,
                action=step.action,
                state="Pending" if holds else "Skipped",
                reason="" if holds else "ConditionNotMet",
                message=why,
            )
        )
    return steps
