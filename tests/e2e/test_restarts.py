"""Restarts and scale-downs happen one at a time: no two rollouts overlap.

A watch on the namespace's Deployments sees every change in etcd revision
order. A rollout starts at the event where our restart marker (or the new
replica count) appears and ends at the first event where kubectl's
rollout-status rules say it is complete; the next rollout must start after.
"""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from kubernetes import client, config, watch

from reliability_center.actions.restart_one_by_one import RESTART_ANNOTATION
from reliability_center.actions.rollout import rollout_status
from tests.support.cluster import TEST_LABELS, apply_docs, get_json, kubectl, wait_for
from tests.support.incidents import create, incident, wait_phase

pytestmark = pytest.mark.usefixtures("operator")
TARGETS = [f"sched-{i}" for i in range(6)]


def deployments(namespace: str) -> None:
    docs = []
    for name in TARGETS:
        labels = {"reliability.center/role": "scheduler", "reliability.center/module": "batch"}
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                              "template": {"metadata": {"labels": {"app": name, **labels}},
                                           "spec": {"containers": [{"name": "c", "image": "registry.invalid/s:1"}]}}}})
    apply_docs(namespace, docs)
    for name in TARGETS:
        kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=60s")


def record_rollouts(namespace: str, started, ready: threading.Event, stop: threading.Event, out: list) -> None:
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    apps = client.AppsV1Api()
    rv = apps.list_namespaced_deployment(namespace).metadata.resource_version
    ready.set()  # events after rv are all delivered, in order
    w = watch.Watch()
    for event in w.stream(apps.list_namespaced_deployment, namespace, resource_version=rv, timeout_seconds=60,
                          _request_timeout=70):
        obj = client.ApiClient().sanitize_for_serialization(event["object"])
        obj["kind"] = "Deployment"
        out.append((int(obj["metadata"]["resourceVersion"]), obj["metadata"]["name"], started(obj),
                    rollout_status(obj).done))
        if stop.is_set():
            w.stop()


def intervals(events: list) -> dict[str, tuple[int, int]]:
    spans: dict[str, list[int]] = {}
    for rv, name, is_started, done in sorted(events):
        if is_started and name not in spans:
            spans[name] = [rv, 0]
        elif name in spans and done and not spans[name][1]:
            spans[name][1] = rv
    return {n: (s, e) for n, (s, e) in spans.items()}


def run_and_watch(app: str, params: dict, started) -> dict[str, tuple[int, int]]:
    deployments(app)
    cat = f"r{uuid.uuid4().hex[:8]}"
    apply_docs(None, [{"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
                       "metadata": {"name": f"rb-{cat}", "labels": TEST_LABELS},
                       "spec": {"match": {"category": cat}, "steps": [
                           {"name": "one-by-one", "level": 1, "action": "restart-one-by-one",
                            "params": {"role": "scheduler", "modules": ["batch"], **params}}]}}])
    wait_for(lambda: get_json("runbook", f"rb-{cat}").get("status", {}).get("conditions"), what="runbook ready")
    events: list = []
    stop, ready = threading.Event(), threading.Event()
    watcher = threading.Thread(target=record_rollouts, args=(app, started, ready, stop, events), daemon=True)
    watcher.start()
    assert ready.wait(30), "the watch did not start"
    create(app, incident("restarts", category=cat, tenant="*"))
    st = wait_phase(app, "restarts", {"Mitigated", "Failed"}, timeout=120)
    assert st["phase"] == "Mitigated", st["steps"]
    wait_for(lambda: len(intervals(events)) == len(TARGETS) and all(e for _, e in intervals(events).values()),
             timeout=30, what=f"every rollout seen complete: {events}")
    stop.set()
    # One audit record per target, in the order they were restarted.
    audited = [e["target"].split("/")[-1] for e in st["timeline"] if e["event"] == "restart-one-by-one:applied"]
    assert audited == TARGETS
    return intervals(events)


def assert_sequential(spans: dict[str, tuple[int, int]]) -> None:
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    assert [name for name, _ in ordered] == TARGETS
    for (prev, (_, prev_end)), (nxt, (nxt_start, _)) in zip(ordered, ordered[1:]):
        assert nxt_start > prev_end, f"{nxt} started (rv {nxt_start}) before {prev} settled (rv {prev_end})"


def test_restarts_are_one_at_a_time_across_six_deployments(app):
    spans = run_and_watch(app, {"mode": "restart"},
                          lambda d: RESTART_ANNOTATION in (d["spec"]["template"]["metadata"].get("annotations") or {}))
    assert_sequential(spans)


def test_scale_downs_are_one_at_a_time_across_six_deployments(app):
    spans = run_and_watch(app, {"mode": "scale", "replicas": 1}, lambda d: d["spec"]["replicas"] == 1)
    assert_sequential(spans)
    assert all(get_json("deployment", n, "-n", app)["spec"]["replicas"] == 1 for n in TARGETS)
