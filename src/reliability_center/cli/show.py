"""What relctl prints about an incident's approvals and gates: the same lines in ``relctl steps``,
``relctl gates`` and ``relctl describe incident``."""

from __future__ import annotations

from typing import Any, get_args

from reliability_center.api.incident import GateName


def approval_lines(approval: dict[str, Any] | None) -> list[str]:
    """Who approved, when, what did not count and why, what is still needed."""
    if not approval:
        return []
    lines = [f"plan {approval.get('planDigest') or '-'}"
             + (f", asked at {approval['requestedAt']}, escalates at {approval.get('deadline')}"
                if approval.get("requestedAt") else "")]
    for vote in approval.get("votes") or []:
        verdict = "counted" if vote.get("counted") else f"not counted: {vote.get('reason')}"
        lines.append(f"{vote.get('decision', '').lower()}d by {vote.get('user')} at {vote.get('at') or '?'} "
                     f"({verdict})")
    lines.append("approved" if approval.get("approved") else (approval.get("missing") or "waiting"))
    return lines


def format_gates(status: dict) -> str:
    """``relctl gates``: every gate (those not evaluated yet too), what a failing one misses, the verdict."""
    gates = {g["name"]: g for g in status.get("gates") or []}
    closed = (status.get("times") or {}).get("closed")
    if not gates and not closed:
        return f"gates not evaluated yet (phase {status.get('phase') or 'not set'})"
    names = [*get_args(GateName), *(n for n in gates if n not in get_args(GateName))]

    def line(value: object) -> str:
        return " ".join(str(value or "").split())

    rows = [("GATE", "PASSED", "REASON", "EVIDENCE", [])]
    for name in names:
        gate = gates.get(name)
        rows.append((name, "-", "(not evaluated)", "", []) if gate is None else
                    (name, "yes" if gate.get("passed") else "no", line(gate.get("reason")), line(gate.get("evidence")),
                     [] if gate.get("passed") else gate.get("missing") or []))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = []
    for *cells, evidence, missing in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + evidence)
        out += [f"    missing: {line(m)}" for m in missing]
    failing = sum(1 for n in names if not gates.get(n, {}).get("passed"))
    out.append(f"closed at {closed}" if closed else f"not closed: {failing} of {len(names)} gates failing")
    return "\n".join(o.rstrip() for o in out)
