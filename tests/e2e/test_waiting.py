"""100 incidents wait on slow rollouts at once, and the operator still answers a new incident at once.

Each incident restarts its own two schedulers one at a time; their Deployments
take seconds to become available (``minReadySeconds``), so all of them are in flight
together. A step that waits returns and is looked at again later (the work
queue's timers), so no thread is held: the operator's thread count stays bounded
(read from /proc), a new incident gets its first Level 1 write within seconds,
and each incident's two rollouts still happen one after the other, as a watch on
the ReplicaSets sees them in etcd revision order.

Why 100 proves it (it was 200, 94 s of the test command): a waiting step that held a
thread would hold at least the 50 the test requires to be waiting when the new
incident comes, over ``THREAD_BOUND`` (40) with the operator's own threads (19 at 200
incidents, 19 to 20 at 100, measured); and the new incident still comes behind 100
waiting ones, over twelve times the operator's 8 workers.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor


from tests.conftest import CACHE, start_operator, stop_operator
from reliability_center.gateway import Ref
from tests.support.cluster import apply_docs, apply_runbook, get_json, load_yaml, wait_for
from tests.support.incidents import create, incident
from tests.support.watches import Follow

INCIDENTS = 100
WORKERS = 8
#: Threads of an operator at rest (Kopf, its executor, the HTTP pools) plus its workers: the bound.
THREAD_BOUND = 40


def create_all(kube, namespace: str, objects: list[dict]) -> None:
    """Create many objects at once (kubectl apply takes a GET and a PATCH each, one after the other)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda o: kube.create({**o, "metadata": {**o["metadata"], "namespace": namespace}}), objects))


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))


class ReplicaSetWatch:
    """(revision, deployment, new ReplicaSet created?, available?) for every ReplicaSet change."""

    def __init__(self, namespace: str):
        self.events: list[tuple[int, str, str, bool]] = []
        Follow("AppsV1Api", "list_namespaced_replica_set", namespace, on_event=self.seen)

    def seen(self, event: dict) -> None:
        rs = event["object"]
        marked = "reliability.center/restarted-by" in (rs.spec.template.metadata.annotations or {})
        if not marked:
            return
        available = (rs.status.available_replicas or 0) >= (rs.spec.replicas or 0) > 0
        self.events.append((int(rs.metadata.resource_version), rs.metadata.owner_references[0].name,
                            rs.metadata.name, available))


def test_a_hundred_waiting_incidents_hold_no_thread_and_a_new_one_is_answered_at_once(solo_namespace,
                                                                                        seed_runbooks, kube):
    ns = solo_namespace
    apply_docs(ns, load_yaml("examples/protected-app/app.yaml"))
    deployments = []
    for i in range(INCIDENTS):
        for j in range(2):
            labels = {"reliability.center/role": "scheduler", "reliability.center/module": f"m{i}"}
            deployments.append({"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"name": f"m{i}-sched-{j}", "labels": labels},
                                "spec": {"replicas": 1, "minReadySeconds": 1, "selector": {"matchLabels": {"app": f"m{i}-{j}"}},
                                         "template": {"metadata": {"labels": {"app": f"m{i}-{j}", **labels}},
                                                      "spec": {"containers": [{"name": "c", "image": "registry.invalid/s:1"}]}}}})
    create_all(kube, ns, deployments)
    wait_for(lambda: all((d.get("status") or {}).get("availableReplicas") == 1
                         for d in kube.list("Deployment", ns, "reliability.center/role=scheduler")),
             timeout=180, interval=0.5, what=f"{2 * INCIDENTS} schedulers available")
    category = f"s{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 1000},
                                "steps": [{"name": "restart", "level": 1, "action": "restart-one-by-one",
                                           "params": {"role": "scheduler"}, "timeout": "10m"}]})
    replicasets = ReplicaSetWatch(ns)
    proc = start_operator(CACHE / f"operator-waiting-{ns}.log", {"RC_NAMESPACES": ns, "RC_WORKERS": str(WORKERS)})
    peak = 0
    try:
        wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
        create_all(kube, ns, [incident(f"inc-{i}", category=category, tenant="acme", module=f"m{i}")
                              for i in range(INCIDENTS)])

        def in_flight() -> int:
            nonlocal peak
            peak = max(peak, threads(proc.pid))
            found = kube.list("Incident", ns)
            return sum(1 for i in found for s in (i.get("status") or {}).get("steps") or [] if s["state"] == "Running")

        wait_for(lambda: in_flight() >= INCIDENTS * 0.9, timeout=120, interval=0.5,
                 what="the incidents' restarts to be waiting on their rollouts together")
        # While they wait: a new incident's first write happens at once.
        create(ns, incident("new", category="billing", module="billing"))
        asked = time.monotonic()
        wait_for(lambda: (kube.get(Ref("ConfigMap", ns, "flags-billing"))["data"] or {}).get(
            "auto-invoicing.tenant.acme") == "false", timeout=15, interval=0.05, what="the new incident's first write")
        answered = time.monotonic() - asked
        waiting_then = in_flight()
        wait_for(lambda: in_flight() == 0 and all((i.get("status") or {}).get("phase") == "Mitigated"
                                                  for i in kube.list("Incident", ns)),
                 timeout=300, interval=1, what="every incident mitigated")
    finally:
        stop_operator(proc)
    assert waiting_then >= INCIDENTS * 0.5, f"only {waiting_then} were still waiting when the new one came"
    assert answered < 10, answered
    assert peak <= THREAD_BOUND, f"the operator ran {peak} threads"
    # Per incident, the second rollout starts (its new ReplicaSet appears) only after the first one is available.
    created, available = {}, defaultdict(int)
    for rv, deployment, name, ok in sorted(replicasets.events):
        created.setdefault(deployment, rv)
        if ok and not available[deployment]:
            available[deployment] = rv
    for i in range(INCIDENTS):
        first, second = f"m{i}-sched-0", f"m{i}-sched-1"
        assert available[first] and created[second] > available[first], (i, created[second], available[first])
    print(f"waiting: {waiting_then} in flight, new incident answered in {answered:.2f}s, peak threads {peak}")
