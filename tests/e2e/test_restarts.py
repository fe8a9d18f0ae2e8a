"""Restarts and scale-downs happen one at a time: no two rollouts overlap.

The oracle is the cluster's own controllers' objects, not the operator's
rollout rule: a watch on the namespace's ReplicaSets and Pods sees every change
in etcd revision order.

- A Deployment's restart starts when its new ReplicaSet (the one whose pod
  template carries our restart marker) appears, and ends at the first revision
  where that ReplicaSet has all its replicas available and every older
  ReplicaSet of the Deployment is down to zero.
- A StatefulSet's restart starts when the first of its pods goes away, and ends
  at the first revision where every one of its pods runs the new revision
  (``controller-revision-hash``) and is Ready.
- A scale-down starts when the Deployment's ReplicaSet is asked for fewer
  replicas, and ends when that many of its pods are left.

The next target's rollout must start after the previous one ended.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import defaultdict

import pytest
from kubernetes import client, config, watch

from reliability_center.actions.restart_one_by_one import RESTART_ANNOTATION
from tests.support.cluster import TEST_LABELS, apply_docs, get_json, kubectl, rollout_status, wait_for
from tests.support.incidents import create, incident, wait_phase

pytestmark = pytest.mark.usefixtures("operator")
DEPLOYMENTS = [f"sched-{i}" for i in range(4)]
STATEFULSETS = ["shard-a", "shard-b"]
LABELS = {"reliability.center/role": "scheduler", "reliability.center/module": "batch"}


def workloads(namespace: str, statefulsets: bool) -> None:
    pod = {"spec": {"containers": [{"name": "c", "image": "registry.invalid/s:1"}]}}
    # minReadySeconds: a rollout takes a second or more on kwok, so one that did not wait would overlap.
    docs = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": LABELS},
             "spec": {"replicas": 2, "minReadySeconds": 1, "selector": {"matchLabels": {"app": name}},
                      "template": {"metadata": {"labels": {"app": name, **LABELS}}, **pod}}} for name in DEPLOYMENTS]
    if statefulsets:
        docs += [{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "labels": LABELS},
                  "spec": {"replicas": 2, "minReadySeconds": 1, "serviceName": name,
                           "selector": {"matchLabels": {"app": name}},
                           "template": {"metadata": {"labels": {"app": name, **LABELS}}, **pod}}}
                 for name in STATEFULSETS]
    apply_docs(namespace, docs)
    for name in DEPLOYMENTS:
        rollout_status(namespace, "Deployment", name)
    for name in STATEFULSETS if statefulsets else []:
        rollout_status(namespace, "StatefulSet", name, timeout=90)


class Recorder:
    """Every ReplicaSet and Pod event of one namespace, each with its etcd revision."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.events: list[tuple[int, str, dict]] = []
        self.ready = threading.Barrier(3)
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        config.load_kube_config(config_file=os.environ["KUBECONFIG"])
        apps, core = client.AppsV1Api(), client.CoreV1Api()
        for kind, lister in (("ReplicaSet", apps.list_namespaced_replica_set), ("Pod", core.list_namespaced_pod)):
            threading.Thread(target=self._watch, args=(kind, lister), daemon=True).start()
        self.ready.wait(30)

    def _watch(self, kind: str, lister) -> None:
        rv = lister(self.namespace).metadata.resource_version
        self.ready.wait(30)  # from here on, every change after rv is delivered in order
        w = watch.Watch()
        for event in w.stream(lister, self.namespace, resource_version=rv, timeout_seconds=120, _request_timeout=130):
            obj = client.ApiClient().sanitize_for_serialization(event["object"])
            with self._lock:
                self.events.append((int(obj["metadata"]["resourceVersion"]), kind,
                                    {"type": event["type"], **obj}))
            if self.stop.is_set():
                w.stop()

    def ordered(self) -> list[tuple[int, str, dict]]:
        with self._lock:
            return sorted(self.events, key=lambda e: e[0])


def owner(obj: dict) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return refs[0]["name"] if refs else None


def restart_spans(events: list[tuple[int, str, dict]], old_revisions: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Start and end revision of each restart, from ReplicaSets and Pods alone."""
    replicasets: dict[str, dict[str, dict]] = defaultdict(dict)  # deployment -> rs name -> latest rs
    pods: dict[str, dict[str, dict]] = defaultdict(dict)  # statefulset -> pod name -> latest pod
    spans: dict[str, list[int]] = {}
    for rv, kind, obj in events:
        if kind == "ReplicaSet":
            deployment = owner(obj)
            replicasets[deployment][obj["metadata"]["name"]] = obj
            new = [r for r in replicasets[deployment].values()
                   if RESTART_ANNOTATION in (r["spec"]["template"]["metadata"].get("annotations") or {})]
            old = [r for r in replicasets[deployment].values() if r not in new]
            if new and deployment not in spans:
                spans[deployment] = [rv, 0]
            if new and not spans[deployment][1] \
                    and all((r["status"].get("availableReplicas") or 0) >= r["spec"]["replicas"] > 0 for r in new) \
                    and all((r["status"].get("replicas") or 0) == 0 for r in old):
                spans[deployment][1] = rv
        elif kind == "Pod" and owner(obj) in old_revisions:
            sts, name = owner(obj), obj["metadata"]["name"]
            if obj["type"] == "DELETED":
                pods[sts].pop(name, None)
            else:
                pods[sts][name] = obj
            if (obj["type"] == "DELETED" or obj["metadata"].get("deletionTimestamp")) and sts not in spans:
                spans[sts] = [rv, 0]
            current = list(pods[sts].values())
            if sts in spans and not spans[sts][1] and len(current) == 2 and all(
                    p["metadata"]["labels"].get("controller-revision-hash") != old_revisions[sts]
                    and not p["metadata"].get("deletionTimestamp")
                    and any(c["type"] == "Ready" and c["status"] == "True"
                            for c in (p.get("status") or {}).get("conditions") or []) for p in current):
                spans[sts][1] = rv
    return {name: (start, end) for name, (start, end) in spans.items()}


def scale_spans(events: list[tuple[int, str, dict]], replicas: int) -> dict[str, tuple[int, int]]:
    spans: dict[str, list[int]] = {}
    for rv, kind, obj in events:
        if kind != "ReplicaSet":
            continue
        deployment = owner(obj)
        if obj["spec"]["replicas"] == replicas and deployment not in spans:
            spans[deployment] = [rv, 0]
        if deployment in spans and not spans[deployment][1] and (obj["status"].get("replicas") or 0) == replicas:
            spans[deployment][1] = rv
    return {name: (s, e) for name, (s, e) in spans.items()}


def run(app: str, params: dict, statefulsets: bool = False) -> tuple[dict, Recorder, dict[str, str]]:
    workloads(app, statefulsets)
    revisions = {name: get_json("statefulset", name, "-n", app)["status"]["currentRevision"]
                 for name in (STATEFULSETS if statefulsets else [])}
    cat = f"r{uuid.uuid4().hex[:8]}"
    apply_docs(None, [{"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
                       "metadata": {"name": f"rb-{cat}", "labels": TEST_LABELS},
                       "spec": {"match": {"category": cat}, "steps": [
                           {"name": "one-by-one", "level": 1, "action": "restart-one-by-one",
                            "takeOwnership": params.get("mode") == "scale",  # replicas are the app's
                            "params": {"role": "scheduler", "modules": ["batch"], **params}}]}}])
    wait_for(lambda: get_json("runbook", f"rb-{cat}").get("status", {}).get("conditions"), what="runbook ready")
    recorder = Recorder(app)
    recorder.start()
    create(app, incident("restarts", category=cat, tenant="*"))
    st = wait_phase(app, "restarts", {"Mitigated", "Failed"}, timeout=180)
    assert st["phase"] == "Mitigated", st["steps"]
    return st, recorder, revisions


def assert_one_at_a_time(spans: dict[str, tuple[int, int]], order: list[str]) -> None:
    assert sorted(spans) == sorted(order), spans
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    assert [name for name, _ in ordered] == order
    for (prev, (_, prev_end)), (nxt, (nxt_start, _)) in zip(ordered, ordered[1:]):
        assert prev_end, f"{prev} never finished"
        assert nxt_start > prev_end, f"{nxt} started (rv {nxt_start}) before {prev} settled (rv {prev_end})"


def test_restarts_of_deployments_and_statefulsets_are_one_at_a_time(app):
    st, recorder, revisions = run(app, {"mode": "restart"}, statefulsets=True)
    order = DEPLOYMENTS + STATEFULSETS
    spans = wait_for(lambda: (s := restart_spans(recorder.ordered(), revisions)) and len(s) == len(order)
                     and all(e for _, e in s.values()) and s, timeout=60, what="every rollout seen complete")
    recorder.stop.set()
    assert_one_at_a_time(spans, order)
    # One audit record per target, in the order they were restarted; one new ReplicaSet per Deployment.
    audited = [e["target"].split("/")[-1] for e in st["timeline"] if e["event"] == "restart-one-by-one:applied"]
    assert audited == order
    per_deployment = defaultdict(int)
    for rs in get_json("replicasets", "-n", app)["items"]:
        per_deployment[owner(rs)] += 1
    assert all(per_deployment[d] == 2 for d in DEPLOYMENTS), dict(per_deployment)


def test_scale_downs_are_one_at_a_time_across_four_deployments(app):
    st, recorder, _ = run(app, {"mode": "scale", "replicas": 1})
    spans = wait_for(lambda: (s := scale_spans(recorder.ordered(), 1)) and len(s) == len(DEPLOYMENTS)
                     and all(e for _, e in s.values()) and s, timeout=60, what="every scale-down seen complete")
    recorder.stop.set()
    assert_one_at_a_time(spans, DEPLOYMENTS)
    assert all(get_json("deployment", n, "-n", app)["spec"]["replicas"] == 1 for n in DEPLOYMENTS)
