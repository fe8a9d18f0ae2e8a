"""Posts reach the leader: the webhooks' Service is pointed at the replica that holds the Lease.

Two operator replicas run as two processes standing for two pods (``POD_NAME``, ``POD_IP``), with the
selector-less Service their install has (``RC_LEADER_SERVICE``). The oracle is the cluster: the Lease's
holder, and the EndpointSlices the apiserver lists for the Service (by ``kubernetes.io/service-name``, as
kube-proxy reads them): the addresses a post would go to. They must be the holder's alone; after the
leader is SIGKILLed, its successor's alone; after the last replica stops cleanly, none. The
controller-manager runs: a slice it does not manage must be left as written.
"""

from __future__ import annotations

import signal
import uuid

from reliability_center.gateway import Ref
from tests.conftest import CACHE, start_operator, stop_operator
from tests.support.cluster import api, apply_docs, get_json, wait_for

LEASE, DEADLINE, RETRY = 3.0, 2.0, 0.5
ADDRESSES = {"rc-a": "10.244.7.1", "rc-b": "10.244.7.2"}


def addresses(ns: str, service: str) -> set[str]:
    """The ready addresses of the Service's EndpointSlices, as the apiserver lists them."""
    slices = get_json("endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}").get("items") or []
    return {a for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
            for a in e.get("addresses") or []}


def holder(ns: str, lease: str) -> str | None:
    return ((api().get(Ref("Lease", ns, lease)) or {}).get("spec") or {}).get("holderIdentity") or None


def test_the_webhooks_service_sends_posts_to_the_leader_alone_and_follows_a_failover(solo_namespace):
    ns, lease = solo_namespace, f"rc-leader-{uuid.uuid4().hex[:6]}"
    apply_docs(ns, [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hooks"},
                     "spec": {"ports": [{"name": "intake", "port": 9443, "targetPort": 9443}]}}])
    env = {"RC_NAMESPACES": ns, "RC_LEADER_ELECTION": "true", "RC_LEADER_NAMESPACE": ns, "RC_LEADER_LEASE": lease,
           "RC_LEADER_LEASE_SECONDS": str(LEASE), "RC_LEADER_RENEW_DEADLINE": str(DEADLINE),
           "RC_LEADER_RETRY_PERIOD": str(RETRY), "RC_LEADER_SERVICE": "hooks", "RC_INTAKE_PORT": "0"}
    log = CACHE / f"operator-leader-service-{ns}.log"

    def start(pod: str):
        return start_operator(log, {**env, "POD_NAME": pod, "POD_IP": ADDRESSES[pod]})

    running = {"rc-a": start("rc-a")}
    try:
        wait_for(lambda: holder(ns, lease) == "rc-a", timeout=60, what="rc-a to lead")
        running["rc-b"] = start("rc-b")
        wait_for(lambda: addresses(ns, "hooks") == {ADDRESSES["rc-a"]}, timeout=30, interval=0.3,
                 what="the Service to send to the leader alone")
        stop_operator(running.pop("rc-a"), signal.SIGKILL)
        # The dead leader's address stays until its successor writes its own.
        wait_for(lambda: holder(ns, lease) == "rc-b", timeout=LEASE + 20, what="rc-b to take over")
        wait_for(lambda: addresses(ns, "hooks") == {ADDRESSES["rc-b"]}, timeout=30, interval=0.3,
                 what="the Service to follow the failover")
        stop_operator(running.pop("rc-b"))  # SIGTERM: a clean stop releases the Lease and the Service
        assert addresses(ns, "hooks") == set()
        assert holder(ns, lease) is None
    finally:
        for proc in running.values():
            stop_operator(proc, signal.SIGKILL)
