"""Two operator replicas: one leads, the other stands by; the leader dies ten times, and once it freezes.

The replicas elect a leader through a Lease (operator/leadership.py), with a
short lease so that a test sees ten failovers in about a minute. Each time the
leader is SIGKILLed at a random point of a mitigation, the standby must take
over within a bound, and a new standby is started. Once, the leader is frozen
(SIGSTOP) past its lease: the standby takes over, and the old leader, woken,
must write nothing.

The oracles are the cluster's: a watch on the Lease gives each leader's term
(from its acquireTime), the apiserver's own audit log (tests/support/audit.py)
every write request that reached it, with the replica that sent it (its
User-Agent) and when (to the microsecond), the ReplicaSets count the restarts and
the Jobs the replays. At no moment may a replica write outside its own term, the
frozen one writes nothing at all once its successor's term began, and every write
reaches the apiserver once: no field set twice to the same value, no audit Event
or replay Job created twice (a create refused with 409 counts).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections import Counter
from datetime import datetime

import pytest

from reliability_center.gateway import Ref
from tests.conftest import CACHE, WarmOperators, start_operator, stop_operator
from tests.support.audit import AuditLog, effects, repeated
from tests.support.cluster import api, apply_runbook, get_json, slow_schedulers, wait_for
from tests.support.incidents import create, incident
from tests.support.jobs import IDEMPOTENT, failed_job
from tests.support.watches import Follow

KILLS = 10
LEASE, DEADLINE, RETRY = 3.0, 2.0, 0.5
FAILOVER_BOUND = LEASE + 4 * RETRY + 3.0  # expiry, the standby's next looks, and a loaded machine
DEPLOYMENTS = ["sched-0", "sched-1"]


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class LeaseWatch:
    """Every version of the Lease, in etcd revision order: (holder, acquireTime) per term."""

    def __init__(self, namespace: str, name: str):
        self.namespace, self.name = namespace, name
        self.terms: list[tuple[str, datetime]] = []
        Follow("CoordinationV1Api", "list_namespaced_lease", namespace, on_event=self.seen)

    def seen(self, event: dict) -> None:
        lease = event["object"]
        if lease.metadata.name != self.name or not lease.spec.holder_identity:
            return
        term = (lease.spec.holder_identity, lease.spec.acquire_time)
        if not self.terms or self.terms[-1] != term:
            self.terms.append(term)

    def holder(self) -> str | None:
        """Who holds the Lease now (None before the first replica made it)."""
        lease = api().get(Ref("Lease", self.namespace, self.name)) or {}
        return (lease.get("spec") or {}).get("holderIdentity") or None


def mitigated(ns: str, name: str) -> None:
    wait_for(lambda: (get_json("incident", name, "-n", ns).get("status") or {}).get("phase") == "Mitigated",
             timeout=120, what=f"{name} mitigated")


def identity_of(proc, log) -> str:
    """The replica identity a process logged when it started (hostname-pid-random)."""
    def find():
        for line in log.read_text().splitlines():
            if '"operator started"' in line and f"-{proc.pid}-" in line:
                return line.split('"replica": "')[1].split('"')[0]
        return None

    return wait_for(find, timeout=30, what=f"process {proc.pid} to start")


@pytest.fixture
def failover_namespace(solo_namespace):
    slow_schedulers(solo_namespace, DEPLOYMENTS, "failover", min_ready=1, history=100)
    for job in ("failed-ocr-1", "failed-ocr-2", "failed-ocr-3"):
        failed_job(solo_namespace, job, {"reliability.center/role": "replay", **IDEMPOTENT})
    return solo_namespace


def test_a_leader_that_loses_its_lease_exits_instead_of_living_on_without_campaigning(solo_namespace, kube):
    # Seen before: the elector stood down and the process lived on, its probe and its queues idle, never
    # campaigning again. Now the process exits (non-zero), as controller-runtime's manager does.
    ns, lease = solo_namespace, f"rc-leader-{uuid.uuid4().hex[:6]}"
    log = CACHE / f"operator-lease-lost-{ns}.log"
    proc = start_operator(log, {"RC_NAMESPACES": ns, "RC_LEADER_ELECTION": "true", "RC_LEADER_NAMESPACE": ns,
                                "RC_LEADER_LEASE": lease, "RC_LEADER_LEASE_SECONDS": str(LEASE),
                                "RC_LEADER_RENEW_DEADLINE": str(DEADLINE), "RC_LEADER_RETRY_PERIOD": str(RETRY)})
    try:
        ref = Ref("Lease", ns, lease)
        leader = wait_for(lambda: ((kube.get(ref) or {}).get("spec") or {}).get("holderIdentity"), timeout=60,
                          what="the operator to take the Lease")
        # Another candidate takes the Lease (a compare-and-swap, as a standby does once it expired).
        current = kube.get(ref)
        kube.replace({**current, "spec": {**current["spec"], "holderIdentity": "another-replica"}})
        code, = wait_for(lambda: (c := proc.poll()) is not None and (c,), timeout=DEADLINE + 30, interval=0.1,
                         what="the operator to exit")
        assert code == 1, code
        lines = [line for line in log.read_text().splitlines() if leader in line or "leader election lost" in line]
        assert any('"leadership lost"' in line for line in lines), lines[-5:]
        assert any("the operator exits: leader election lost" in line for line in lines), lines[-5:]
        assert ((kube.get(ref) or {}).get("spec") or {}).get("holderIdentity") == "another-replica"
    finally:
        stop_operator(proc, signal.SIGKILL)


def test_the_standby_takes_over_every_time_and_no_two_replicas_ever_write_at_once(failover_namespace, seed_runbooks,
                                                                                    kube):
    ns = failover_namespace
    category = f"f{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100, "maxRefires": 100},
                                "steps": [
        {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}},
        {"name": "restart", "level": 1, "action": "restart-one-by-one",
         "params": {"role": "scheduler", "modules": ["failover"]}},
        {"name": "replay", "level": 1, "action": "replay-jobs",
         "params": {"selector": "reliability.center/role=replay", "maxReplays": 2}},
    ]})
    lease = f"rc-leader-{uuid.uuid4().hex[:6]}"
    log = CACHE / f"operator-failover-{ns}.log"
    operators = WarmOperators(log, {"RC_NAMESPACES": ns, "RC_LEADER_ELECTION": "true", "RC_LEADER_NAMESPACE": ns,
                                    "RC_LEADER_LEASE": lease, "RC_LEADER_LEASE_SECONDS": str(LEASE),
                                    "RC_LEADER_RENEW_DEADLINE": str(DEADLINE),
                                    "RC_LEADER_RETRY_PERIOD": str(RETRY)})
    leases = LeaseWatch(ns, lease)
    audit = AuditLog()
    before = audit.position()
    rng = random.Random(20261128)
    running = {}
    for _ in range(2):
        proc = operators.start()
        running[identity_of(proc, log)] = proc
    names, failovers, kills = [], [], 0
    try:
        while kills < KILLS:
            name = f"inc-{len(names)}"
            names.append(name)
            create(ns, incident(name, category=category, tenant="acme"))
            leader = wait_for(leases.holder, what="a leader")
            time.sleep(rng.uniform(0.2, 2.5))  # a random point of the mitigation
            stop_operator(running.pop(leader), signal.SIGKILL)
            kills += 1
            killed_at = time.monotonic()
            successor = wait_for(lambda: (h := leases.holder()) and h != leader and h, timeout=30,
                                 interval=0.05, what="the standby to take over")
            failovers.append(time.monotonic() - killed_at)
            assert successor in running, (successor, list(running))
            proc = operators.start()  # a new standby
            running[identity_of(proc, log)] = proc
            # One incident at a time: the restarts of two incidents would overlap on the same Deployments.
            mitigated(ns, name)
        # Once, the leader freezes past its lease: the standby takes over; woken, the old leader writes nothing.
        names.append("inc-frozen")
        create(ns, incident("inc-frozen", category=category, tenant="acme"))
        frozen = wait_for(leases.holder, what="a leader")
        time.sleep(rng.uniform(0.2, 1.5))
        os.killpg(running[frozen].pid, signal.SIGSTOP)
        wait_for(lambda: (h := leases.holder()) and h != frozen, timeout=30, what="the standby to take over")
        os.killpg(running[frozen].pid, signal.SIGCONT)
        # Woken, it notices by its own clock that its renewal is too old, and stands down.
        wait_for(lambda: any('"leadership lost"' in line and frozen in line for line in log.read_text().splitlines()),
                 timeout=30, what="the woken replica to stand down")
        # And it exits (a fresh process would start as a standby), rather than live on without campaigning.
        assert wait_for(lambda: running[frozen].poll() is not None, timeout=30, what="the woken replica to exit")
        assert running[frozen].returncode == 1
        mitigated(ns, "inc-frozen")
    finally:
        for proc in running.values():
            stop_operator(proc, signal.SIGKILL)
        operators.close()

    # Every failover within the bound.
    assert len(failovers) == KILLS and max(failovers) < FAILOVER_BOUND, failovers
    # Each step exactly once: one new ReplicaSet per restart, the bounded replays, one audit record per write.
    replicasets = Counter(rs["metadata"]["ownerReferences"][0]["name"] for rs in get_json("replicasets", "-n", ns)["items"])
    assert all(replicasets[d] == 1 + len(names) for d in DEPLOYMENTS), (replicasets, len(names))
    jobs = Counter(j["metadata"]["labels"]["reliability.center/incident"] for j in get_json("jobs", "-n", ns)["items"]
                   if "reliability.center/replay-of" in j["metadata"]["labels"])
    assert jobs == dict.fromkeys(names, 2)
    # ... as the apiserver saw the replicas' requests: no effect twice, a 409 on a create included.
    writes = audit.writes(before, namespace=ns, operator=True)
    assert not repeated(writes, retries_after_kills=True), repeated(writes, retries_after_kills=True)
    events = {e["metadata"]["name"] for e in get_json("events", "-n", ns)["items"]
              if e.get("reportingComponent") == "reliability-center"}
    created = {t.split("/")[-1] for kind, t, *_ in effects(writes) if kind == "create" and t.startswith("events ")}
    assert events and created == events, created ^ events
    # No replica wrote outside its own term: terms follow one another, each write (the Lease's own
    # campaign aside) was received during its writer's.
    terms = [(holder, parse(start)) for holder, start in
             ((h, a if isinstance(a, str) else a.isoformat()) for h, a in leases.terms)]
    assert len({h for h, _ in terms}) >= KILLS + 1, terms
    for write in (w for w in writes if w.resource != "leases"):
        current = [h for h, start in terms if start <= write.received][-1:]
        assert current == [write.replica], f"{write.replica} wrote at {write.received} during the term of {current}: " \
                                           f"{write.verb} {write.target} {write.code}"
    # The frozen replica: nothing once its successor's term began. Frozen between its read of the Lease and its
    # renewal (leadership.attempt), it sends that renewal when woken: a CAS on the Lease's resourceVersion, refused.
    successor_began = terms[[h for h, _ in terms].index(frozen) + 1][1]
    late = [f"{w.verb} {w.target} {w.code} at {w.received}" for w in writes
            if w.replica == frozen and w.received >= successor_began
            and not (w.resource == "leases" and w.verb == "update" and w.code == 409)]
    assert not late, late
