"""The apiserver audit log reader (tests/support/audit.py), on logged events written out here: an oracle that
cannot see a repeat proves nothing."""

from __future__ import annotations

import json

from reliability_center.gateway.kube import user_agent
from tests.support.audit import AuditLog, effects, repeated

OPERATOR = user_agent("host-41-abc123")


def logged(verb: str, resource: str, name: str, code: int = 200, body=None, agent: str = OPERATOR,
           uri: str = "/api/v1/namespaces/ns/x", at: str = "2026-12-06T16:00:00.000001Z", **extra) -> dict:
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "stage": "ResponseComplete",
            "requestURI": uri, "verb": verb, "user": {"username": "kwok-admin"}, "userAgent": agent,
            "objectRef": {"resource": resource, "namespace": "ns", "name": name, **extra},
            "responseStatus": {"code": code}, "requestObject": body,
            "requestReceivedTimestamp": at, "stageTimestamp": at}


def line(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()  # compact, as the apiserver writes them


def write_log(tmp_path, events, tail: bytes = b"") -> AuditLog:
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(line(e) + b"\n" for e in events) + tail)
    return AuditLog(path)


def test_the_operator_replica_is_read_from_the_user_agent_and_nobody_else_is_the_operator(tmp_path):
    log = write_log(tmp_path, [logged("create", "events", "a"), logged("create", "events", "b", agent=user_agent()),
                               logged("create", "events", "c", agent="kubectl/v1.33")])
    assert [(w.name, w.replica) for w in log._read(None)] == [("a", "host-41-abc123"), ("b", None), ("c", None)]


def test_a_second_create_of_an_event_is_a_repeat_even_when_the_apiserver_refused_it():
    from tests.support.audit import Write

    first = Write.of(logged("create", "events", "inc.1a2b", code=201))
    again = Write.of(logged("create", "events", "inc.1a2b", code=409))
    assert list(repeated([first, again])) == [("create", "events ns/inc.1a2b", 0)]
    assert not repeated([first])


def test_a_field_set_twice_to_the_same_value_is_a_repeat_and_to_another_value_is_not():
    from tests.support.audit import Write

    def patch(value, code=200):
        return Write.of(logged("patch", "configmaps", "flags", code=code, body=[
            {"op": "test", "path": "/data/k", "value": None}, {"op": "add", "path": "/data/k", "value": value}]))

    assert repeated([patch("off"), patch("off")])
    assert not repeated([patch("off"), patch("on")])
    assert not repeated([patch("off"), patch("off", code=422)])  # a refused compare-and-swap changed nothing


def test_a_patch_its_killed_client_never_heard_answered_is_an_effect_all_the_same():
    """Seen in test_crash: the apiserver answered 504 to a patch whose process was killed mid-request, and the
    value was there (the next process's patch tested it). Not counting it lost a Deployment's restart."""
    from tests.support.audit import Write

    def patch(value, code=200, agent=OPERATOR):
        return Write.of(logged("patch", "deployments", "sched", code=code, agent=agent, body=[
            {"op": "add", "path": "/spec/template/metadata/annotations/r", "value": value}]))

    assert [e[4] for e in effects([patch("one", code=504), patch("two")])] == ['"one"', '"two"']
    # Made or not, a retry of the same value by the next process is judged by repeated(), as for creates.
    retried = [patch("one", code=504), patch("one", agent=user_agent("vm-2"))]
    assert len(effects(retried)) == 1 and not repeated(retried, retries_after_kills=True)


def test_a_create_the_apiserver_failed_and_its_process_sent_again_is_a_retry_not_a_repeat():
    """Seen in test_crash on a cluster just started: the apiserver answered 504 twice to one process's create
    of rc-isolations (the operator retries a 5xx), and the next process's create made it (201)."""
    from tests.support.audit import Write

    def create(code, agent=OPERATOR):
        return Write.of(logged("create", "configmaps", "rc-isolations", code=code, agent=agent, body={"data": {}}))

    failed_twice = [create(504), create(504), create(201, agent=user_agent("vm-2"))]
    assert not repeated(failed_twice, retries_after_kills=True)
    assert not repeated([create(503), create(201)])  # one process, no kill: still the retry of one write
    # Two creates that both made it are two effects whoever sent them.
    assert repeated([create(201), create(201, agent=user_agent("vm-2"))], retries_after_kills=True)


def test_a_configmap_replaced_whole_counts_the_keys_each_write_changed():
    from tests.support.audit import Write

    def put(data, verb="update"):
        return Write.of(logged(verb, "configmaps", "rc-audit-x", body={"metadata": {"name": "rc-audit-x"}, "data": data}))

    once = [put({"a": "1"}, "create"), put({"a": "1", "b": "2"}), put({"a": "1", "b": "2", "c": "3"})]
    assert not repeated(once)
    assert ("set", "configmaps ns/rc-audit-x", "/data/b", "replace", '"2"', 0) in effects(once)
    # A record added, given up (the key removed by someone else), added again: the same record twice.
    assert repeated([put({"a": "1"}, "create"), put({}), put({"a": "1"})])


def test_a_create_cut_off_by_a_kill_of_a_configmap_that_exists_changed_none_of_its_keys():
    """Seen in test_crash: a process created an incident's audit log without reading it first (likely new), was
    killed mid-request (504), and the next process appended to the log as it was: the cut-off create, of a
    name that existed, could not have replaced the log's data, so the next update changed only its new key."""
    from tests.support.audit import Write

    def put(data, verb="update", code=200, agent=OPERATOR):
        return Write.of(logged(verb, "configmaps", "rc-audit-x", code=code, agent=agent,
                               body={"metadata": {"name": "rc-audit-x"}, "data": data}))

    writes = [put({"a": "1"}, "create", 201), put({"a": "1", "b": "2"}),
              put({"c": "3"}, "create", 504, agent=user_agent("vm-2")),
              put({"a": "1", "b": "2", "c": "3"}, agent=user_agent("vm-3"))]
    assert not repeated(writes, retries_after_kills=True)
    # Of a name not known to exist, a cut-off create may have made it: its keys are set.
    assert ("set", "configmaps ns/rc-new", "/data/a", "replace", '"1"', 0) in effects(
        [Write.of(logged("create", "configmaps", "rc-new", code=504, body={"data": {"a": "1"}}))])


def test_a_create_cut_off_by_a_kill_of_an_object_that_exists_is_no_effect_but_an_events_is():
    """Seen in CI's test_crash: two incidents of one process each created their shared rc-isolations; the first
    got 201, the second was cut off by the kill 12 ms later (504). The name existed, so that create could
    not have made anything: no repeat. An Event's name is one per record, so there a second create still is."""
    from tests.support.audit import Write

    def create(code, resource="configmaps", name="rc-isolations"):
        return Write.of(logged("create", resource, name, code=code, body={"metadata": {"name": name}}))

    assert not repeated([create(201), create(504)], retries_after_kills=True)
    assert repeated([create(201), create(201)], retries_after_kills=True)
    # Not known to exist (its first create was cut off too): the second may be what made it.
    assert ("create", "configmaps ns/rc-isolations", 0) in effects([create(504), create(504)])
    assert repeated([create(201, "events", "e1"), create(504, "events", "e1")], retries_after_kills=True)
    # Deleted since: a new create may make it again.
    deleted = Write.of(logged("delete", "configmaps", "rc-isolations"))
    assert len(effects([create(201), deleted, create(504)])) == 3


def test_positions_read_only_what_came_after_and_a_torn_line_is_skipped_to_the_event_after_it(tmp_path):
    log = write_log(tmp_path, [logged("create", "jobs", "j1")])
    middle = log._end()
    torn = line(logged("create", "jobs", "lost"))[:40]  # the apiserver killed mid-line
    with open(log.path, "ab") as out:
        out.write(torn + line(logged("create", "jobs", "j2")) + b"\n" + b'{"kind":"Ev')
    assert [w.name for w in log._read(middle)] == ["j2"]  # and the unfinished last line is left for later
    assert [w.name for w in log._read(None)] == ["j1", "j2"]


def test_dry_runs_status_writes_and_lease_renewals_are_no_effects():
    from tests.support.audit import Write

    writes = [Write.of(logged("create", "configmaps", "x", uri="/api/v1/namespaces/ns/configmaps?dryRun=All",
                              body={"data": {"a": "1"}})),
              Write.of(logged("patch", "incidents", "i", body={"status": {}}, subresource="status")),
              Write.of(logged("update", "leases", "l", body={"spec": {}}))]
    assert effects([w for w in writes if not w.dry_run]) == {}
    assert effects(writes) == {}


def test_after_a_kill_only_a_later_process_may_send_a_create_again_and_only_to_be_refused():
    from tests.support.audit import Write

    def create(code, replica):
        return Write.of(logged("create", "jobs", "replay-1", code=code, agent=user_agent(replica)))

    retried = [create(201, "p1"), create(409, "p2"), create(409, "p3")]
    assert repeated(retried) and not repeated(retried, retries_after_kills=True)
    assert repeated([create(201, "p1"), create(409, "p1")], retries_after_kills=True)  # one process, twice
    assert repeated([create(201, "p1"), create(201, "p2")], retries_after_kills=True)  # made twice
    # A request its process's kill cut off (the apiserver answers 5xx): made or not, the next one settles it.
    assert not repeated([create(504, "p1"), create(201, "p2")], retries_after_kills=True)
    assert not repeated([create(504, "p1"), create(409, "p2")], retries_after_kills=True)


def test_an_object_deleted_and_made_again_is_a_new_object():
    from tests.support.audit import Write

    made = Write.of(logged("create", "configmaps", "rc-snap-1", code=201, body={"data": {"a": "1"}}))
    gone = Write.of(logged("delete", "configmaps", "rc-snap-1"))
    assert not repeated([made, gone, made])
    assert repeated([made, made])


def test_a_position_taken_before_the_apiserver_rotated_the_log_reads_the_rest_of_the_old_file_then_the_new(tmp_path):
    log = write_log(tmp_path, [logged("create", "jobs", "j1")])
    before = log._end()
    with open(log.path, "ab") as out:
        out.write(line(logged("create", "jobs", "j2")) + b"\n")
    log.path.rename(tmp_path / "audit-2026-12-06T16-40-00.000.log")  # as lumberjack rotates it
    log.path.write_bytes(line(logged("create", "jobs", "j3")) + b"\n")
    assert [w.name for w in log._read(before)] == ["j2", "j3"]


def test_removing_the_item_at_an_array_index_twice_removes_two_items_when_their_tests_say_so():
    from tests.support.audit import Write

    def remove(item):
        return Write.of(logged("patch", "networkpolicies", "allow", body=[
            {"op": "test", "path": "/spec/podSelector/matchExpressions/0", "value": item},
            {"op": "remove", "path": "/spec/podSelector/matchExpressions/0"}]))

    assert not repeated([remove({"values": ["globex"]}), remove({"values": ["acme"]})])
    assert repeated([remove({"values": ["acme"]}), remove({"values": ["acme"]})])
