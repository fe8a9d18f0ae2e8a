"""The local cluster's kube-apiserver audit log: which writes reached the apiserver, read outside the operator.

hack/cluster.sh starts every cluster with hack/audit-policy.yaml: the writes (create, update,
patch, delete) to the kinds the operator changes are logged once each, at stage ResponseComplete,
as JSON lines (audit.k8s.io/v1 Events) in ``$KWOK_WORKDIR/clusters/<name>/logs/audit.log``. The
operator's requests carry a User-Agent naming their replica (gateway/kube.py ``user_agent``), so
a test counts each replica's writes per object and field, including the ones the apiserver
refused (a duplicate create's 409 is a request that reached it all the same).

Take a position before an action (``AuditLog.position``), then read the writes after it
(``AuditLog.writes(since=...)``, across a rotation of the file too); both ``sync`` first, so that
every request answered so far is in the file (the apiserver logs a request's ResponseComplete just
after it answered).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.support.cluster import CACHE, api, wait_for

CLUSTER = CACHE / "kwok" / "clusters" / os.environ.get("RC_CLUSTER", "reliability-center")
PATH = CLUSTER / "logs" / "audit.log"
#: The operator's User-Agent: reliability-center/<version> (replica <identity>).
REPLICA = re.compile(r"^reliability-center/\S+ \(replica (?P<identity>[^)]+)\)")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def parse_time(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Write:
    """One write request as the apiserver logged it once it answered."""

    verb: str
    user: str
    user_agent: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    dry_run: bool
    received: datetime
    answered: datetime
    request: Any
    """The request body (the object, the JSON or merge patch) when the policy logs it (level Request)."""
    uri: str

    @classmethod
    def of(cls, event: dict[str, Any]) -> Write:
        ref = event.get("objectRef") or {}
        return cls(verb=event["verb"], user=event["user"].get("username", ""), user_agent=event.get("userAgent", ""),
                   resource=ref.get("resource", ""), subresource=ref.get("subresource", ""),
                   namespace=ref.get("namespace", ""), name=ref.get("name", ""),
                   code=(event.get("responseStatus") or {}).get("code", 0),
                   dry_run="dryRun=" in event["requestURI"],
                   received=parse_time(event["requestReceivedTimestamp"]),
                   answered=parse_time(event["stageTimestamp"]), request=event.get("requestObject"),
                   uri=event["requestURI"])

    @property
    def replica(self) -> str | None:
        """The operator replica that sent it (None: not the operator: a test, kubectl, a controller)."""
        match = REPLICA.match(self.user_agent)
        return match["identity"] if match else None

    @property
    def ok(self) -> bool:
        return 200 <= self.code <= 299

    @property
    def may_have_landed(self) -> bool:
        """Succeeded, or its outcome unknown: the apiserver answers 504 to a request whose client was killed
        mid-request (or that outlived its timeout), and the write may have been made all the same (seen in
        test_crash: a patch answered 504 whose value the next process's patch found there and tested). Such a
        request is an effect; if it made nothing, the retry that then follows names the same effect and
        ``repeated`` judges the pair. Other 5xx answers (an apiserver not ready) made nothing."""
        return self.ok or self.code == 504

    @property
    def target(self) -> str:
        """resource[/subresource] namespace/name, as the tests name what was written."""
        return f"{self.resource}{'/' + self.subresource if self.subresource else ''} {self.namespace}/{self.name}"


#: Creates counted per request whatever the answer: their names are the operator's own, one per write
#: (an audit Event per record, a replay Job per run), so a second create is a repeat even when it got 409.
NAMED_PER_WRITE = {"events", "jobs"}


def effects(writes: list[Write]) -> dict[tuple, list[Write]]:
    """What the writes did, each effect with the requests that did it: a create of a per-write name
    (every request that named it: ``NAMED_PER_WRITE``), another create, a delete, and per field the value a write
    set or removed (a JSON patch's operations; a ConfigMap's data keys that a create or update changed from the
    previous write of it in ``writes``); each but the first kind counted when it succeeded or was cut off by its
    client's kill (``Write.may_have_landed``). Status writes (the incident's
    own bookkeeping, rewritten whole) and Leases (the election's renewals) are not effects.

    Exactly once is then: every effect has one request. The same field set to the same value twice is a
    repeat; setting it to another value is another effect."""
    done: dict[tuple, list[Write]] = {}
    data: dict[str, dict[str, str]] = {}  # a ConfigMap's data as its last successful create or update set it
    deleted: dict[str, int] = {}  # an object deleted and made again is another object: its effects are new
    existing: set[str] = set()  # objects a write in ``writes`` was seen to make or change, not deleted since
    for write in writes:
        if write.dry_run or write.subresource == "status" or write.resource == "leases":
            continue
        found: list[tuple] = []
        life = deleted.get(write.target, 0)
        # A create answered 504 (its client killed mid-request) of an object known to exist could not have
        # landed: a create of an existing name is always refused. Seen in test_crash: two incidents of one
        # process creating their shared rc-isolations, the second cut off by the kill 12 ms after the first's 201.
        refused_create = write.verb == "create" and not write.ok and write.target in existing
        if write.verb == "create" and write.name \
                and (write.resource in NAMED_PER_WRITE or write.may_have_landed and not refused_create):
            found.append(("create", write.target, life))
        elif write.verb == "delete" and write.may_have_landed:
            found.append(("delete", write.target, life))
            deleted[write.target] = life + 1
            data.pop(write.target, None)
            existing.discard(write.target)
        elif write.verb == "patch" and write.may_have_landed and isinstance(write.request, list):
            found += [("set", write.target, path, op, value, life) for path, op, value in _operations(write.request)]
        if write.verb in ("create", "update", "patch") and write.ok:
            existing.add(write.target)
        if write.resource == "configmaps" and write.verb in ("create", "update") and write.may_have_landed \
                and isinstance(write.request, dict) and not refused_create:
            new, old = write.request.get("data") or {}, data.get(write.target, {})
            data[write.target] = new
            found += [("set", write.target, f"/data/{k}", "replace", json.dumps(v), life) for k, v in new.items()
                      if old.get(k) != v]
            found += [("set", write.target, f"/data/{k}", "remove", "null", life) for k in old if k not in new]
        for effect in found:
            done.setdefault(effect, []).append(write)
    return done


def _operations(patch: list[dict[str, Any]]):
    """A JSON patch's operations as (path, op, value); a ``remove`` has no value of its own: the value its
    ``test`` found there says what it removed (the same array index may hold another item next time)."""
    tested: dict[str, Any] = {}
    for op in patch:
        if op.get("op") == "test":
            tested[op["path"]] = op.get("value")
            continue
        value = op["value"] if "value" in op else tested.get(op["path"])
        yield op["path"], op["op"], json.dumps(value, sort_keys=True)


def repeated(writes: list[Write], *, retries_after_kills: bool = False) -> dict[tuple, list[str]]:
    """The effects done more than once, each with its requests (answer, replica, time): empty when every
    write reached the apiserver once.

    With ``retries_after_kills`` (tests that SIGKILL operator processes): a create that later processes
    sent again and the apiserver refused with 409 is the retry of a write whose process was killed before
    it could record it (deterministic names make it idempotent), not a repeat; so is a request the kill cut
    off (5xx). Whatever the test, a request sent again by its process after the apiserver failed it (5xx:
    the operator retries those, ``gateway.kube.transient``) is not a repeat either. One process sending an
    effect twice after an answer that was not a failure, or a second request that succeeded, still is."""
    return {effect: [f"{w.code} {w.replica} {w.received.time()}" for w in ws]
            for effect, ws in effects(writes).items()
            if len(ws) > 1 and not _retried(ws, across_processes=retries_after_kills)}


def _retried(requests: list[Write], *, across_processes: bool) -> bool:
    """One effect's requests, in order, are the retries of one write: at most one made it (2xx), the others
    were refused (409) or failed (5xx: an apiserver error, or its client killed mid-request); a process sent
    it again only after the apiserver failed its request; other processes only ``across_processes``."""
    last_of: dict[str, int] = {w.replica: i for i, w in enumerate(requests)}
    return (across_processes or len(last_of) == 1) and sum(w.ok for w in requests) <= 1 \
        and all(w.ok or w.code == 409 or w.code >= 500 for w in requests) \
        and all(w.code >= 500 for i, w in enumerate(requests) if i != last_of[w.replica])


@dataclass(frozen=True)
class Position:
    """A place in the log: the file (its inode: the apiserver rotates it, hack/kwokctl.yaml) and an offset."""

    inode: int
    offset: int


class AuditLog:
    """The apiserver's audit log of the cluster the tests run on (RC_CLUSTER)."""

    def __init__(self, path=PATH):
        self.path = path

    def position(self) -> Position:
        """Where the log ends now, every request answered so far included: read from here with ``since``."""
        self.sync()
        return self._end()

    def _end(self) -> Position:
        assert self.path.exists(), f"{self.path}: no audit log (a cluster made before hack/audit-policy.yaml?)"
        stat = self.path.stat()
        return Position(stat.st_ino, stat.st_size)

    def sync(self) -> None:
        """Wait until the requests answered so far are in the file: a marker write (a dry-run create,
        which makes nothing) sent now is logged after them."""
        marker = f"audit-sync-{uuid.uuid4().hex[:12]}"
        start = self._end()
        api().create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": marker, "namespace": "default"}},
                     dry_run=True)
        wait_for(lambda: any(w.name == marker for w in self._read(start)), timeout=10, interval=0.05,
                 what="the apiserver to log the marker write")

    def writes(self, since: Position | None = None, *, namespace: str | None = None,
               operator: bool = False) -> list[Write]:
        """The writes logged after ``since`` (a ``position``; None: the whole file), in the order the apiserver
        logged them; only ``namespace``'s; only the operator's (any replica) with ``operator``. Dry runs are
        left out."""
        self.sync()
        return [w for w in self._read(since) if not w.dry_run and (namespace is None or w.namespace == namespace)
                and (not operator or w.replica is not None)]

    def _read(self, since: Position | None) -> list[Write]:
        data = self._bytes(since)
        # A line still being written (no newline yet) is read next time.
        lines = data[:data.rfind(b"\n") + 1].splitlines()
        events = (_event(line) for line in lines if line.strip())
        return [Write.of(e) for e in events if e.get("stage") == "ResponseComplete" and e.get("verb") in WRITE_VERBS]

    def _bytes(self, since: Position | None) -> bytes:
        """The log after ``since``: across a rotation, the rest of the file it was then (kept beside the new
        one as ``audit-<time>.log``), then the new file."""
        current = self.path.stat().st_ino
        if since is None or since.inode == current:
            return _tail(self.path, since.offset if since else 0)
        rotated = [p for p in self.path.parent.glob("audit-*.log") if p.stat().st_ino == since.inode]
        return b"".join(_tail(p, since.offset) for p in rotated) + _tail(self.path, 0)


def _tail(path, offset: int) -> bytes:
    with open(path, "rb") as log:
        log.seek(offset)
        return log.read()


_START = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1"'


def _event(line: bytes) -> dict[str, Any]:
    """One logged event; an apiserver killed mid-line (tests/support/apiserver.py) leaves a torn line that
    the restarted one continues: the event after the tear is whole."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return json.loads(line[line.rfind(_START):])
