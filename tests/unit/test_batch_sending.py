"""Group commit's send loop (gateway/batch.GroupCommit): who waits, who sends, what goes together.

No cluster: a fake apiserver for one ConfigMap applies each JSON patch as the apiserver does
(``batch.apply``: all or nothing) and records every request and the thread that sent it. The
writers are threads; the test orders them with events and with the GroupCommit's own condition
(a writer is in the queue, a leader waits), never with sleeps. Each part adds one key, with a
``test`` that the key is absent, like a hold's compare-and-swap.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest

from reliability_center.gateway.batch import GroupCommit, NotApplied, Part, apply
from reliability_center.gateway.kube import Conflict, Invalid, Ref

STORE = Ref("ConfigMap", "app", "flags")
DEADLINE = 10  # seconds: a guard against a hang, never a pause


class Apiserver:
    """One ConfigMap behind ``json_patch`` and ``get``. ``gate``: the next patch stays in flight until set.
    ``refuse``: a patch carrying this value is refused whole (as an admission webhook would)."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": STORE.name, "namespace": STORE.namespace}, "data": {}}
        self.patches: list[tuple[str, list[str]]] = []
        """(the sending thread's name, the keys the patch adds), in the order received."""
        self.gate: threading.Event | None = None
        self.in_flight = threading.Event()
        self.refuse = ""

    def json_patch(self, ref: Ref, ops: list[dict[str, Any]], *, dry_run: bool = False) -> dict[str, Any]:
        assert ref == STORE and not dry_run
        self.patches.append((threading.current_thread().name,
                             [op["path"].removeprefix("/data/") for op in ops if op["op"] == "add"]))
        gate, self.gate = self.gate, None
        if gate is not None:
            self.in_flight.set()
            assert gate.wait(DEADLINE)
        if any(op.get("value") == self.refuse for op in ops if op["op"] == "add"):
            raise Invalid(f"admission webhook denied the value {self.refuse!r}")
        try:
            self.obj = apply(self.obj, ops)
        except NotApplied as exc:
            raise Conflict(str(exc)) from None
        return copy.deepcopy(self.obj)

    def get(self, ref: Ref) -> dict[str, Any]:
        return copy.deepcopy(self.obj)


def adding(key: str, value: str = "on") -> Part:
    """A step's part: ``key`` set to ``value``, only where it is absent."""
    def plan(_obj: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        return [{"op": "test", "path": f"/data/{key}", "value": None},
                {"op": "add", "path": f"/data/{key}", "value": value}], None

    return Part(plan, None)


class Step(threading.Thread):
    """A writer on its own thread: announces itself, reads the object, then sends its part. ``go``, when given,
    holds it between its announcement and its send (a step still reading and taking its snapshot)."""

    def __init__(self, commits: GroupCommit, server: Apiserver, key: str, value: str = "on",
                 go: threading.Event | None = None):
        super().__init__(name=key, daemon=True)
        self.commits, self.server, self.key, self.value, self.go = commits, server, key, value, go
        self.announced = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.commits.writing(STORE) as writer:
                self.announced.set()
                seen = self.server.get(STORE)
                if self.go is not None:
                    assert self.go.wait(DEADLINE)
                self.commits.send(writer, adding(self.key, self.value), seen)
        except BaseException as exc:  # noqa: BLE001 - the test judges it
            self.error = exc

    def result(self) -> BaseException | None:
        self.join(DEADLINE)
        assert not self.is_alive(), f"{self.key} never finished"
        return self.error


def until(commits: GroupCommit, condition: Callable[[], bool]) -> None:
    """Wait, on the GroupCommit's own condition, until ``condition`` holds of its state."""
    with commits._cond:
        assert commits._cond.wait_for(condition, timeout=DEADLINE), "the writers never got there"


def queued(commits: GroupCommit) -> int:
    """Writers of the store waiting in ``send`` (a leader among them, once it took the lead)."""
    return sum(len(w) for k, w in commits._waiting.items() if k.target == STORE)


class NeverWaits(type(threading.Condition())):  # type: ignore[misc]
    """A condition whose ``wait`` fails the test: nothing may block."""

    def wait(self, timeout: float | None = None) -> bool:
        raise AssertionError("a writer waited")


def test_a_lone_writer_is_sent_at_once_without_waiting():
    server = Apiserver()
    commits = GroupCommit(server)  # type: ignore[arg-type]
    commits._cond = NeverWaits()
    with commits.writing(STORE) as writer:
        commits.send(writer, adding("t1"), server.get(STORE))
    assert server.patches == [("MainThread", ["t1"])]
    assert server.obj["data"] == {"t1": "on"}


def test_writers_arriving_while_a_patch_is_in_flight_are_sent_together_by_one_of_them():
    server, gate = Apiserver(), threading.Event()
    commits = GroupCommit(server)  # type: ignore[arg-type]
    server.gate = gate
    first = Step(commits, server, "t1")
    first.start()
    assert server.in_flight.wait(DEADLINE)
    later = [Step(commits, server, k) for k in ("t2", "t3", "t4")]
    for step in later:
        step.start()
    until(commits, lambda: queued(commits) == 3)
    assert [keys for _, keys in server.patches] == [["t1"]]  # nobody sends beside a patch in flight
    gate.set()
    assert [s.result() for s in [first, *later]] == [None] * 4
    assert len(server.patches) == 2
    sender, keys = server.patches[1]
    assert sorted(keys) == ["t2", "t3", "t4"] and sender in {"t2", "t3", "t4"}
    assert server.obj["data"] == dict.fromkeys(["t1", "t2", "t3", "t4"], "on")


def test_a_batch_waits_for_a_writer_announced_before_it_and_takes_its_part():
    server, go = Apiserver(), threading.Event()
    commits = GroupCommit(server)  # type: ignore[arg-type]
    reading = Step(commits, server, "t1", go=go)  # announced, still on its way (its read, its snapshot)
    reading.start()
    assert reading.announced.wait(DEADLINE)
    ready = Step(commits, server, "t2")
    ready.start()
    until(commits, lambda: queued(commits) == 1 and bool(commits._busy))  # t2 leads, and waits
    assert server.patches == []
    go.set()
    assert reading.result() is None and ready.result() is None
    assert [(sender, sorted(keys)) for sender, keys in server.patches] == [("t2", ["t1", "t2"])]


def early_leader_late(window: float):
    """t1 on its way, t2 leading a batch that waits for it, then t3 setting out after t2 took the lead;
    t1 and t3 go when their events are set."""
    server, go_first, go_late = Apiserver(), threading.Event(), threading.Event()
    commits = GroupCommit(server, window=window)  # type: ignore[arg-type]
    early = Step(commits, server, "t1", go=go_first)
    early.start()
    assert early.announced.wait(DEADLINE)
    leader = Step(commits, server, "t2")
    leader.start()
    until(commits, lambda: queued(commits) == 1 and bool(commits._busy))
    late = Step(commits, server, "t3", go=go_late)  # announced after t2 took the lead
    late.start()
    assert late.announced.wait(DEADLINE)
    return server, commits, (early, leader, late), (go_first, go_late)


def test_a_batch_waits_within_its_window_for_a_writer_that_set_out_after_it_took_the_lead():
    # A storm's passes reach the store staggered: the one that set out just after the leader still goes with it.
    server, commits, (early, leader, late), (go_first, go_late) = early_leader_late(window=DEADLINE)
    go_first.set()
    until(commits, lambda: queued(commits) == 2)
    assert server.patches == []  # t1 is in, t3 still on its way: the batch waits
    go_late.set()
    assert [s.result() for s in (early, leader, late)] == [None] * 3
    assert [sorted(keys) for _, keys in server.patches] == [["t1", "t2", "t3"]]


def test_a_batch_goes_when_its_window_closes_without_the_writer_that_set_out_after_it_took_the_lead():
    server, _, (early, leader, late), (go_first, go_late) = early_leader_late(window=0.05)  # t3 slow
    go_first.set()
    assert early.result() is None and leader.result() is None  # without t3: its window closed
    go_late.set()
    assert late.result() is None
    assert [sorted(keys) for _, keys in server.patches] == [["t1", "t2"], ["t3"]]


def test_a_batch_does_not_wait_for_an_announced_writer_that_leaves_without_sending():
    server = Apiserver()
    commits = GroupCommit(server)  # type: ignore[arg-type]
    with commits.writing(STORE):  # a step that reads the object and finds nothing to change
        ready = Step(commits, server, "t2")
        ready.start()
        until(commits, lambda: queued(commits) == 1 and bool(commits._busy))
        assert server.patches == []
    assert ready.result() is None and server.patches == [("t2", ["t2"])]


@pytest.mark.parametrize("bad", ["t2", "t3", "t5"])
def test_a_part_the_apiserver_refuses_fails_its_own_writer_alone_and_the_others_land(bad):
    server, gate = Apiserver(), threading.Event()
    commits = GroupCommit(server)  # type: ignore[arg-type]
    server.gate, server.refuse = gate, "refused"
    first = Step(commits, server, "t1")
    first.start()
    assert server.in_flight.wait(DEADLINE)
    later = [Step(commits, server, k, "refused" if k == bad else "on") for k in ("t2", "t3", "t4", "t5")]
    for step in later:
        step.start()
    until(commits, lambda: queued(commits) == 4)
    gate.set()
    outcomes = {s.key: s.result() for s in [first, *later]}
    assert isinstance(outcomes.pop(bad), Invalid)
    assert outcomes == dict.fromkeys(outcomes, None)
    assert server.obj["data"] == dict.fromkeys(outcomes, "on")
