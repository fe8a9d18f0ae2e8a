"""The local cluster is real: kube-apiserver, controller-manager, scheduler, etcd, with kwok nodes."""

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
