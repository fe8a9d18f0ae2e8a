"""Group commit (gateway/batch.py): many incidents on one flags store, far fewer writes to it than incidents.

The oracle is the apiserver's own audit log (tests/support/audit.py): the patches the operator
sent to the store, their answers and bodies, counted outside the operator; and the store itself.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from reliability_center.gateway.holds import holder_id, holds
from reliability_center.gateway.kube import Ref
from tests.conftest import CACHE, WarmOperators, start_operator, stop_operator
from tests.e2e.test_collisions import one_step_runbook, resolve
from tests.e2e.test_crash import is_write
from tests.support.audit import AuditLog, Write, repeated
from tests.support.cluster import apply_docs, get_json, kubectl, load_yaml, wait_for
from tests.support.incidents import create, incident, resolve as resolve_incident

STORE = "flags-search"
FLAGS = ("search-suggestions", "search-recommendations")


def create_all(namespace: str, docs: list[dict]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


def phases(namespace: str) -> dict[str, str]:
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "")
            for i in get_json("incidents", "-n", namespace)["items"]}


def store_patches(writes: list[Write], namespace: str) -> list[Write]:
    """The operator's JSON patches of the store, as the apiserver logged them."""
    return [w for w in writes if w.resource == "configmaps" and w.namespace == namespace and w.name == STORE
            and w.verb == "patch" and isinstance(w.request, list)]


def keys_set(patch: Write) -> list[str]:
    """The tenant keys a patch sets (an ``add`` of /data/<flag>.tenant.<t>)."""
    return [op["path"].removeprefix("/data/") for op in patch.request
            if op["op"] == "add" and op["path"].startswith("/data/") and ".tenant." in op["path"]]


def holders_on_store(namespace: str) -> list[str]:
    """The holder ids the store's hold marks name, once per field held (gateway/holds.py's layout)."""
    return [h for holders in holds(get_json("configmap", STORE, "-n", namespace)) for h in holders]


def ids(snapshots) -> set[str]:
    """The holder ids of snapshots (a hold mark names its snapshot by that id)."""
    return {holder_id(s) for s in snapshots}


def audit_events(namespace: str) -> list[dict]:
    """The audit Events of the store's writes (one per write record: deterministic names)."""
    return [e for e in get_json("events", "-n", namespace)["items"]
            if e.get("reason") == "Audit" and f"target=ConfigMap/{namespace}/{STORE} outcome=applied" in e["message"]]


def one_record_each(namespace: str, names: list[str]) -> None:
    """Each incident audited on its own: one write record for the store in its timeline, one audit Event."""
    found = {i["metadata"]["name"]: i.get("status") or {} for i in get_json("incidents", "-n", namespace)["items"]}
    for name in names:
        writes = [e for e in found[name]["timeline"] if is_write(e) and e["target"].endswith(f"/{STORE}")]
        assert len(writes) == 1, (name, found[name]["timeline"])
    posted = Counter(e["involvedObject"]["name"] for e in audit_events(namespace))
    assert posted == dict.fromkeys(names, 1), posted


def snapshot_names(namespace: str) -> set[str]:
    return {c["metadata"]["name"] for c in
            get_json("configmaps", "-n", namespace, "-l", "reliability.center/snapshot=true")["items"]}


@pytest.fixture
def storm(solo_namespace, seed_runbooks):
    """The sample app in a namespace only this test's operator acts in (started by the test)."""
    apply_docs(solo_namespace, load_yaml("examples/protected-app/app.yaml"))
    started = []
    yield solo_namespace, lambda: started.append(start_operator(CACHE / "operator-group-commit.log",
                                                                {"RC_NAMESPACES": solo_namespace}))
    for proc in started:
        stop_operator(proc)


def test_three_hundred_tenants_on_one_store_land_in_far_fewer_writes_and_one_resolve_restores_its_own(storm):
    app, start = storm
    tenants = [f"t{i:03d}" for i in range(300)]
    names = [f"gc-{t}" for t in tenants]
    category = one_step_runbook("feature-flags-off", {"modules": ["search"]})
    original = get_json("configmap", STORE, "-n", app)["data"]
    audit = AuditLog()
    before = audit.position()
    # The storm reaches a running operator: the first incident mitigated alone (nobody beside it: sent at once),
    # then the other 299 as an alert storm posts them, eight at a time: their passes start as each arrives,
    # staggered, not together as a backlog read at start would.
    start()
    create(app, incident(names[0], category=category, tenant=tenants[0]))
    wait_for(lambda: phases(app).get(names[0]) == "Mitigated", timeout=60, what="the first incident to be Mitigated")
    with ThreadPoolExecutor(8) as posting:
        list(posting.map(lambda n: create(app, incident(n, category=category, tenant=n.removeprefix("gc-"))),
                         names[1:]))
    wait_for(lambda: (found := phases(app)) and len(found) == len(tenants)
             and all(p == "Mitigated" for p in found.values()), timeout=180, interval=1,
             what="all 300 incidents to be Mitigated")

    # Every tenant's change landed on the one store, nothing else on it moved.
    data = get_json("configmap", STORE, "-n", app)["data"]
    ours = {f"{flag}.tenant.{t}": "false" for t in tenants for flag in FLAGS}
    assert data == {**original, **ours}
    # Each incident audited and snapshotted on its own: one record, one snapshot, one holder on each key.
    one_record_each(app, names)
    snapshots = snapshot_names(app)
    assert len(snapshots) == len(tenants) and Counter(holders_on_store(app)) == dict.fromkeys(ids(snapshots), len(FLAGS))
    # ... and, as the apiserver saw it, far fewer writes to the store than incidents, each key set once.
    patches = store_patches(audit.writes(before, namespace=app, operator=True), app)
    landed = [p for p in patches if p.ok]
    per_key = Counter(k for p in landed for k in keys_set(p))
    assert per_key == dict.fromkeys(ours, 1), {k: n for k, n in per_key.items() if n != 1}
    print(f"group commit: {len(tenants)} incidents, {len(patches)} patches of the store "
          f"({len(landed)} applied, the largest carrying {max(len(keys_set(p)) for p in landed) // len(FLAGS)} "
          "incidents)")
    # A batch gathers the steps on their way to the store: at most as many as passes run at once (RC_WORKERS, 16).
    assert max(len(keys_set(p)) for p in landed) >= 4 * len(FLAGS), "no group commit of several incidents"
    # Measured: 28 and 31 patches with the batch's window (gateway/batch.py WINDOW), 61 without it (a batch
    # then leaves without the steps that set out after it took the lead); 300 with no group commit.
    assert len(patches) <= 45, (len(patches), [p.code for p in patches])

    # One resolve restores only its own tenant's keys.
    resolve(app, "gc-t017")
    restored = wait_for(lambda: (d := get_json("configmap", STORE, "-n", app)["data"])
                        and "search-suggestions.tenant.t017" not in d and d, what="t017's keys restored")
    assert restored == {**original, **{k: v for k, v in ours.items() if not k.endswith(".t017")}}
    assert len(holders_on_store(app)) == len(FLAGS) * (len(tenants) - 1)


INCIDENTS = 40
KILLS = 4


def kill_while(kube, ns: str, done, rng: random.Random, operators: WarmOperators) -> int:
    """Start an operator, SIGKILL it at a random moment after it first wrote the store, until ``done``; after each
    kill, every hold on the store names a snapshot that exists: a part applied is a part recorded. The kills
    that left work undone."""
    store = Ref("ConfigMap", ns, STORE)
    kills = 0
    while not done():
        seen = kube.get(store)["metadata"]["resourceVersion"]
        proc = operators.start()
        try:  # once it sent a (group) commit of the store: at once (its parts' records still being made), or
            # at a random point further on (inside another, or between)
            wait_for(lambda: kube.get(store)["metadata"]["resourceVersion"] != seen or done(), timeout=60,
                     interval=0.005, what="the new operator to write the store")
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0, 0.3))
        finally:
            stop_operator(proc, signal.SIGKILL)
        assert set(holders_on_store(ns)) <= ids(snapshot_names(ns))
        kills += not done()
    return kills


def test_sigkill_during_group_commits_leaves_each_part_applied_and_recorded_or_not_applied(solo_namespace,
                                                                                           seed_runbooks, kube):
    ns = solo_namespace  # only this test's operators act here
    apply_docs(ns, load_yaml("examples/protected-app/app.yaml"))
    original = get_json("configmap", STORE, "-n", ns)["data"]
    category = one_step_runbook("feature-flags-off", {"modules": ["search"]})
    rng = random.Random(20261206)
    operators = WarmOperators(CACHE / "operator-group-commit-crash.log", {"RC_NAMESPACES": ns})
    audit = AuditLog()
    before = audit.position()
    names = [f"gk-t{i:02d}" for i in range(INCIDENTS)]
    create_all(ns, [incident(n, category=category, tenant=n.removeprefix("gk-")) for n in names])
    all_in = lambda *wanted: (lambda: all(p in wanted for p in phases(ns).values()))  # noqa: E731
    try:
        kills = kill_while(kube, ns, all_in("Mitigated"), rng, operators)
        mitigated_at = audit.position()
        sent = audit.writes(before, namespace=ns, operator=True)
        ours = {f"{flag}.tenant.{n.removeprefix('gk-')}": "false" for n in names for flag in FLAGS}
        assert get_json("configmap", STORE, "-n", ns)["data"] == {**original, **ours}
        # Each part once, by the apiserver's account (a process after a kill completes what was not applied),
        # and batches of several incidents among the patches.
        assert not repeated(sent, retries_after_kills=True), repeated(sent, retries_after_kills=True)
        patches = store_patches(sent, ns)
        assert max(len(keys_set(p)) for p in patches if p.ok) > len(FLAGS), "no group commit was sent"
        one_record_each(ns, names)
        snapshots = snapshot_names(ns)
        assert len(snapshots) == INCIDENTS and Counter(holders_on_store(ns)) == dict.fromkeys(ids(snapshots), len(FLAGS))

        # Releases batch the same way, killed too: the store comes back exactly as it was.
        for name in names:
            resolve_incident(ns, name)
        kills += kill_while(kube, ns, all_in("Verifying", "Resolved"), rng, operators)
    finally:
        operators.close()
    restoring = audit.writes(mitigated_at, namespace=ns, operator=True)
    assert not repeated(restoring, retries_after_kills=True), repeated(restoring, retries_after_kills=True)
    assert get_json("configmap", STORE, "-n", ns)["data"] == original and not holders_on_store(ns)
    releases = store_patches(restoring, ns)
    print(f"group commit under SIGKILL: {INCIDENTS} incidents, {kills} kills, "
          f"{len(patches)} patches mitigating, {len(releases)} restoring")
    assert kills >= KILLS, kills
