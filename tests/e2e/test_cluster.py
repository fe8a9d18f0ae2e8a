"""The local cluster is real: kube-apiserver, controller-manager, scheduler, etcd, with kwok nodes."""

import pytest

from tests.support.cluster import apply_docs, get_json, kubectl, wait_for


def test_a_deployment_rolls_out_to_available_on_kwok_nodes(namespace):
    apply_docs(namespace, [{
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}}},
    }])
    kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
    deployment = get_json("deployment", "web", "-n", namespace)
    available = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert available["Available"] == "True"
    assert deployment["status"]["availableReplicas"] == 3
    pods = get_json("pods", "-n", namespace)["items"]
    assert {p["spec"]["nodeName"].startswith("node-") for p in pods} == {True}  # scheduled by kube-scheduler


def test_the_control_plane_is_the_pinned_kubernetes_release(cluster):
    raw = kubectl("get", "--raw", "/version").stdout
    assert '"gitVersion": "v1.37.2"' in raw or '"gitVersion":"v1.37.2"' in raw
    nodes = wait_for(lambda: get_json("nodes")["items"], what="kwok nodes")
    assert all(n["status"]["nodeInfo"]["kubeletVersion"].startswith("kwok") for n in nodes)


def grace_period() -> float:
    """The running controller-manager's --node-monitor-grace-period, read from its command line."""
    import re
    import subprocess

    args = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    line = next(a for a in args.splitlines() if "kube-controller-manager" in a and "--node-monitor-grace-period" in a)
    value = re.search(r"--node-monitor-grace-period=(\d+)(ms|s|m)", line)
    return int(value.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[value.group(2)]


@pytest.mark.session_end
def test_the_nodes_stay_ready_for_the_whole_session_and_at_least_three_grace_periods(node_watch):
    import time

    grace = grace_period()
    # Alone, this test waits out three grace periods; after the suite, the session already lasted longer.
    wait_for(lambda: time.monotonic() - node_watch.started > 3 * grace or node_watch.error,
             timeout=3 * grace + 10, interval=1, what="three grace periods")
    assert node_watch.error is None and node_watch.alive(), node_watch.error
    assert node_watch.not_ready == [], node_watch.not_ready
    for node in get_json("nodes")["items"]:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True" and not node["spec"].get("taints"), node["metadata"]["name"]
    # The node lifecycle controller's own word: no node marked NotReady since the session began.
    marked = [e for e in get_json("events", "-A", "--field-selector", "reason=NodeNotReady")["items"]
              if (e.get("lastTimestamp") or e.get("eventTime") or "") >= node_watch.started_at]
    assert marked == []
