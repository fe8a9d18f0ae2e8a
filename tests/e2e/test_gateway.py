"""The Write Gateway against the real apiserver, without the operator."""

from __future__ import annotations

import json
import uuid

import pytest

from reliability_center.gateway import PolicyDenied, Ref, WriteContext, WriteGateway
from tests.support.cluster import apply_docs, get_json, kubectl


@pytest.fixture
def setup(kube, solo_namespace):
    namespace = solo_namespace
    apply_docs(namespace, [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags", "labels": {"reliability.center/role": "flags"}},
         "data": {"a": "true", "b": "true"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ledger",
                                                               "labels": {"reliability.center/data-class": "ledger"}},
         "data": {"balance": "10"}},
    ])
    incident = {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                "metadata": {"name": "inc", "namespace": namespace},
                "spec": {"category": "perf", "severity": "high", "tenant": "acme"}}
    body = kube.create(incident)
    return kube, namespace, body


def ctx(body, step="s", level=1, shadow=False):
    # The flags ConfigMap's keys are the setup's (server-side applied): these writes declare they take them.
    return WriteContext(incident=body, trace_id=uuid.uuid4().hex, tenant="acme", step=step, level=level, shadow=shadow,
                        take_ownership=True)


def desired(namespace, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags", "namespace": namespace}, "data": data}


def test_a_retried_write_keeps_the_first_snapshot_and_changes_nothing_more(setup):
    kube, ns, body = setup
    gw, c = WriteGateway(kube), ctx(body)
    first = gw.apply(c, desired(ns, a="false"), action="flags")
    rv = get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"]
    again = gw.apply(c, desired(ns, a="false"), action="flags")  # as after a crash before status was saved
    assert first.snapshot == again.snapshot and first.entry.before_digest == again.entry.before_digest
    assert get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"] == rv
    snapshot = get_json("configmap", first.snapshot, "-n", ns)["data"]
    assert json.loads(snapshot["before"]) == {"/data/a": "true"}


def test_a_stale_listing_is_detected_and_the_snapshot_holds_the_fresh_state(setup):
    kube, ns, body = setup
    stale = kube.get(Ref("ConfigMap", ns, "flags"))
    kubectl("patch", "configmap", "flags", "-n", ns, "--type=merge", "-p", '{"data":{"a":"changed-meanwhile"}}')
    result = WriteGateway(kube).apply(ctx(body), desired(ns, a="false"), action="flags", seen=stale)
    assert result.outcome == "applied"
    snapshot = get_json("configmap", result.snapshot, "-n", ns)["data"]
    assert json.loads(snapshot["before"]) == {"/data/a": "changed-meanwhile"}  # not the stale "true"


def test_a_protected_data_class_is_refused_before_any_write(setup):
    kube, ns, body = setup
    rv = get_json("configmap", "ledger", "-n", ns)["metadata"]["resourceVersion"]
    ledger = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ledger", "namespace": ns},
              "data": {"balance": "0"}}
    with pytest.raises(PolicyDenied) as denied:
        WriteGateway(kube).apply(ctx(body, level=2), ledger, action="fix-ledger")
    assert denied.value.verdict.reason == "ProtectedDataClass"
    assert get_json("configmap", "ledger", "-n", ns)["metadata"]["resourceVersion"] == rv
    assert not [c for c in get_json("configmaps", "-n", ns)["items"] if c["metadata"]["name"].startswith("rc-snap")]
    events = [e for e in get_json("events", "-n", ns)["items"] if e["reason"] == "AuditRefused"]
    assert events and "ProtectedDataClass" in events[0]["message"]


def test_restore_dry_run_changes_nothing_and_the_real_restore_puts_values_back(setup):
    kube, ns, body = setup
    gw, c = WriteGateway(kube), ctx(body)
    result = gw.apply(c, desired(ns, a="false", c="new"), action="flags")
    rv = get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"]
    tested = gw.restore(c, result.snapshot, action="restore", dry_run=True)
    assert sorted(tested.restored) == ["/data/a", "/data/c"] and tested.conflicts == []
    assert get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"] == rv
    gw.restore(c, result.snapshot, action="restore")
    assert get_json("configmap", "flags", "-n", ns)["data"] == {"a": "true", "b": "true"}


def test_shadow_mode_is_a_server_side_dry_run(setup):
    kube, ns, body = setup
    rv = get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"]
    result = WriteGateway(kube).apply(ctx(body, shadow=True), desired(ns, a="false"), action="flags")
    assert result.outcome == "dry-run" and result.snapshot is None
    assert get_json("configmap", "flags", "-n", ns)["metadata"]["resourceVersion"] == rv
    assert "would change" in result.entry.message


def test_an_object_the_step_created_is_found_held_on_a_retry_and_a_second_incident_joins_it(setup):
    """A retried isolate step used to crash (KeyError) on the rc-isolate policy it had created."""
    from reliability_center.actions.isolate_tenant import isolation_policy

    kube, ns, body = setup
    gw, c = WriteGateway(kube), ctx(body, step="isolate")
    policy = lambda: {**isolation_policy("acme"), "metadata": {**isolation_policy("acme")["metadata"], "namespace": ns}}  # noqa: E731
    first = gw.apply(c, policy(), action="isolate-tenant")
    again = gw.apply(c, policy(), action="isolate-tenant")  # as after a crash before status was saved
    assert first.outcome == again.outcome == "created" and first.snapshot == again.snapshot
    other = kube.create({"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                         "metadata": {"name": "inc-2", "namespace": ns},
                         "spec": {"category": "perf", "severity": "high", "tenant": "acme"}})
    second = gw.apply(ctx(other, step="isolate"), policy(), action="isolate-tenant")
    assert second.outcome == "applied" and "joined" in second.entry.message
    # The first incident's restore keeps the policy (still held); the second's deletes it.
    assert gw.restore(c, first.snapshot, action="restore").kept == ["/"]
    assert kubectl("get", "networkpolicy", "rc-isolate-acme", "-n", ns, check=False).returncode == 0
    assert gw.restore(ctx(other, step="isolate"), second.snapshot, action="restore").restored == ["/"]
    assert kubectl("get", "networkpolicy", "rc-isolate-acme", "-n", ns, check=False).returncode != 0


def test_a_dry_run_of_the_inverse_of_a_creation_leaves_the_object_and_the_durable_audit_keeps_every_write(setup):
    """The rollback rehearsal (gate 3) dry-runs the delete of what a step created: the object must stay.
    (A DELETE takes its options from its body: a dryRun only in the query deleted it for real.)"""
    from reliability_center.actions.isolate_tenant import isolation_policy
    from reliability_center.gateway import audit

    kube, ns, body = setup
    gw, c = WriteGateway(kube), ctx(body, step="isolate")
    policy = {**isolation_policy("acme"), "metadata": {**isolation_policy("acme")["metadata"], "namespace": ns}}
    created = gw.apply(c, policy, action="isolate-tenant")
    uid = get_json("networkpolicy", "rc-isolate-acme", "-n", ns)["metadata"]["uid"]
    tested = gw.restore(c, created.snapshot, action="rollback-test", dry_run=True)
    assert tested.restored == ["/"] and tested.conflicts == []
    assert get_json("networkpolicy", "rc-isolate-acme", "-n", ns)["metadata"]["uid"] == uid
    gw.restore(c, created.snapshot, action="restore:isolate-tenant")
    assert kubectl("get", "networkpolicy", "rc-isolate-acme", "-n", ns, check=False).returncode != 0
    # The durable log (a ConfigMap owned by the Incident), read with kubectl: the creation and the restore,
    # each with its trace id, tenant, actor and digests; the dry-run is not a write and is not there.
    log = get_json("configmap", audit.log_name(body["metadata"]["uid"]), "-n", ns)
    assert log["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    kept = sorted((json.loads(v) for v in log["data"].values()), key=lambda r: r["time"])
    assert [(r["action"], r["outcome"]) for r in kept] == [("isolate-tenant", "created"),
                                                            ("restore:isolate-tenant", "restored")]
    assert all(r["traceId"] == c.trace_id and r["tenant"] == "acme" and r["actor"] and r["before"] and r["after"]
               for r in kept)
