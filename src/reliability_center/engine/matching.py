"""Match an Incident to a Runbook by category, severity and labels; ``runbookRef`` picks one of those.

A reference is a choice among the runbooks that answer the incident, never a way around them:
whoever may create Incidents in a namespace would otherwise run any Runbook there, whatever its
match says (a Level 2 one written for another category, say). A Runbook that does not answer
the incident is refused by name, with what its match wants.
"""

from __future__ import annotations

from dataclasses import dataclass

from reliability_center.api.incident import Incident
from reliability_center.api.runbook import Runbook


@dataclass(frozen=True)
class MatchResult:
    runbook: Runbook | None
    reason: str  # the condition reason: Matched, RunbookNotFound, RunbookNotReady, RunbookDoesNotMatch,
    # NoRunbookMatched, AmbiguousRunbook
    message: str


def is_ready(runbook: Runbook) -> bool:
    status = runbook.status
    if status is None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions)


def _mismatches(runbook: Runbook, incident: Incident) -> list[str]:
    """What in the runbook's match the incident does not meet, in words (empty: it answers it)."""
    match, why = runbook.spec.match, []
    if match.category != incident.spec.category:
        why.append(f"category {match.category!r} (the incident's is {incident.spec.category!r})")
    if match.severities and incident.spec.severity not in match.severities:
        why.append(f"severity in {match.severities} (the incident's is {incident.spec.severity!r})")
    labels = incident.metadata.labels
    why += [f"label {k}={v}" for k, v in sorted(match.labels.items()) if labels.get(k) != v]
    return why


def _answers(runbook: Runbook, incident: Incident) -> bool:
    return not _mismatches(runbook, incident)


def match_runbook(incident: Incident, runbooks: list[Runbook]) -> MatchResult:
    ref = incident.spec.runbook_ref
    if ref:
        found = next((rb for rb in runbooks if rb.metadata.name == ref), None)
        if found is None:
            return MatchResult(None, "RunbookNotFound", f"runbookRef {ref!r} names no Runbook")
        if not is_ready(found):
            return MatchResult(None, "RunbookNotReady", f"Runbook {ref!r} is not Ready")
        wanted = _mismatches(found, incident)
        if wanted:
            return MatchResult(None, "RunbookDoesNotMatch",
                               f"runbookRef {ref!r} names a Runbook that does not answer this incident: its match "
                               f"wants {', '.join(wanted)}; a reference only chooses among the Runbooks that match")
        return MatchResult(found, "Matched", f"Runbook {ref!r} named by runbookRef (and its match answers)")
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
