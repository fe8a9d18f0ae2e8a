"""Audit records: one per write, in four places — the Incident timeline, a Kubernetes Event, a JSON log
line, and the incident's durable audit log.

Events expire (an hour by default) and the timeline keeps its newest 100 entries, so neither can
prove afterwards that every write was audited. The durable log is a ConfigMap per incident
(``rc-audit-<hash of the uid>``, owned by the Incident, named in ``status.auditLog``) with one
key per record, the same deterministic key as the Event's name: appending is a compare-and-swap
that only adds keys, so a step retried after a crash finds its record there already.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reliability_center.api.common import now_iso, now_micro
from reliability_center.api.incident import TimelineEntry
from reliability_center.gateway import records
from reliability_center.gateway.kube import Conflict, Kube, Ref

log = logging.getLogger("reliability_center.audit")


@dataclass(frozen=True)
class AuditRecord:
    trace_id: str
    tenant: str
    actor: str
    action: str
    target: str
    step: str
    before_digest: str | None
    after_digest: str | None
    outcome: str  # applied, dry-run, unchanged, restored, conflict, denied, created
    message: str = ""

    def timeline(self) -> TimelineEntry:
        return TimelineEntry(
            time=now_iso(), event=f"{self.action}:{self.outcome}", message=self.message, step=self.step,
            actor=self.actor, target=self.target, before_digest=self.before_digest, after_digest=self.after_digest,
        )

    def durable(self) -> dict[str, Any]:
        """The record as the durable log keeps it (microseconds: two writes of one step in one second keep
        their order)."""
        return {"time": now_micro(), **self.fields(), "message": self.message}

    def fields(self) -> dict[str, Any]:
        return {
            "traceId": self.trace_id, "tenant": self.tenant, "actor": self.actor, "action": self.action,
            "target": self.target, "step": self.step, "before": self.before_digest, "after": self.after_digest,
            "outcome": self.outcome,
        }


def emit(kube: Kube, incident: dict[str, Any], record: AuditRecord, durable: bool = True,
         at_once: bool = False) -> TimelineEntry:
    """Log, post the Event, append to the durable log; return the timeline entry the caller stores with the
    step's state. ``durable=False`` in shadow mode, which creates no object (Events aside). ``at_once``: in a
    turn (``one_append``), appended now with the turn's records so far, not at its end."""
    log.info("audit %s %s %s", record.action, record.outcome, record.target, extra={"audit": record.fields()})
    meta = incident["metadata"]
    # A deterministic name makes the Event exactly-once when a step is retried after a crash.
    # "exists" is the retry of a "created": the same write, so the same Event.
    outcome = {"exists": "created"}.get(record.outcome, record.outcome)
    key = "|".join([meta["uid"], record.step, record.action, record.target, outcome, record.after_digest or ""])
    hashed = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = f"{meta['name']}.{hashed}"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": {"reliability.center/trace-id": record.trace_id[:63]}},
        "involvedObject": {"apiVersion": incident["apiVersion"], "kind": "Incident", "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"]},
        "reason": "Audit" if record.outcome not in ("denied", "conflict") else "AuditRefused",
        "message": (f"traceId={record.trace_id} tenant={record.tenant} actor={record.actor} action={record.action} "
                    f"target={record.target} outcome={record.outcome} before={record.before_digest} "
                    f"after={record.after_digest} {record.message}")[:1024],
        "type": "Normal" if record.outcome not in ("denied", "conflict") else "Warning",
        "source": {"component": "reliability-center", **({"host": kube.identity} if kube.identity else {})},
        "reportingComponent": "reliability-center",
        "reportingInstance": kube.identity or "reliability-center",
        "eventTime": now_micro(),
        "action": record.action[:128],
        "firstTimestamp": now_iso(),
        "lastTimestamp": now_iso(),
        "count": 1,
    }
    posted = f"{meta['namespace']}/{name}"
    if posted not in _POSTED:  # a turn redone by this process (its status write failed) posts nothing again
        try:
            kube.create(event)
        except Conflict:
            pass  # already posted by an earlier process, killed before it recorded the step
        _POSTED.add(posted)
    if durable:
        turn = _turn(meta["uid"])
        if turn is not None:
            turn.pending.setdefault(hashed, json.dumps(record.durable(), sort_keys=True))
            if at_once:
                turn.flush(kube)
        else:
            append(kube, incident, hashed, record.durable())
    return record.timeline()


@dataclass
class _Turn:
    incident: dict[str, Any]
    pending: dict[str, str]
    """Records made, not appended yet: key → JSON line."""

    def flush(self, kube: Kube) -> None:
        if self.pending:
            _append_all(kube, self.incident, self.pending)
            self.pending = {}


_TURNS = threading.local()


def _turn(uid: str) -> _Turn | None:
    """This thread's turn of incident ``uid`` (``one_append``), if it is in one."""
    turn = getattr(_TURNS, "current", None)
    return turn if turn is not None and turn.incident["metadata"]["uid"] == uid else None


@contextlib.contextmanager
def one_append(kube: Kube, incident: dict[str, Any]) -> Iterator[None]:
    """The durable records this thread makes for ``incident`` inside the block (one turn of it, often several
    writes) go to its log in one write when the block ends, error or not, not in one write each.

    As crash-safe as a write per record: the turn's status is written after the block (``runner._turns``), so
    a crash before this append leaves the turn to be taken again whole, and its writes, finding their holds,
    make the same records under the same keys (their Events are still posted at once). A turn whose incident
    is resolved before anyone takes it again is not taken again: its restore makes the record of each write
    no status reported that it finds landed, from the write's snapshot under the same key, before it lets
    the hold go, and drops the snapshot of a write that never landed (``writes.Audited``). A read of the log
    inside the block (``read_log``) appends first."""
    previous, turn = getattr(_TURNS, "current", None), _Turn(incident, {})
    _TURNS.current = turn
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the turn's own error is the one to report; its redo appends
            turn.flush(kube)
        raise
    else:
        turn.flush(kube)
    finally:
        _TURNS.current = previous


def log_name(uid: str) -> str:
    """The name of an incident's durable audit log."""
    return f"rc-audit-{hashlib.sha256(uid.encode()).hexdigest()[:20]}"


def append(kube: Kube, incident: dict[str, Any], key: str, entry: dict[str, Any]) -> None:
    """Add one record to the durable log (never replacing a record already there)."""
    _append_all(kube, incident, {key: json.dumps(entry, sort_keys=True)})


def _append_all(kube: Kube, incident: dict[str, Any], lines: dict[str, str]) -> None:
    """Add records (key → JSON line) to the durable log in one write, never replacing one already there."""
    meta = incident["metadata"]
    ref = Ref("ConfigMap", meta["namespace"], log_name(meta["uid"]))
    # Likely new while the incident's status does not name its log yet (its first turn). Not "not in _SEEN":
    # update_configmap keeps the newest 1,000 there, and in a storm of 5,000 incidents every restore's record
    # missed it and tried a create first, refused (409) each time, before the read and the update.
    records.update_configmap(kube, ref, lambda data: {**lines, **data}, _SEEN,
                             metadata={"labels": {AUDIT_LABEL: meta["uid"]},
                                       "ownerReferences": [{"apiVersion": incident["apiVersion"], "kind": "Incident",
                                                            "name": meta["name"], "uid": meta["uid"]}]},
                             likely_new=not (incident.get("status") or {}).get("auditLog"))


def read_log(kube: Kube, namespace: str, uid: str) -> list[dict[str, Any]]:
    """The durable records of an incident, oldest first (this thread's records of it still to append, first
    appended: ``one_append``)."""
    turn = _turn(uid)
    if turn is not None:
        turn.flush(kube)
    data = ((kube.get(Ref("ConfigMap", namespace, log_name(uid))) or {}).get("data")) or {}
    return sorted((json.loads(v) for v in data.values()), key=lambda r: (r.get("time", ""), r.get("target", "")))


class _Recent:
    """The newest ``size`` names added, thread-safe: a bounded memory of what this process did."""

    def __init__(self, size: int):
        self._names: OrderedDict[str, None] = OrderedDict()
        self._size, self._lock = size, threading.Lock()

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._names

    def add(self, name: str) -> None:
        with self._lock:
            self._names[name] = None
            self._names.move_to_end(name)
            if len(self._names) > self._size:
                self._names.popitem(last=False)


#: The audit Events this process posted (or found posted): a step's pass redone in the same process, its turn's
#: status write refused, sends no second create of the same Event (tests/e2e/test_failover.py counts them).
_POSTED = _Recent(10_000)

AUDIT_LABEL = "reliability.center/audit-of"
#: Audit logs as last written (saves a read per append; a stale one fails its resourceVersion check).
_SEEN: dict[Any, dict[str, Any]] = {}
