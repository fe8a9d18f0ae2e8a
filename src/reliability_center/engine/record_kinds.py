"""The kinds of record in an incident's durable audit log, and what each must carry. Pure.

Every record names who (``actor``), for which incident (``traceId``, ``tenant``), did what
(``action``) to what (``target``) with which ``outcome``. Beyond that a record carries what its
kind is about:

- a **write** changed the cluster (or would have, in shadow mode): the digests of the fields
  before and after it;
- a **proposal** opened a PatchPlan: what it proposes (there was nothing before it);
- a **restore** put a write's fields back (or dry-ran it, or left them to someone, or found the
  hold on them removed): both digests;
- a **refusal** is a write not made (policy, another tenant's object): why, in its message;
- a **decision** is a person's act on the incident: a vote on a governed step, the resolve, the
  merge of one of its pull requests (the forge says who merged), a rollback request of its fix; or
  the operator's on their behalf (an approval that expired, a resolve because every alert resolved):
  what was decided, in its message.

A refusal or a decision changes nothing in the cluster, so it has no digest to carry. The
``audit-complete`` gate (``engine/gates.py``) checks each record against its kind; the kind
follows from the outcome, so a record with an outcome no kind knows is reported too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: What every record carries, whatever its kind.
COMMON = ("traceId", "tenant", "actor", "action", "target", "outcome")


@dataclass(frozen=True)
class RecordKind:
    name: str
    outcomes: frozenset[str]
    carries: tuple[str, ...]
    """The fields this kind carries beyond ``COMMON``."""


WRITE = RecordKind("write", frozenset({"applied", "created", "exists", "dry-run", "unchanged"}), ("before", "after"))
PROPOSAL = RecordKind("proposal", frozenset({"proposed"}), ("after",))
RESTORE = RecordKind("restore", frozenset({"restored", "kept", "conflict", "hold-lost", "restore-tested"}),
                     ("before", "after"))
REFUSAL = RecordKind("refusal", frozenset({"denied"}), ("message",))
DECISION = RecordKind("decision", frozenset({"counted", "not-counted", "rejected", "expired", "resolved", "merged",
                                             "rollback-requested"}), ("message",))
KINDS = (WRITE, PROPOSAL, RESTORE, REFUSAL, DECISION)

_BY_OUTCOME = {outcome: kind for kind in KINDS for outcome in kind.outcomes}


def kind_of(outcome: str | None) -> RecordKind | None:
    return _BY_OUTCOME.get(outcome or "")


def lacking(record: dict[str, Any]) -> list[str]:
    """What the record should carry and does not (empty: complete). An unknown outcome lacks a kind."""
    kind = kind_of(record.get("outcome"))
    if kind is None:
        return [f"a known outcome (not {record.get('outcome')!r})"] if record.get("outcome") else ["outcome"]
    return [f for f in (*COMMON, *kind.carries) if not record.get(f)]
