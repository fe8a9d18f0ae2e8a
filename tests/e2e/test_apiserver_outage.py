"""The kube-apiserver goes away for 10 s in the middle of a mitigation, then comes back.

The operator keeps its watches (Kopf re-lists), retries with backoff, reports the
outage at its health endpoint, and finishes the mitigation afterwards: every
step once, no write twice, as the apiserver's own audit log counts the operator's
requests (tests/support/audit.py): each audit Event created by one request, even a
refused one, each field set once, each replay Job created once. The apiserver is the local cluster's own process,
killed and started again (tests/support/apiserver.py). It takes the cluster away
from every other test too, so it is marked ``exclusive``: ``make test`` (hack/test.sh)
runs it in a session of its own on a brand-new cluster of its own, beside the
parallel session.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter

import pytest

from tests.conftest import CACHE, start_operator, stop_operator
from tests.support import apiserver
from tests.support.audit import AuditLog, effects, repeated
from tests.support.cluster import apply_runbook, get_json, slow_schedulers, wait_for
from tests.support.incidents import create, incident, status
from tests.support.jobs import IDEMPOTENT, failed_job
from tests.support.processes import free_port, health

pytestmark = pytest.mark.exclusive
DEPLOYMENTS = ["sched-0", "sched-1"]
OUTAGE = 10.0


def listening(url: str) -> bool:
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_ten_second_apiserver_outage_mid_mitigation_ends_in_a_complete_mitigation_with_no_write_twice(
        solo_namespace, seed_runbooks):
    ns = solo_namespace
    slow_schedulers(ns, DEPLOYMENTS, "outage", min_ready=3)
    for job in ("failed-ocr-1", "failed-ocr-2", "failed-ocr-3"):
        failed_job(ns, job, {"reliability.center/role": "replay", **IDEMPOTENT})
    category = f"o{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
        {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}},
        {"name": "restart", "level": 1, "action": "restart-one-by-one",
         "params": {"role": "scheduler", "modules": ["outage"]}},
        {"name": "replay", "level": 1, "action": "replay-jobs",
         "params": {"selector": "reliability.center/role=replay", "maxReplays": 2}},
    ]})
    url = f"http://127.0.0.1:{free_port()}/healthz"
    audit = AuditLog()
    before = audit.position()
    proc = start_operator(CACHE / f"operator-outage-{ns}.log", {"RC_NAMESPACES": ns, "RC_HEALTH_URL": url})
    try:
        # The endpoint listening, not asked yet: Kopf keeps a probe's answer for 10 s.
        wait_for(lambda: listening(url), timeout=60, what="the health endpoint")
        create(ns, incident("outage", category=category, tenant="acme"))
        # In the middle: the first restart started, waiting on its rollout.
        wait_for(lambda: any(s["name"] == "restart" and s["state"] == "Running" for s in status(ns, "outage")
                             .get("steps") or []), timeout=60, interval=0.02, what="the restart to be under way")
        stopped = time.monotonic()
        how = apiserver.stop()
        try:
            reported = wait_for(lambda: (h := health(url)) and str(h.get("apiserver", "")).startswith("unreachable")
                                and h, timeout=OUTAGE - 1, interval=0.2, what="the outage in the health report")
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))  # the outage lasts its 10 s
            assert proc.poll() is None, "the operator lives through the outage"
        finally:
            apiserver.start(*how)
        assert "unreachable" in reported["apiserver"]
        st = wait_for(lambda: (s := status(ns, "outage")) and s.get("phase") == "Mitigated" and s, timeout=120,
                      interval=0.2, what="the mitigation to complete after the outage")
        wait_for(lambda: (h := health(url)) and h.get("apiserver") == "ok", timeout=30, interval=1,
                 what="the health report to be ok again (its answers are kept 10 s)")
    finally:
        stop_operator(proc)

    assert {s["name"]: s["state"] for s in st["steps"]} == dict.fromkeys(["flags", "restart", "replay"], "Succeeded")
    # No write twice, as the apiserver saw the operator's requests: not one repeat (a create that got
    # 409 included), and the writes the mitigation is made of are all there.
    writes = audit.writes(before, namespace=ns, operator=True)
    assert not repeated(writes), repeated(writes)
    done = effects(writes)
    restarted = [t.split("/")[-1] for (kind, t, *rest) in done
                 if kind == "set" and t.startswith("deployments ") and rest[0].endswith("~1restarted-by")]
    assert sorted(restarted) == DEPLOYMENTS, restarted
    created = Counter(t.split(" ")[0] for kind, t, *_ in done if kind == "create")
    assert created["jobs"] == 2, created
    # One audit Event per write in the timeline, each created by one request.
    timeline_writes = [e for e in st["timeline"]
                       if e.get("target") and e["event"].split(":")[-1] in ("applied", "created")]
    audited = [e for e in get_json("events", "-n", ns)["items"] if e["reason"] == "Audit"]
    assert created["events"] == len(timeline_writes) == len(audited), (created, timeline_writes, audited)
    replicasets = Counter(rs["metadata"]["ownerReferences"][0]["name"] for rs in get_json("replicasets", "-n", ns)["items"])
    assert all(replicasets[d] == 2 for d in DEPLOYMENTS), replicasets  # one restart each, no more
    jobs = [j for j in get_json("jobs", "-n", ns)["items"]
            if "reliability.center/replay-of" in j["metadata"]["labels"]]
    assert len(jobs) == 2
