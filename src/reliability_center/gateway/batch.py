"""Group commit: the writes of many incident steps to one object, sent as one JSON patch.

In an outage hundreds of incidents write into one shared object (a flags store);
one patch each would make the apiserver re-encode the whole object hundreds of
times. So a writer whose object has a patch in flight waits, and when that patch
is answered one of the waiting writers sends all of their parts at once: the
batch forms from the writers that arrive while a patch is in flight, and from
the writers of the object on their way (announced before their read) — those
that set out after the batch took the lead for at most ``WINDOW``, so that a
storm's passes, arriving staggered, still go together. A lone writer, with
nobody on the way, is sent at once, never delayed.

The writers of a busy object plan on one read of it: the apiserver's last
answer about it (the response to the last patch, or a read), while it is under
``FRESH`` seconds old, rather than a read each (``read``). A flags store of
5,000 tenants is about 1 MB: each restore read it three times on the way to its
patch (rehearsal, restore, giving back) besides the gates' own read.

Each part plans itself (the holds planners, ``gateway/holds.py``) on the object
as the parts before it in the batch leave it, so the combined patch carries each
part's own ``test`` operations and stays a compare-and-swap on exactly the fields
each part changes. A part whose plan now differs from the one its writer recorded
(its snapshot), or that cannot be planned any more, is refused alone (Conflict:
its writer reads again and plans again). When the combined patch fails, it is
planned again on a fresh read, and if it fails again the batch is split in halves,
each sent on its own, until the part that fails is alone: one bad part never
fails the others.

``combine`` is pure; ``GroupCommit`` is the send loop.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer

from reliability_center.gateway.holds import HeldElsewhere
from reliability_center.gateway.kube import Conflict, Invalid, Kube, NotFound, Ref
from reliability_center.gateway.leaves import ABSENT, read

Ops = list[dict[str, Any]]
#: Seconds a batch about to go waits, at most, for the writers of its object that set out after it took the
#: lead (only while one of them is on its way). 300 incidents posted eight at a time to a running operator:
#: 28 and 31 patches of their store with 0.1 s, 61 without (tests/e2e/test_group_commit.py); the steps of a
#: storm wait at most this long for their batch-mates.
WINDOW = 0.1
#: Seconds an answer of the apiserver about an object (a read, or the response to a patch of it) serves its
#: next writers as their read. An older copy only costs a refused patch (every part tests the fields it
#: changes, and the labels the write policy judged: gateway/writes.judged_labels) and a fresh read.
FRESH = 1.0
#: Seconds an answer is kept at most (the basis of a batch of that object, whatever its age: a stale one
#: costs a refused patch and a fresh read); then dropped, so that objects no longer written hold no memory.
KEPT = 60.0


@dataclass(frozen=True)
class Part:
    """One step's change to an object: ``plan`` gives its patch on the object as it will be and what the
    patch means (the values before, the holds); ``expect`` is that meaning as the writer planned and
    recorded it. The part goes into a batch only when they agree."""

    plan: Callable[[dict[str, Any]], tuple[Ops, Any]]
    expect: Any


@dataclass
class Combined:
    ops: Ops = field(default_factory=list)
    taken: list[int] = field(default_factory=list)
    """Indexes of the parts the patch carries (or that need no write any more)."""
    refused: dict[int, Exception] = field(default_factory=dict)
    """Index → why the part cannot go in: its writer plans again (Conflict) or gets the error."""
    moved: list[int] = field(default_factory=list)
    """Indexes of the refused parts whose plan there no longer means what their writer recorded."""
    after: dict[str, Any] | None = None
    """The object as the patch would leave it."""


class NotApplied(Exception):
    """A patch's ``test`` fails on the object (or a path it names is missing)."""


def apply(obj: dict[str, Any], ops: Ops) -> dict[str, Any]:
    """The patch applied to a copy of ``obj`` as the apiserver applies it (evanphx/json-patch v4: a
    ``test`` for null passes on a missing key). ``obj`` is never changed: each operation copies the
    containers on its path and shares the rest (a deep copy of a flags store of 1,000 tenants took
    6.6 ms, per part of a batch, on the way to its write)."""
    out = obj
    for op in ops:
        if op["op"] == "test" and op.get("value") is None:
            if read(out, op["path"]) not in (ABSENT, None):
                raise NotApplied(f"{op['path']} is set")
            continue
        if op["op"] in ("add", "remove", "replace"):
            out = _own_path(out, op["path"])
        elif op["op"] != "test":  # move, copy: not planned by the gateway; two paths, so the whole copied
            out = copy.deepcopy(out)
        try:
            out = jsonpatch.apply_patch(out, [copy.deepcopy(op)], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise NotApplied(str(exc)) from None
    return out


def _own_path(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """A shallow copy of ``doc`` and of every container from it to the parent of ``path`` (what an add,
    remove or replace there changes in place); everything else is shared with ``doc``."""
    root = dict(doc)
    node: Any = root
    for part in jsonpointer.JsonPointer(path).parts[:-1]:
        if isinstance(node, dict) and part in node:
            key: Any = part
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            key = int(part)
        else:
            break  # no such container: jsonpatch says so (NotApplied)
        child = node[key]
        if isinstance(child, dict):
            node[key] = dict(child)
        elif isinstance(child, list):
            node[key] = list(child)
        else:
            break
        node = node[key]
    return root


def combine(current: dict[str, Any], parts: list[Part]) -> Combined:
    """One patch for ``parts`` in their order: each planned on ``current`` as the parts before it leave it."""
    out, working = Combined(), current
    for index, part in enumerate(parts):
        try:
            ops, meaning = part.plan(working)
        except HeldElsewhere as clash:  # taken by a batch-mate or another writer since: the writer decides again
            out.refused[index] = Conflict(str(clash))
            continue
        except Exception as exc:  # noqa: BLE001 - that part's own failure, handed to its writer alone
            out.refused[index] = exc
            continue
        if meaning != part.expect:
            out.refused[index] = Conflict("the object moved since the step planned its write")
            out.moved.append(index)
            continue
        try:
            working = apply(working, ops) if ops else working
        except NotApplied as exc:
            out.refused[index] = Conflict(str(exc))
            continue
        out.ops += ops
        out.taken.append(index)
    out.after = working
    return out


@dataclass(frozen=True)
class _Key:
    target: Ref
    dry_run: bool


@dataclass(eq=False)
class Writer:
    """One writer of an object, from its read to its send (``GroupCommit.writing``)."""

    key: _Key
    number: int
    since: float
    """When it set out (``time.monotonic``), before its read."""
    read_at: float | None = None
    """When the answer it plans on was asked (``GroupCommit.read``); None: an object its caller listed before."""


@dataclass
class _Pending:
    part: Part
    seen: dict[str, Any]
    done: bool = False
    error: BaseException | None = None


@dataclass(frozen=True)
class _Selection:
    """Objects a step's action listed (``GroupCommit.selecting``): it may be about to write any of them."""

    number: int
    namespace: str
    kind: str
    matches: Callable[[dict[str, str]], bool]
    """Whether an object with these labels is among them."""

    def covers(self, target: Ref, labels: dict[str, str]) -> bool:
        return target.namespace == self.namespace and target.kind == self.kind and self.matches(labels)


class GroupCommit:
    """Sends the parts of the writers of one object together; thread-safe (the reconciles run on threads).

    A batch about to go waits for the writers of its object already on their way: announced from before
    their read (``writing``; an action's listing, ``selecting``) until they send or leave. Only writers that
    are running count: one waiting in a ``send`` of its own (of any object) is not waited for, so two
    batches never wait on each other.
    """

    def __init__(self, kube: Kube, window: float = WINDOW, fresh: float = FRESH):
        self.kube = kube
        self.window = window
        self.fresh = fresh
        self._cond = threading.Condition()
        self._waiting: dict[_Key, list[_Pending]] = {}
        self._busy: set[_Key] = set()
        self._answers: dict[Ref, tuple[float, dict[str, Any]]] = {}
        """Each object as the apiserver last answered about it (a real patch's response, a read), with when
        (``time.monotonic``: a read's asking, a patch's answer): the next writers' read, the next batch's basis."""
        self._coming: dict[_Key, dict[int, int]] = {}
        """Writers on their way (reading the object, planning, taking their snapshot): number → thread."""
        self._acting: dict[int, list[_Selection]] = {}
        """Threads running a step's action → what it listed so far."""
        self._sending: set[int] = set()
        """Threads inside ``send``: never waited for."""
        self._numbers = 0

    def read(self, target: Ref, writer: Writer | None = None, *, fresh: bool = False) -> dict[str, Any] | None:
        """``target`` as the apiserver answered about it less than ``FRESH`` seconds ago, else read now
        (``fresh``: read now, whatever is known), for ``writer`` to plan on. Shared by the writers: never
        changed in place (the planners are pure)."""
        answer = None if fresh else self._answer(target, self.fresh)
        if answer is None:  # (an object found absent is read again: it may be created any moment)
            asked = time.monotonic()
            answer = (asked, self.kube.get(target))
            if answer[1] is not None:
                self._answered(target, *answer)
        if writer is not None:
            writer.read_at = answer[0]
        return answer[1]

    def _answer(self, target: Ref, within: float) -> tuple[float, dict[str, Any]] | None:
        """The newest answer about ``target``, if it was asked less than ``within`` seconds ago."""
        with self._cond:
            answer = self._answers.get(target)
        return answer if answer is not None and time.monotonic() - answer[0] < within else None

    def _answered(self, target: Ref, asked: float, found: dict[str, Any]) -> None:
        """Keep the newest answer (by when it was asked); the expired ones of other objects go."""
        with self._cond:
            known = self._answers.get(target)
            if known is None or known[0] <= asked:
                self._answers[target] = (asked, found)
            horizon = time.monotonic() - KEPT
            for ref in [r for r, (at, _) in self._answers.items() if at < horizon]:
                del self._answers[ref]

    @contextmanager
    def acting(self) -> Iterator[None]:
        """A step's action runs on this thread: what it lists (``selecting``) counts as coming until it returns."""
        me = threading.get_ident()
        with self._cond:
            self._acting[me] = []
        try:
            yield
        finally:
            with self._cond:
                del self._acting[me]
                self._cond.notify_all()

    def selecting(self, namespace: str, kind: str, matches: Callable[[dict[str, str]], bool]) -> None:
        """Before an action lists the objects it may write: a batch of one of them waits for it (inside
        ``acting`` only, so that a listing never outlives its action)."""
        me = threading.get_ident()
        with self._cond:
            if me in self._acting:
                self._numbers += 1
                self._acting[me].append(_Selection(self._numbers, namespace, kind, matches))

    @contextmanager
    def writing(self, target: Ref, *, dry_run: bool = False) -> Iterator[Writer]:
        """Announce a write of ``target`` from before its read to its ``send``: a batch about to go waits for
        the writers already on their way (a round trip or two), so that they go with it, not one by one after it.
        ``dry_run``: a restore rehearsed (the apiserver only says whether it would apply), batched apart."""
        with self._cond:
            self._numbers += 1
            writer = Writer(_Key(target, dry_run), self._numbers, time.monotonic())
            self._coming.setdefault(writer.key, {})[writer.number] = threading.get_ident()
        try:
            yield writer
        finally:
            with self._cond:
                self._arrived(writer)
                self._spent(target)

    def _arrived(self, writer: Writer) -> None:
        """(Under the lock.) No longer on its way: it sent, or it has nothing to send."""
        coming = self._coming.get(writer.key, {})
        if coming.pop(writer.number, None) is not None:
            if not coming:
                del self._coming[writer.key]
            self._cond.notify_all()

    def _spent(self, target: Ref) -> None:
        """(Under the lock.) This thread's listings of ``target``'s kind are spent: it wrote what it meant to
        there, and a later batch does not wait for it."""
        listed = self._acting.get(threading.get_ident())
        if listed:
            listed[:] = [s for s in listed if (s.namespace, s.kind) != (target.namespace, target.kind)]
            self._cond.notify_all()

    def _on_their_way(self, key: _Key, labels: dict[str, str], horizon: int) -> bool:
        """(Under the lock.) Whether a running writer that began before ``horizon`` may still write ``key``."""
        if any(n <= horizon and thread not in self._sending for n, thread in self._coming.get(key, {}).items()):
            return True
        return not key.dry_run and any(
            thread not in self._sending and s.number <= horizon and s.covers(key.target, labels)
            for thread, listed in self._acting.items() for s in listed)

    def send(self, writer: Writer, part: Part, seen: dict[str, Any]) -> None:
        """Apply ``part`` (``seen``: the object as its writer read it), with the parts of the writers waiting
        beside it. Conflict when the part does not apply any more: its writer plans again."""
        pending, key, me = _Pending(part, seen), writer.key, threading.get_ident()
        labels = (seen.get("metadata") or {}).get("labels") or {}
        with self._cond:
            self._arrived(writer)
            self._spent(key.target)
            self._waiting.setdefault(key, []).append(pending)
            self._sending.add(me)
            self._cond.notify_all()  # a leader may be waiting for this writer
            self._cond.wait_for(lambda: pending.done or key not in self._busy)
            if pending.done:
                self._sending.discard(me)
                return self._outcome(pending)
            # Leader: this thread sends every part waiting for this object, its own among them, once the
            # writers already on their way when it took the lead have sent theirs (or have none).
            self._busy.add(key)
            horizon = self._numbers
            self._cond.wait_for(lambda: not self._on_their_way(key, labels, horizon))
            # Writers that set out since (a storm's passes, arriving staggered): the batch waits for them too,
            # for at most WINDOW, so that it does not leave each of them a patch of its own. Nobody on the
            # way, it goes at once.
            self._cond.wait_for(lambda: not self._on_their_way(key, labels, self._numbers), timeout=self.window)
            batch = self._waiting.pop(key)
        # The newest answer about the object (the last batch's response) when it is newer than what the leader
        # read; a listing its caller passed is older than the writer's setting out.
        answer = self._answer(key.target, KEPT)
        newer = answer is not None and answer[0] >= (writer.read_at if writer.read_at is not None else writer.since)
        basis = answer[1] if newer else seen
        try:
            self._commit(key, basis, batch)
        except BaseException as exc:  # a transient error, a fence: every writer of the batch gets it
            for waiter in batch:
                if not waiter.done:
                    waiter.error, waiter.done = exc, True
        finally:
            for waiter in batch:  # never left waiting: a part not sent is planned again by its writer
                if not waiter.done:
                    waiter.error, waiter.done = Conflict("not sent"), True
            with self._cond:
                self._busy.discard(key)
                self._sending.discard(me)
                self._cond.notify_all()
        return self._outcome(pending)

    @staticmethod
    def _outcome(pending: _Pending) -> None:
        if pending.error is not None:
            raise pending.error

    def _commit(self, key: _Key, current: dict[str, Any], batch: list[_Pending], *, fresh: bool = False) -> None:
        """Send ``batch``'s parts planned on ``current``; ``fresh``: just read, so a failure is a part's own."""
        combined = combine(current, [p.part for p in batch])
        # A rehearsal changes nothing: a part whose plan differs only beside its batch-mates' (two releases of
        # one shared field) goes in a round of its own on the same object, not back to its writer to collide again.
        again = [batch[i] for i in combined.moved] if key.dry_run and combined.taken else []
        for index, error in combined.refused.items():
            if batch[index] not in again:
                batch[index].error, batch[index].done = error, True
        taken = [batch[i] for i in combined.taken]
        if combined.ops:
            try:
                written = self.kube.json_patch(key.target, combined.ops, dry_run=key.dry_run)
            except (Conflict, Invalid) as exc:
                if len(taken) == 1 and fresh:
                    taken[0].error, taken[0].done = exc, True
                elif not fresh:  # most likely moved since it was read: all of them again, on a fresh read
                    self._commit(key, self._read(key.target), taken, fresh=True)
                else:  # one of them does not apply: each half on its own, until it is alone
                    half = len(taken) // 2
                    self._commit(key, self._read(key.target), taken[:half], fresh=True)
                    self._commit(key, self._read(key.target), taken[half:], fresh=True)
                taken = []
            else:
                if not key.dry_run:  # (a dry run's answer is the object as it is not)
                    # Dated when it came: a read asked while the patch was on its way may show the object
                    # before it, and must not pass for newer (this object's patches go one at a time).
                    self._answered(key.target, time.monotonic(), written)
        for waiter in taken:
            waiter.done = True
        if again:
            self._commit(key, current, again, fresh=fresh)

    def _read(self, target: Ref) -> dict[str, Any]:
        found = self.read(target, fresh=True)
        if found is None:
            raise NotFound(f"{target} not found")
        return found


__all__ = ["Combined", "GroupCommit", "NotApplied", "Part", "Writer", "apply", "combine"]
