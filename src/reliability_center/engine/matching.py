"""Match an Incident to a Runbook: an explicit ``runbookRef`` first, else category, severity and labels."""

from __future__ import annotations

from dataclasses import dataclass

from reliability_center.api.incident import Incident
from reliability_center.api.runbook import Runbook


@dataclass(frozen=True)
class MatchResult:
    runbook: Runbook | None
    reason: str  # the condition reason: Matched, RunbookNotFound, RunbookNotReady, NoRunbookMatched, AmbiguousRunbook
    message: str


def is_ready(runbook: Runbook) -> bool:
    status = runbook.status
    if status is None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions)


def _answers(runbook: Runbook, incident: Incident) -> bool:
    match = runbook.spec.match
    if match.category != incident.spec.category:
        return False
    if match.severities and incident.spec.severity not in match.severities:
        return False
    labels = incident.metadata.labels
    return all(labels.get(k) == v for k, v in match.labels.items())


def match_runbook(incident: Incident, runbooks: list[Runbook]) -> MatchResult:
    ref = incident.spec.runbook_ref
    if ref:
        found = next((rb for rb in runbooks if rb.metadata.name == ref), None)
        if found is None:
            return MatchResult(None, "RunbookNotFound", f"runbookRef {ref!r} names no Runbook")
        if not is_ready(found):
            return MatchResult(None, "RunbookNotReady", f"Runbook {ref!r} is not Ready")
        return MatchResult(found, "Matched", f"Runbook {ref!r} named by runbookRef")
    candidates = [rb for rb in runbooks if _answers(rb, incident) and is_ready(rb)]
    if not candidates:
        return MatchResult(
            None, "NoRunbookMatched",
            f"no Ready Runbook matches category={incident.spec.category!r} severity={incident.spec.severity!r}",
        )
    if len(candidates) > 1:
        # The most specific match wins (more label constraints, then a severity list); a tie is ambiguous.
        def specificity(rb: Runbook) -> tuple[int, int]:
            return (len(rb.spec.match.labels), 1 if rb.spec.match.severities else 0)

        candidates.sort(key=specificity, reverse=True)
        if specificity(candidates[0]) == specificity(candidates[1]):
            names = sorted(rb.metadata.name for rb in candidates if specificity(rb) == specificity(candidates[0]))
            return MatchResult(None, "AmbiguousRunbook",
                               f"several Runbooks match equally: {', '.join(names)}; set spec.runbookRef")
    chosen = candidates[0]
    return MatchResult(chosen, "Matched", f"Runbook {chosen.metadata.name!r} matched by category")
