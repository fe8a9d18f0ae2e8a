"""Crash safety: SIGKILL the operator at random points, mitigating and restoring, 20+ times.

Incidents come in pairs, one for acme and one for globex, on the same shared
objects (one flags store, one integration ConfigMap, one shared allow
NetworkPolicy that isolation narrows); each new pair also joins the holds of the
pairs before it, field for field. A kill counts only when it lands after the new
operator process wrote something and before the work it was doing was done.

"Wrote something" is read from the audit Events the process posts with each write
(its replica identity names its pid): the kill lands 0 to 0.3 s after the first
effect the process made, the window where a write has landed and may not be
recorded yet. (It used to wait for the incident's status to move, which comes
after a whole step: each process then finished two or three steps, and 20 kills
took eight pairs whose every later process re-read all of them: 160 s. Killed
after its first effect, a process dies inside a step as often as between two, and
the 20 kills came in two to four pairs: from the second on, a pair joins the holds
of those before it. A floor of three pairs cost 46 kills and 211 s in one run.)

At the end every step ran exactly once: one audit record per (incident, step,
target) in the timeline and among the Events, one new ReplicaSet per restart,
exactly the bounded number of replay Jobs, a snapshot behind every hold; and once
every incident is resolved (killed during that too), the app is back exactly as
it was, with no hold left. The apiserver's own audit log (tests/support/audit.py)
counts what the operator processes sent, mitigating and then restoring: no effect
twice — no field set twice to the same value, no audit Event or replay Job
created twice by one process, not even by a request the apiserver refused with
409. Only a process started after a kill may send a create of the same
deterministic name again (its predecessor died before recording it), and the
apiserver refuses it.
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import Counter

import pytest

from reliability_center.gateway.holds import Edit, holder_id, holds
from tests.conftest import CACHE, WarmOperators, stop_operator
from tests.support.audit import AuditLog, effects, repeated
from tests.support.cluster import apply_docs, apply_runbook, get_json, load_yaml, rollout_status, wait_for
from tests.support.incidents import app_content, changed, create, incident, resolve, status
from tests.support.jobs import IDEMPOTENT, failed_job
from tests.support.watches import Follow

KILLS_WANTED = 20
TENANTS = ("acme", "globex")
#: Each tenant's own schedulers: the pair's restarts run side by side, each incident one target at a time.
DEPLOYMENTS = {t: [f"sched-{t}-{i}" for i in range(2)] for t in TENANTS}
STEPS = ["flags", "breaker", "isolate", "restart", "replay", "pause"]
HOLDING_KINDS = "configmaps,deployments,cronjobs,networkpolicies"
FAILED_JOBS = ("failed-ocr-1", "failed-ocr-2", "failed-ocr-3", "failed-ocr-4")


@pytest.fixture
def crash_namespace(solo_namespace):
    name = solo_namespace  # the session operator ignores it: only this test's operators act there
    apply_docs(name, load_yaml("examples/protected-app/app.yaml"))
    docs = []
    for tenant, d in ((t, d) for t, ds in DEPLOYMENTS.items() for d in ds):
        labels = {"reliability.center/role": "scheduler", "reliability.center/module": "crash",
                  "reliability.center/tenant": tenant}
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": d, "labels": labels},
                     "spec": {"replicas": 1, "revisionHistoryLimit": 100, "selector": {"matchLabels": {"app": d}},
                              "template": {"metadata": {"labels": {"app": d, **labels}},
                                           "spec": {"containers": [{"name": "c", "image": "registry.invalid/s:1"}]}}}})
    apply_docs(name, docs)
    for d in (d for ds in DEPLOYMENTS.values() for d in ds):
        rollout_status(name, "Deployment", d)
    for job in FAILED_JOBS:  # the queue: shared OCR work that failed, more than one incident may replay
        failed_job(name, job, {"reliability.center/role": "replay", **IDEMPOTENT})
    return name


def runbook(category: str) -> None:
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100, "maxRefires": 100, "maxIsolatedTenants": 3},
                                "steps": [
        {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["search"]}},
        {"name": "breaker", "level": 1, "action": "circuit-breaker", "params": {"integration": "ocr-provider"}},
        {"name": "isolate", "level": 1, "action": "isolate-tenant", "takeOwnership": True},
        {"name": "restart", "level": 1, "action": "restart-one-by-one",
         "params": {"role": "scheduler", "modules": ["crash"]}},
        {"name": "replay", "level": 1, "action": "replay-jobs",
         "params": {"selector": "reliability.center/role=replay", "maxReplays": 3}},
        {"name": "pause", "level": 1, "action": "pause-ingestion", "params": {"modules": ["ocr"]},
         "takeOwnership": True},
    ]})


WRITES = ("applied", "created", "exists", "unchanged")


def is_write(entry: dict) -> bool:
    return entry.get("target") and entry["event"].split(":")[-1] in WRITES and not entry["event"].startswith("restore:")


def incidents(kube, ns: str, names: list[str]) -> dict[str, dict]:
    """name -> incident, read with the API client."""
    return {i["metadata"]["name"]: i for i in kube.list("Incident", ns) if i["metadata"]["name"] in names}


class AuditEvents:
    """The audit Events posted in the namespace, by the replica that posted each (its identity holds its pid):
    a process posts one right after each write it makes, before the step's status records it."""

    def __init__(self, namespace: str):
        self.posters: list[str] = []
        self.watch = Follow("CoreV1Api", "list_namespaced_event", namespace, on_event=self.seen,
                            on_error=lambda error: None)

    def seen(self, event: dict) -> None:
        if event["type"] == "ADDED" and event["object"].reporting_component == "reliability-center":
            self.posters.append(event["object"].reporting_instance or "")

    def by(self, pid: int) -> int:
        assert self.watch.error is None, f"the watch on Events broke: {self.watch.error!r}"
        return sum(1 for poster in self.posters if poster.rsplit("-", 2)[-2:-1] == [str(pid)])  # host-pid-random


def kill_until(kube, ns: str, names: list[str], done, rng: random.Random, operators: WarmOperators,
               counted: list[int], audit_events: AuditEvents) -> None:
    """Start an operator, let it write, SIGKILL it at a random moment; again until ``done`` holds for all."""
    finished = lambda: all(done(i.get("status") or {}) for i in incidents(kube, ns, names).values())  # noqa: E731
    while not finished():
        proc = operators.start()
        try:
            # This process has written once it posted an audit Event (or everything is finished).
            wait_for(lambda: audit_events.by(proc.pid) or finished(), timeout=60, what="the new operator to write",
                     interval=0.01)
            time.sleep(rng.uniform(0, 0.3))  # a random point further on: between writes, or inside one
        finally:
            stop_operator(proc, signal.SIGKILL)
        if audit_events.by(proc.pid) and not finished():
            counted[0] += 1  # it wrote, and it was killed before the work was done


def test_sigkill_at_random_points_loses_no_step_and_repeats_no_side_effect(crash_namespace, seed_runbooks, kube):
    ns = crash_namespace
    category = f"k{uuid.uuid4().hex[:8]}"
    runbook(category)
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("metadata"), what="the runbook")
    rng = random.Random(20261128)
    operators = WarmOperators(CACHE / "operator-crash-test.log", {"RC_NAMESPACES": ns})
    original = app_content(ns)
    audit = AuditLog()
    before = audit.position()
    audit_events = AuditEvents(ns)
    kills, names = [0], []
    mitigated = lambda st: st.get("phase") == "Mitigated"  # noqa: E731
    while kills[0] < KILLS_WANTED:
        pair = [f"inc-{len(names) + i}-{tenant}" for i, tenant in enumerate(TENANTS)]
        names += pair
        for name in pair:
            create(ns, incident(name, category=category, tenant=name.split("-")[-1], module="search"))
        kill_until(kube, ns, pair, mitigated, rng, operators, kills, audit_events)
    mitigation_kills = kills[0]

    traces = {}
    for name in names:
        st = status(ns, name)
        traces[name] = st["traceId"]
        assert {s["name"]: s["state"] for s in st["steps"]} == dict.fromkeys(STEPS, "Succeeded"), (name, st["steps"])
        # One audit record per (step, target): a step re-run after a kill adds none.
        per_target = Counter((e["step"], e["target"]) for e in st["timeline"] if is_write(e))
        assert per_target and all(n == 1 for n in per_target.values()), (name, per_target)
        restarted = [e["target"].split("/")[-1] for e in st["timeline"]
                     if e.get("step") == "restart" and e["event"] == "restart-one-by-one:applied"]
        assert restarted == DEPLOYMENTS[name.split("-")[-1]], (name, restarted)
    # ... and, as the apiserver saw the operators' requests, no effect twice: one create request per audit
    # Event (a 409 counts: deterministic names would hide a repeat from a list of Events), one per
    # replay Job, each field set to each value once; a restart's annotation once per Deployment.
    mitigated_at = audit.position()
    mitigation = audit.writes(before, namespace=ns, operator=True)
    assert not repeated(mitigation, retries_after_kills=True), repeated(mitigation, retries_after_kills=True)
    done = effects(mitigation)
    posted = {e["metadata"]["name"]: e for e in get_json("events", "-n", ns)["items"]
              if e.get("reportingComponent") == "reliability-center"}
    created = {t.split("/")[-1] for kind, t, *_ in done if kind == "create" and t.startswith("events ")}
    assert created == set(posted), created ^ set(posted)
    assert sum(1 for e in posted.values() if e["reason"] == "Audit") == \
        sum(1 for n in names for e in status(ns, n)["timeline"] if is_write(e))
    restarts = Counter(t.split("/")[-1] for kind, t, *rest in done
                       if kind == "set" and t.startswith("deployments ") and rest[0].endswith("~1restarted-by"))
    assert restarts == {d: len(names) // 2 for ds in DEPLOYMENTS.values() for d in ds}, restarts

    # Exactly one rollout per incident and Deployment: one ReplicaSet each, plus the original.
    replicasets = Counter(rs["metadata"]["ownerReferences"][0]["name"]
                          for rs in get_json("replicasets", "-n", ns)["items"])
    for d in (d for ds in DEPLOYMENTS.values() for d in ds):
        assert replicasets[d] == 1 + len(names) // 2, (d, replicasets[d], len(names))
    # Exactly the bounded number of replays per incident, each of a failed Job, once.
    replays = [j["metadata"]["labels"] for j in get_json("jobs", "-n", ns)["items"]
               if "reliability.center/replay-of" in j["metadata"]["labels"]]
    assert Counter(r["reliability.center/incident"] for r in replays) == dict.fromkeys(names, 3)
    assert Counter((r["reliability.center/incident"], r["reliability.center/replay-of"]) for r in replays) == \
        {(n, j): 1 for n in names for j in FAILED_JOBS[:3]}

    # A snapshot behind every hold, and the holders of each shared field are exactly its incidents' steps.
    snapshots = {c["metadata"]["name"]: c for c in get_json("configmaps", "-n", ns, "-l", "reliability.center/snapshot")["items"]}
    held = get_json(HOLDING_KINDS, "-n", ns)["items"]
    assert any(holds(o) for o in held)
    for o in held:
        for holders in holds(o):
            assert set(holders) <= {holder_id(s) for s in snapshots}, (o["kind"], o["metadata"]["name"], holders)
            assert len(holders) == len(set(holders)), (o["kind"], o["metadata"]["name"], holders)
    store = next(o for o in held if o["metadata"]["name"] == "flags-search")
    tenant_keys = [holds(store).holders(Edit(f"/data/{k}", None).key) for k in store["data"] if k.endswith(".tenant.acme")]
    assert tenant_keys and all(len(h) == len(names) // 2 for h in tenant_keys)  # every acme incident
    isolations = json.loads(get_json("configmap", "rc-isolations", "-n", ns)["data"]["tenants"])
    assert set(isolations) == {"acme", "globex"} and sum(map(len, isolations.values())) == len(names)

    # Resolve every incident, killing the operator during the restores too.
    for name in names:
        resolve(ns, name)
    verifying = lambda st: st.get("phase") == "Verifying"  # noqa: E731
    kill_until(kube, ns, names, verifying, rng, operators, kills, audit_events)
    operators.close()
    restoring = audit.writes(mitigated_at, namespace=ns, operator=True)
    assert not repeated(restoring, retries_after_kills=True), repeated(restoring, retries_after_kills=True)
    for name in names:
        st = status(ns, name)
        assert {s["name"]: s["state"] for s in st["steps"] if s["name"] not in ("restart", "replay")} == \
            dict.fromkeys(["flags", "breaker", "isolate", "pause"], "Restored"), (name, st["steps"])
        assert not any(c["type"] == "RestoreConflicts" for c in st["conditions"]), (name, st["conditions"])
    # The app is back exactly as it was: restart markers and replay Jobs are not undone by design.
    left = changed(original, app_content(ns))
    restarted = {d for ds in DEPLOYMENTS.values() for d in ds}
    assert {k for k in left if not (k.startswith("Job/") or k.split("/")[1] in restarted)} == set(), left
    assert not [o["metadata"]["name"] for o in get_json(HOLDING_KINDS, "-n", ns)["items"] if holds(o)]
    assert json.loads(get_json("configmap", "rc-isolations", "-n", ns)["data"]["tenants"]) == {}
    assert mitigation_kills >= KILLS_WANTED, mitigation_kills
    print(f"crash: {mitigation_kills} kills over {len(names) // 2} pairs mitigating, "
          f"{kills[0] - mitigation_kills} restoring")
