"""The postmortem draft: an incident's record (status, PatchPlans, durable audit log) as Markdown.

Pure and deterministic: every time comes from the incident or its records, never the clock, so the
same inputs give the same draft. Text from alerts is put on one line and escaped, so a summary with
``|`` or newlines cannot break a table, start a heading or open a list.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

TODO = "_to be completed_"
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)
#: Inline markup (``|`` ends a table cell). Every free text follows a fixed prefix on its line, so
#: block markup (``#``, ``-``, ``1.``) cannot start there; an ``_`` inside a word is no emphasis.
_INLINE = re.compile(r"[\\`*\[\]<>|~]|(?<![^\W_])_|_(?![^\W_])")
_URL = re.compile(r"https?://[^\s<>`|\\]+")


def _md(value: Any) -> str:
    """Free text as inline Markdown: one line, its markup escaped."""
    line = " ".join(str(value).split()) if value is not None else ""
    return _INLINE.sub(lambda m: "\\" + m.group(), line)


def _code(value: Any) -> str:
    """An identifier (name, target, digest) as a code span; ``-`` when absent."""
    if value in (None, ""):
        return "-"
    return "`" + " ".join(str(value).split()).replace("`", "'").replace("|", r"\|") + "`"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return empty
    return "\n".join([_row(*header), _row(*["---"] * len(header)), *(_row(*r) for r in rows)])


def _when(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def duration(start: Any, end: Any) -> str:
    """``end - start`` like ``1h2m3s`` or ``4m12s`` (whole seconds); ``n/a`` when either is unknown."""
    a, b = _when(start), _when(end)
    if a is None or b is None:
        return "n/a"
    seconds = round((b - a).total_seconds())
    sign, (hours, rest) = "-" if seconds < 0 else "", divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return sign + (f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s" if minutes else f"{secs}s")


def _events(timeline: list[dict], audit: list[dict]) -> list[dict]:
    """Timeline entries, then the audit records the timeline no longer holds (it keeps its newest 100),
    by time; a write in both is shown once. Equal times keep the order given."""
    rows = [{"time": e.get("time"), "step": e.get("step"), "event": e.get("event"), "actor": e.get("actor"),
             "target": e.get("target"), "before": e.get("beforeDigest"), "after": e.get("afterDigest"),
             "message": e.get("message")} for e in timeline]
    audited = [{"time": r.get("time"), "step": r.get("step"), "event": f"{r.get('action')}:{r.get('outcome')}",
                "actor": r.get("actor"), "target": r.get("target"), "before": r.get("before"), "after": r.get("after"),
                "message": r.get("message")} for r in audit]

    def write(row: dict) -> tuple:
        return row["step"], row["event"], row["target"], row["before"], row["after"]

    held = {write(row) for row in rows if row["target"]}
    rows += [row for row in audited if write(row) not in held]  # not twice what the timeline still holds
    return sorted(rows, key=lambda r: _when(r["time"]) or _EPOCH)


def _change(row: dict) -> str:
    return f"{_code(row['before'])} → {_code(row['after'])}" if row["before"] or row["after"] else ""


def _summary(spec: dict, status: dict) -> str:
    return "\n".join([
        "## Summary", "",
        f"- Summary: {_md(spec.get('summary')) or '-'}",
        f"- Category: {_code(spec.get('category'))}, severity {_code(spec.get('severity'))}",
        f"- Runbook: {_code(status.get('runbook') or spec.get('runbookRef'))}",
        f"- Phase: {_code(status.get('phase'))}",
    ])


def _impact(meta: dict, spec: dict, times: dict, audit: list[dict]) -> str:
    tenants = sorted(({spec.get("tenant")} | {r.get("tenant") for r in audit}) - {None})
    labelled = {(s.get("labels") or {}).get("module") for s in spec.get("signals") or []}
    modules = sorted(({spec.get("module")} | labelled) - {None})
    detected, resolved = times.get("detected"), times.get("resolved")
    span = (f"{duration(detected, resolved)} (detected {_md(detected) or 'n/a'} → resolved {_md(resolved)})"
            if resolved else f"unknown (detected {_md(detected) or 'n/a'} → not resolved yet)")
    return "\n".join([
        "## Impact", "",
        "- Tenants: " + ", ".join("all tenants" if t == "*" else _code(t) for t in tenants),
        "- Modules: " + (", ".join(_code(m) for m in modules) or "-"),
        f"- Namespace: {_code(meta.get('namespace'))}",
        f"- Duration: {span}",
    ])


def _number(value: Any) -> str:
    return "-" if value is None else _md(f"{value:g}" if isinstance(value, (int, float)) else value)


def _detection(spec: dict) -> str:
    rows = [[_md(s.get("name")), _md(s.get("source")), f"{_number(s.get('value'))} / {_number(s.get('threshold'))}",
             _md(s.get("time")) or "-",
             ("yes" + (f" ({_md(s['resolvedAt'])})" if s.get("resolvedAt") else "")) if s.get("resolved") else "no"]
            for s in spec.get("signals") or []]
    return "## Detection\n\n" + _table(["Signal", "Source", "Value / threshold", "Time", "Resolved"], rows,
                                       "_no signals recorded_")


def _timeline(events: list[dict]) -> str:
    rows = [[_md(e["time"]), _code(e["step"]), _md(e["event"]), _md(e["actor"]), _code(e["target"]), _change(e),
             _md(e["message"])] for e in events]
    return "## Timeline\n\n" + _table(["Time", "Step", "Event", "Actor", "Target", "Before → after", "Message"],
                                      rows, "_no events recorded_")


def _actions(steps: list[dict], events: list[dict]) -> str:
    lines = ["## Actions by level"]
    for level in sorted({s.get("level", 0) for s in steps}):
        lines += ["", f"### Level {level}", ""]
        for step in (s for s in steps if s.get("level", 0) == level):
            why = " — ".join(_md(x) for x in (step.get("reason"), step.get("message")) if x)
            targets = ", ".join(_code(t) for t in step.get("targets") or []) or "-"
            lines.append(f"- {_code(step.get('name'))} ({_md(step.get('action'))}): **{_md(step.get('state'))}**"
                         + (f" ({why})" if why else "") + f"; targets: {targets}")
            lines += [f"  - {_code(e['target'])}: {_change(e) or '-'} ({_md(e['event'])} at {_md(e['time'])})"
                      for e in events if e["target"] and e["step"] == step.get("name")]
    return "\n".join(lines if steps else [*lines, "", "_no steps_"])


def _gates(gates: list[dict]) -> str:
    def cell(gate: dict) -> str:
        missing = ", ".join(_md(m) for m in gate.get("missing") or [])
        return "; ".join(filter(None, [_md(gate.get("evidence")), missing and f"missing: {missing}"])) or "-"

    rows = [[_code(g.get("name")), "yes" if g.get("passed") else "no", _md(g.get("reason")), cell(g)] for g in gates]
    return "## Post-repair gates\n\n" + _table(["Gate", "Passed", "Reason", "Evidence / missing"], rows,
                                               "_not evaluated yet_")


def _link(url: Any) -> str:
    return f"<{url}>" if isinstance(url, str) and _URL.fullmatch(url) else _code(url)


def _plans(plans: list[dict] | None, status: dict) -> str:
    if plans is not None:
        found = [((p.get("metadata") or {}).get("name"), (p.get("status") or {}).get("phase"),
                  ((p.get("status") or {}).get("pullRequest") or {}).get("url")) for p in plans]
    else:  # the incident's own record of its plans
        found = [(p.get("name"), p.get("phase"), p.get("pullRequest")) for p in status.get("plans") or []]
    rows = [[_code(name), _code(phase), _link(url)] for name, phase, url in found]
    return "## Pull requests\n\n" + _table(["PatchPlan", "Phase", "Pull request"], rows, "_none_")


def _key_times(spec: dict, times: dict) -> str:
    signal_times = [t for s in spec.get("signals") or [] if (t := _when(s.get("time")))]
    first_signal = min(signal_times).isoformat() if signal_times else None
    detected = times.get("detected")
    return "\n".join([
        "## Key times", "",
        f"- MTTD (first signal → detected): {duration(first_signal, detected)}",
        f"- Time to first action: {duration(detected, times.get('firstAction'))}",
        f"- Time to mitigate: {duration(detected, times.get('mitigated'))}",
        f"- Time to resolve: {duration(detected, times.get('resolved'))}",
    ])


#: A rule fired late when the incident was known (detected, or another signal fired) this long before it.
LATE_AFTER_SECONDS = 300
#: A rule flapped when its alert resolved and fired again this often while the incident was open.
FLAPPING_REFIRES = 2
#: Late: the threshold moves this way (fires earlier); flapping: the inverse (fires later, less often).
EARLIER = 0.8


def threshold_proposals(spec: dict, times: dict) -> list[dict]:
    """For each alerting rule behind the incident's Alertmanager signals that fired late or flapped, the
    edit of its threshold the postmortem proposes: ``{"alert", "factor", "why"}`` (factor < 1: fire
    earlier; > 1: fire later). A rule that did both gets none: the two ask for opposite moves."""
    signals = [s for s in spec.get("signals") or [] if s.get("source") == "alertmanager" and s.get("name")]
    starts = [t for s in signals if (t := _when(s.get("time")))]
    known = [t for t in [_when(times.get("detected")), *starts] if t]
    first = min(known) if known else None
    out = []
    for alert in sorted({s["name"] for s in signals}):
        mine = [s for s in signals if s["name"] == alert]
        fired = min((t for s in mine if (t := _when(s.get("time")))), default=None)
        late = (fired - first).total_seconds() if fired and first else 0.0
        refires = max(int(s.get("refires") or 0) for s in mine)
        is_late, flapped = late >= LATE_AFTER_SECONDS, refires >= FLAPPING_REFIRES
        if is_late and not flapped:
            out.append({"alert": alert, "factor": EARLIER,
                        "why": f"fired {duration(first.isoformat(), fired.isoformat())} after the incident was first "
                               f"known ({first.isoformat()}): its threshold × {EARLIER:g} fires earlier"})
        elif flapped and not is_late:
            out.append({"alert": alert, "factor": round(1 / EARLIER, 6),
                        "why": f"resolved and fired again {refires} times while the incident was open: its "
                               f"threshold × {1 / EARLIER:g} fires less often"})
    return out


def _thresholds(spec: dict, times: dict, rules_path: str | None, refused: str | None) -> str:
    proposals = threshold_proposals(spec, times)
    if not proposals:
        return "## Detection thresholds\n\n_no rule fired late or flapped_"
    if refused:
        where = f"not proposed as an edit: {_md(refused)}"
    elif rules_path:
        where = (f"proposed as an edit of {_code(rules_path)} in this pull request (drop it to keep the rules as they "
                 "are; a rule there whose expression does not end in a comparison to a number is left as it is)")
    else:
        where = "not proposed as an edit: the operator's settings name no rules file (alertRulesPath)"
    return "\n".join(["## Detection thresholds", "", f"Each {where}.", "",
                      *(f"- {_code(p['alert'])}: {_md(p['why'])}" for p in proposals)])


def render(incident: dict, plans: list[dict] | None = None, audit: list[dict] | None = None,
           rules_path: str | None = None, rules_refused: str | None = None) -> str:
    """The draft of ``incident`` with its PatchPlans and its durable audit records (ordered by time, then key);
    ``rules_path``: the alerting rules file in Git where threshold edits are proposed (``rules_refused``: why
    the one the settings name cannot be)."""
    meta, spec, status = incident.get("metadata") or {}, incident.get("spec") or {}, incident.get("status") or {}
    times, audit = status.get("times") or {}, audit or []
    events = _events(status.get("timeline") or [], audit)
    items = [f"- [ ] {_md(item)}" for item in (status.get("runbookSpec") or {}).get("postmortem") or []]
    return "\n\n".join([
        f"# Postmortem: {_code(meta.get('name'))} (traceId {_code(status.get('traceId') or spec.get('traceId'))})",
        _summary(spec, status),
        _impact(meta, spec, times, audit),
        _detection(spec),
        _thresholds(spec, times, rules_path, rules_refused),
        _timeline(events),
        _actions(status.get("steps") or [], events),
        _gates(status.get("gates") or []),
        _plans(plans, status),
        f"## Root cause\n\n{TODO}",
        f"## Prevention\n\n{TODO}",
        "## Action items\n\n" + ("\n".join(items) or "_none in the runbook_"),
        _key_times(spec, times),
    ]) + "\n"
