"""The pull request body: what a reviewer needs to validate a Level 3 change.

Pure text rendering. The body carries the incident summary, the timeline so
far, snapshot references, the diff itself, how to roll back, and the
post-repair checklist (DESIGN.md section 6), so that the review happens in
one place. Forges cap bodies (GitHub: 65536 characters): every part is bounded.
"""

from __future__ import annotations

import re
from typing import Any

from reliability_center.api.patchplan import PatchPlan

MAX_BODY = 60000
MAX_DIFF = 40000
MAX_TIMELINE = 20

CHECKLIST = (
    "Audit log complete: traceId, tenant and action recorded for every write",
    "No write outside the Write Gateway on the touched objects",
    "Rollback tested: the revert of this merge commit applies cleanly (the operator checks it after the sync)",
    "SLO and metrics back within thresholds (performance incidents)",
    "Postmortem written and shared",
)


def marker(plan: PatchPlan) -> str:
    """A hidden line that ties a pull request to its PatchPlan (and its uid)."""
    meta = plan.metadata
    return f"<!-- reliability-center patchplan={meta.namespace}/{meta.name} uid={meta.uid} -->"


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _cell(value: Any, limit: int = 200) -> str:
    text = str(value if value is not None else "").replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(plan: PatchPlan, diff: str, base: str, *, incident: dict[str, Any] | None = None,
           events: list[tuple[str, str, str]] = ()) -> str:
    """Markdown for the pull request of ``plan``. ``events`` are (time, event, message) of the plan itself."""
    meta, spec = plan.metadata, plan.spec
    ref = f"{meta.namespace}/{meta.name}"
    parts = [
        marker(plan),
        f"Proposed by **reliability-center** for PatchPlan `{ref}`. This is a Level 3 change: "
        "**merging this pull request is the human validation**; Argo CD then syncs it, and the operator "
        "watches the sync.",
        "",
        "## Incident",
        *_incident(spec.incident_ref, incident),
        "",
    ]
    if spec.description:
        parts += ["## Why", spec.description[:8000], ""]
    parts += ["## Timeline so far", *_timeline(incident, events), ""]
    parts += ["## Snapshots", *_snapshots(incident), ""]
    changes = [f"- `{c.path}`: {c.operation}" + (f" `{c.yaml_path}`" if c.yaml_path else "") for c in spec.changes]
    shown = diff if len(diff) <= MAX_DIFF else diff[:MAX_DIFF] + "\n… (diff truncated; see the Files tab)\n"
    fence = _fence(shown)
    parts += ["## Changes", f"Built on `{base[:12]}` of `{spec.repository.base_branch}`.", "", *changes, "",
              f"{fence}diff", shown.rstrip("\n"), fence, ""]
    parts += [
        "## Rollback",
        f"- Ask the operator: `relctl rollback {ref}` (or `kubectl patch patchplan {meta.name} -n {meta.namespace} "
        "--type merge -p '{\"spec\":{\"rollback\":true}}'`). It opens a **revert pull request of the merge "
        "commit**; merging that revert is the rollback, and Argo CD syncs it back.",
        "- By hand: `git revert -m 1 <merge commit>` for a merge commit (plain `git revert <commit>` after a "
        "squash or fast-forward merge), pushed as its own branch and pull request.",
        "",
        "## Post-repair checklist",
        *[f"- [ ] {item}" for item in CHECKLIST],
    ]
    body = "\n".join(parts) + "\n"
    return body if len(body) <= MAX_BODY else body[: MAX_BODY - 40] + "\n… (body truncated)\n"


def revert_body(plan: PatchPlan, pr_number: int | None, merge_commit: str, diff: str) -> str:
    meta = plan.metadata
    ref = f"{meta.namespace}/{meta.name}"
    fence = _fence(diff)
    shown = diff if len(diff) <= MAX_DIFF else diff[:MAX_DIFF] + "\n… (diff truncated)\n"
    text = "\n".join([
        marker(plan),
        f"Rollback of PatchPlan `{ref}`: this reverts merge commit `{merge_commit}`"
        + (f" (pull request #{pr_number})." if pr_number else "."),
        "**Merging this pull request is the rollback**; Argo CD syncs it and the operator marks the plan RolledBack.",
        "",
        "## Changes",
        f"{fence}diff",
        shown.rstrip("\n"),
        fence,
        "",
        "## Post-repair checklist",
        *[f"- [ ] {item}" for item in CHECKLIST],
    ]) + "\n"
    return text[:MAX_BODY]


def _incident(ref: str | None, incident: dict[str, Any] | None) -> list[str]:
    if incident is None:
        return [f"Incident `{ref}` (not readable by the operator)." if ref else
                "No incident: this PatchPlan was created directly."]
    spec = incident.get("spec") or {}
    status = incident.get("status") or {}
    name = (incident.get("metadata") or {}).get("name", ref)
    rows = [("Incident", name), ("Summary", spec.get("summary")), ("Category", spec.get("category")),
            ("Severity", spec.get("severity")), ("Tenant", spec.get("tenant")), ("Module", spec.get("module")),
            ("Trace id", status.get("traceId") or spec.get("traceId")), ("Phase", status.get("phase")),
            ("Runbook", status.get("runbook"))]
    return ["| | |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in rows if v]]


def _timeline(incident: dict[str, Any] | None, events: list[tuple[str, str, str]] | tuple) -> list[str]:
    entries = [(e.get("time", ""), e.get("event", ""), e.get("message", ""))
               for e in ((incident or {}).get("status") or {}).get("timeline") or [] if isinstance(e, dict)]
    entries = sorted(entries + list(events), key=lambda e: e[0])[-MAX_TIMELINE:]
    if not entries:
        return ["(no events yet)"]
    return ["| time | event | detail |", "|---|---|---|",
            *[f"| {_cell(t, 40)} | {_cell(e, 60)} | {_cell(m)} |" for t, e, m in entries]]


def _snapshots(incident: dict[str, Any] | None) -> list[str]:
    status = (incident or {}).get("status") or {}
    names = list(status.get("snapshots") or [])
    for step in status.get("steps") or []:
        names += [s for s in step.get("snapshots") or [] if s not in names]
    if not names:
        return ["None taken: a Level 3 change is undone through Git (see Rollback)."]
    return [f"- `{name}`" for name in names[:50]]
