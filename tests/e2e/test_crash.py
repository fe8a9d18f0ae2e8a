"""Crash safety: SIGKILL the operator at random points during mitigation, 20+ times.

Each incident's steps must all end Succeeded, every side effect must have
happened exactly once (one new ReplicaSet per restarted Deployment, exactly the
bounded number of replay Jobs, one snapshot and one audit Event per write) and
no step may be lost.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections import Counter

import pytest

from tests.conftest import CACHE, start_operator, stop_operator
from tests.support.cluster import TEST_LABELS, apply_docs, get_json, kubectl, load_yaml, wait_for
from tests.support.incidents import create, incident, status

KILLS_WANTED = 20
DEPLOYMENTS = [f"sched-{i}" for i in range(4)]


@pytest.fixture
def crash_namespace(solo_namespace):
    name = solo_namespace  # the session operator ignores it: only this test's operators act there
    apply_docs(name, load_yaml("examples/protected-app/app.yaml"))
    docs = []
    for d in DEPLOYMENTS:
        labels = {"reliability.center/role": "scheduler", "reliability.center/module": "crash"}
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": d, "labels": labels},
                     "spec": {"replicas": 1, "revisionHistoryLimit": 100, "selector": {"matchLabels": {"app": d}},
                              "template": {"metadata": {"labels": {"app": d, **labels}},
                                           "spec": {"containers": [{"name": "c", "image": "registry.invalid/s:1"}]}}}})
    apply_docs(name, docs)
    for d in DEPLOYMENTS:
        kubectl("rollout", "status", f"deployment/{d}", "-n", name, "--timeout=60s")
    return name


def runbook(category: str) -> None:
    apply_docs(None, [{"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
                       "metadata": {"name": f"rb-{category}", "labels": TEST_LABELS},
                       "spec": {"match": {"category": category}, "limits": {"maxRunsPerHour": 100, "maxRefires": 100},
                                "steps": [
        {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}},
        {"name": "breaker", "level": 1, "action": "circuit-breaker", "params": {"integration": "ocr-provider"}},
        {"name": "restart", "level": 1, "action": "restart-one-by-one",
         "params": {"role": "scheduler", "modules": ["crash"]}},
        {"name": "replay", "level": 1, "action": "replay-jobs", "params": {"cronJob": "ocr-replay", "count": 3}},
        {"name": "pause", "level": 1, "action": "pause-ingestion", "params": {"modules": ["ocr"]}},
    ]}}])


def is_write(entry: dict) -> bool:
    return entry["event"].split(":")[-1] in ("applied", "created", "exists", "unchanged")


def test_sigkill_at_random_points_loses_no_step_and_repeats_no_side_effect(crash_namespace, seed_runbooks):
    ns = crash_namespace
    category = f"k{uuid.uuid4().hex[:8]}"
    runbook(category)
    rng = random.Random(20261127)
    log = CACHE / "operator-crash-test.log"
    kills, incidents = 0, []
    while kills < KILLS_WANTED:
        name = f"inc-{len(incidents)}"
        incidents.append(name)
        create(ns, incident(name, category=category, tenant="acme"))
        while (status(ns, name).get("phase")) != "Mitigated":
            proc = start_operator(log, {"RC_NAMESPACES": ns})
            # A random point of the mitigation: after a random amount of recorded progress
            # (timeline entries), plus a random few milliseconds to land between writes.
            progress = rng.randint(0, 24)
            wait_for(lambda: len(status(ns, name).get("timeline") or []) >= progress
                     or status(ns, name).get("phase") == "Mitigated", timeout=60, what="progress", interval=0.005)
            time.sleep(rng.uniform(0, 0.05))
            stop_operator(proc, signal.SIGKILL)
            if status(ns, name).get("phase") != "Mitigated":
                kills += 1  # killed during mitigation
    proc = start_operator(log, {"RC_NAMESPACES": ns})
    try:
        for name in incidents:
            wait_for(lambda: status(ns, name).get("phase") == "Mitigated", timeout=60, what=f"{name} mitigated")
    finally:
        stop_operator(proc)
    assert kills >= KILLS_WANTED

    traces = {}
    for name in incidents:
        st = status(ns, name)
        traces[name] = st["traceId"]
        assert {s["name"]: s["state"] for s in st["steps"]} == dict.fromkeys(
            ["flags", "breaker", "restart", "replay", "pause"], "Succeeded"), (name, st["steps"])
        applied = Counter((e.get("step"), e["target"]) for e in st["timeline"] if is_write(e))
        assert all(n == 1 for n in applied.values()), (name, applied)  # one audit record per write
        restarted = [e["target"].split("/")[-1] for e in st["timeline"]
                     if e.get("step") == "restart" and e["event"] == "restart-one-by-one:applied"]
        assert restarted == DEPLOYMENTS, (name, restarted)

    # Exactly one rollout per incident and Deployment: one ReplicaSet each, plus the original.
    replicasets = Counter(rs["metadata"]["ownerReferences"][0]["name"]
                          for rs in get_json("replicasets", "-n", ns)["items"])
    for d in DEPLOYMENTS:
        assert replicasets[d] == 1 + len(incidents), (d, replicasets[d], len(incidents))
    # Exactly the bounded number of replays per incident.
    jobs = Counter(j["metadata"]["labels"]["reliability.center/incident"] for j in get_json("jobs", "-n", ns)["items"]
                   if j["metadata"]["labels"].get("reliability.center/replay-of") == "ocr-replay")
    assert jobs == dict.fromkeys(incidents, 3)
    # One audit Event per write (deterministic names make retries idempotent).
    events = [e for e in get_json("events", "-n", ns)["items"] if e["reason"] == "Audit"]
    assert all(e["count"] == 1 for e in events)
    per_write = Counter((e["involvedObject"]["name"], e["message"].split(" target=")[1].split(" ")[0]) for e in events)
    writes = sum(1 for n in incidents for e in status(ns, n)["timeline"] if is_write(e))
    assert sum(per_write.values()) == writes
