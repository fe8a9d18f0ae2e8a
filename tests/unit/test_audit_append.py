"""A turn's durable audit records reach the incident's log in one write (gateway/audit.one_append).

No cluster: a fake apiserver keeps the ConfigMaps and Events it is sent and records each request.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from reliability_center.gateway import audit
from reliability_center.gateway.kube import Conflict, Ref

INCIDENT = {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
            "metadata": {"name": "inc", "namespace": "app", "uid": "uid-1"}}
LOG = Ref("ConfigMap", "app", audit.log_name("uid-1"))


class Apiserver:
    identity = ""

    def __init__(self) -> None:
        self.objects: dict[Ref, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []

    def create(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        ref = Ref(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.requests.append(("create", obj["kind"]))
        if ref in self.objects:
            raise Conflict("exists")
        self.objects[ref] = {**copy.deepcopy(obj), "metadata": {**obj["metadata"], "resourceVersion": "1"}}
        return copy.deepcopy(self.objects[ref])

    def replace(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        ref = Ref(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.requests.append(("update", obj["kind"]))
        if self.objects[ref]["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise Conflict("moved")
        version = str(int(obj["metadata"]["resourceVersion"]) + 1)
        self.objects[ref] = {**copy.deepcopy(obj), "metadata": {**obj["metadata"], "resourceVersion": version}}
        return copy.deepcopy(self.objects[ref])

    def get(self, ref: Ref) -> dict[str, Any] | None:
        self.requests.append(("get", ref.kind))
        return copy.deepcopy(self.objects.get(ref))

    def log_writes(self) -> list[str]:
        return [verb for verb, kind in self.requests if kind == "ConfigMap" and verb != "get"]


def record(step: str) -> audit.AuditRecord:
    return audit.AuditRecord("trace", "acme", "system:reliability-center", "feature-flags-off",
                             f"ConfigMap/app/flags-{step}", step, "a", "b", "applied")


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    audit._SEEN.clear()
    monkeypatch.setattr(audit, "_POSTED", audit._Recent(100))
    yield
    audit._SEEN.clear()


def test_two_writes_of_one_turn_are_two_events_and_one_write_of_the_log():
    server = Apiserver()
    with audit.one_append(server, INCIDENT):  # type: ignore[arg-type]
        audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
        audit.emit(server, INCIDENT, record("breaker"))  # type: ignore[arg-type]
        assert LOG not in server.objects  # not yet: at the turn's end
    assert server.requests.count(("create", "Event")) == 2
    assert server.log_writes() == ["create"]
    assert sorted(r["step"] for r in audit.read_log(server, "app", "uid-1")) == ["breaker", "flags"]  # type: ignore[arg-type]


def test_without_a_turn_each_record_is_appended_at_once():
    server = Apiserver()
    audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
    assert server.log_writes() == ["create"]
    audit.emit(server, INCIDENT, record("breaker"))  # type: ignore[arg-type]
    assert server.log_writes() == ["create", "update"]


def test_a_turn_that_fails_still_appends_what_it_recorded_and_keeps_its_own_error():
    server = Apiserver()
    with pytest.raises(RuntimeError, match="the turn's own"):
        with audit.one_append(server, INCIDENT):  # type: ignore[arg-type]
            audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
            raise RuntimeError("the turn's own error")
    assert [r["step"] for r in audit.read_log(server, "app", "uid-1")] == ["flags"]  # type: ignore[arg-type]


def test_a_read_of_the_log_inside_the_turn_sees_the_turns_records():
    server = Apiserver()
    with audit.one_append(server, INCIDENT):  # type: ignore[arg-type]
        audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
        assert [r["step"] for r in audit.read_log(server, "app", "uid-1")] == ["flags"]  # type: ignore[arg-type]
    assert server.log_writes() == ["create"]


def test_a_record_already_in_the_log_is_kept_as_it_was_when_a_redone_turn_makes_it_again():
    server = Apiserver()
    audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
    first = audit.read_log(server, "app", "uid-1")  # type: ignore[arg-type]
    with audit.one_append(server, INCIDENT):  # type: ignore[arg-type]
        audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
        audit.emit(server, INCIDENT, record("breaker"))  # type: ignore[arg-type]
    again = audit.read_log(server, "app", "uid-1")  # type: ignore[arg-type]
    assert len(again) == 2 and first[0] in again


def test_another_incidents_records_inside_a_turn_are_appended_at_once():
    server = Apiserver()
    other = {**INCIDENT, "metadata": {**INCIDENT["metadata"], "name": "other", "uid": "uid-2"}}
    with audit.one_append(server, INCIDENT):  # type: ignore[arg-type]
        audit.emit(server, other, record("flags"))  # type: ignore[arg-type]
        assert Ref("ConfigMap", "app", audit.log_name("uid-2")) in server.objects



def test_a_record_made_at_once_inside_a_turn_is_appended_before_the_turn_ends_with_the_turns_records_so_far():
    # A restore's record of a write whose turn was cut off must be durable before the hold it lets go.
    server = Apiserver()
    with audit.one_append(server, INCIDENT):  # type: ignore[arg-type]
        audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
        audit.emit(server, INCIDENT, record("breaker"), at_once=True)  # type: ignore[arg-type]
        assert server.log_writes() == ["create"]
        stored = [json.loads(v)["step"] for v in server.objects[LOG]["data"].values()]
        assert sorted(stored) == ["breaker", "flags"]
    assert server.log_writes() == ["create"]  # nothing left for the turn's end


def test_the_log_of_an_incident_whose_status_names_it_is_read_then_updated_never_created_first():
    """Found by bench/bench_holds_operator.py at 5,000 incidents: the logs remembered (the newest 1,000) had
    evicted most, and each restore's record tried a create first, refused with 409 (346 ms p50 at that load)."""
    server = Apiserver()
    audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]  # the first turn: created at once
    assert server.log_writes() == ["create"]
    audit._SEEN.clear()  # evicted, or another process
    later = {**INCIDENT, "status": {"auditLog": LOG.name}}
    server.requests.clear()
    audit.emit(server, later, record("breaker"))  # type: ignore[arg-type]
    assert [r for r in server.requests if r[1] == "ConfigMap"] == [("get", "ConfigMap"), ("update", "ConfigMap")]
    assert sorted(r["step"] for r in audit.read_log(server, "app", "uid-1")) == ["breaker", "flags"]  # type: ignore[arg-type]



def test_a_pass_redone_by_the_same_process_posts_its_event_once_and_a_new_process_finds_it_posted():
    # The same record twice in one process (its turn's status write was refused, the pass redone): one create.
    server = Apiserver()
    for _ in range(2):
        with audit.one_append(server, INCIDENT):  # type: ignore[arg-type]
            audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
    assert server.requests.count(("create", "Event")) == 1
    # A process started after a kill remembers nothing: it posts again, is refused (409), and goes on.
    audit._POSTED = audit._Recent(100)
    audit.emit(server, INCIDENT, record("flags"))  # type: ignore[arg-type]
    assert server.requests.count(("create", "Event")) == 2
    assert len([r for r in server.objects if r.kind == "Event"]) == 1


def test_the_memory_of_posted_events_keeps_the_newest_names():
    recent = audit._Recent(2)
    for name in ("a", "b", "c"):
        recent.add(name)
    assert "a" not in recent and "b" in recent and "c" in recent
