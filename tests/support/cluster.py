"""Helpers for tests against the real local cluster: kubectl, apply, poll-with-deadline."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("RC_CACHE", pathlib.Path.home() / ".cache" / "reliability-center"))
BIN = CACHE / "bin"
KUBECTL = str(BIN / "kubectl")

T = TypeVar("T")

#: Labels of cluster-scoped objects (Runbooks) a test session makes; that session deletes them
#: at its end — only its own, as other sessions may share the cluster.
SESSION = "s" + uuid.uuid4().hex[:9]  # a letter first: kubectl reads "93220127e2" as a number
TEST_LABELS = {"reliability.center/test": SESSION}


def kubectl(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


# The helpers below talk to the apiserver in-process for what tests do most (get, list, server-side
# apply, create, rollout status): a kubectl process costs ~0.1 s of CPU per call, and with thousands of
# polls that was most of the suite's time on a 2-CPU machine. Anything else still goes through kubectl.


@functools.cache
def api() -> Any:
    """This test process's apiserver client (the operator's own Kube, over KUBECONFIG)."""
    from reliability_center.gateway import Kube

    return Kube()


@functools.cache
def _dynamic() -> Any:
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(api().api)


@functools.cache
def _default_namespace() -> str:
    from reliability_center.gateway.kube import kubeconfig_namespace

    return kubeconfig_namespace() or "default"


def apply_docs(namespace: str | None, docs: list[dict[str, Any]], server_side: bool = True,
               force: bool = False) -> None:
    """``force``: take the fields whoever applied them last (the seed runbooks: the demo applies them too,
    under kubectl's manager, and the cluster outlives runs of different versions of the repo).
    Server-side applies go over REST under the same field manager kubectl was given."""
    if not server_side:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        kubectl(*args, input=yaml.safe_dump_all(docs))
        return
    from kubernetes.dynamic.exceptions import DynamicApiError

    for doc in docs:
        resource = _dynamic().resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        ns = (doc["metadata"].get("namespace") or namespace or _default_namespace()) if resource.namespaced else None
        try:
            _dynamic().server_side_apply(resource, body=doc, namespace=ns, field_manager="test-setup",
                                         force_conflicts=force or None)
        except DynamicApiError as exc:
            raise AssertionError(f"apply {doc['kind']} {ns}/{doc['metadata']['name']} failed: {exc.summary()}") from None


def runbook_doc(category: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A test's Runbook ``rb-<category>``, matching incidents of ``category``; labelled so that its session
    deletes it (Runbooks are cluster-scoped)."""
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
            "metadata": {"name": f"rb-{category}", "labels": TEST_LABELS},
            "spec": {"match": {"category": category}, **spec}}


def apply_runbook(category: str, spec: dict[str, Any]) -> None:
    apply_docs(None, [runbook_doc(category, spec)])


def create_object(namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """POST one object of a kind the operator knows (Incident, ConfigMap...)."""
    from reliability_center.gateway.kube import KINDS

    ns = (namespace or _default_namespace()) if KINDS[body["kind"]].namespaced else None
    meta = {**body["metadata"], **({"namespace": ns} if ns else {})}
    return api().create({**body, "metadata": meta}, manager="test-setup")


def load_yaml(path: str | pathlib.Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(pathlib.Path(ROOT, path).read_text()) if d]


def get_json(*args: str) -> dict[str, Any]:
    """``kubectl get ARGS -o json``: in-process for the common shapes (resource[,resource] [name]
    [-n ns] [-l selector] [-A] of the kinds the operator knows), through kubectl otherwise."""
    fast = _rest_get(args)
    return fast() if fast is not None else json.loads(kubectl("get", *args, "-o", "json").stdout)


def _rest_get(args: tuple[str, ...]) -> Callable[[], dict[str, Any]] | None:
    from reliability_center.gateway import Ref
    from reliability_center.gateway.kube import KINDS, describe

    names = {n: k for k in KINDS.values() for n in (k.plural, k.kind.lower())}
    words, positional, namespace, selector, everywhere = list(args), [], None, None, False
    while words:
        word = words.pop(0)
        if word in ("-n", "--namespace") and words:
            namespace = words.pop(0)
        elif word in ("-l", "--selector") and words:
            selector = words.pop(0)
        elif word in ("-A", "--all-namespaces"):
            everywhere = True
        elif word.startswith("-"):
            return None  # --field-selector, --show-managed-fields...: kubectl's
        else:
            positional.append(word)
    if not 1 <= len(positional) <= 2:
        return None
    kinds = [names.get(r) for r in positional[0].split(",")]
    if None in kinds or (len(positional) == 2 and (len(kinds) > 1 or selector or everywhere)):
        return None
    namespace = namespace or _default_namespace()

    def as_kubectl_prints(obj: dict[str, Any]) -> dict[str, Any]:
        obj.get("metadata", {}).pop("managedFields", None)  # kubectl -o json leaves them out
        return obj

    def read() -> dict[str, Any]:
        try:
            if len(positional) == 2:
                kind = kinds[0]
                obj = api().get(Ref(kind.kind, namespace if kind.namespaced else None, positional[1]))
                if obj is None:
                    raise AssertionError(f"kubectl get {' '.join(args)} failed: {kind.plural} "
                                         f"{positional[1]!r} not found (NotFound)")
                return as_kubectl_prints(obj)
            items = [as_kubectl_prints(item) for kind in kinds
                     for item in api().list(kind.kind, None if everywhere or not kind.namespaced else namespace,
                                            selector)]
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"kubectl get {' '.join(args)} failed: {describe(exc)}") from None
        return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}

    return read


def exists(kind: str, namespace: str | None, name: str) -> bool:
    """Is the object there (a kind the operator knows)? In-process: tests poll it."""
    from reliability_center.gateway import Ref

    return api().get(Ref(kind, namespace, name)) is not None


def rollout_status(namespace: str, kind: str, name: str, timeout: float = 60) -> None:
    """``kubectl rollout status`` for a Deployment or StatefulSet, by kubectl's own rules, in-process."""
    from reliability_center.gateway import Ref

    def done() -> bool:
        obj = api().get(Ref(kind, namespace, name))
        spec, st = (obj or {}).get("spec") or {}, (obj or {}).get("status") or {}
        if not obj or (st.get("observedGeneration") or 0) < obj["metadata"].get("generation", 0):
            return False
        want = spec.get("replicas", 1)
        if kind == "Deployment":
            for c in st.get("conditions") or []:
                if c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                    raise AssertionError(f"deployment {name!r} exceeded its progress deadline")
            return (st.get("updatedReplicas") or 0) >= want and (st.get("replicas") or 0) <= (
                st.get("updatedReplicas") or 0) and (st.get("availableReplicas") or 0) >= (st.get("updatedReplicas") or 0)
        partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition") or 0
        if (st.get("readyReplicas") or 0) < want:
            return False
        if partition:
            return (st.get("updatedReplicas") or 0) >= want - partition
        return st.get("updateRevision") == st.get("currentRevision")

    wait_for(done, timeout=timeout, interval=0.1, what=f"rollout of {kind} {namespace}/{name}")


def wait_established(*paths: str | pathlib.Path, kubeconfig: str | None = None, timeout: float = 60) -> None:
    """Wait until the CRDs in these files (or directories of them) are Established. ``kubectl wait
    --for=condition=Established`` fails at once, instead of waiting, when it reads a CRD whose status has no
    conditions yet ("accessor error: <nil>"), which is what a brand-new cluster shows right after the create."""
    files = [f for p in map(pathlib.Path, paths) for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    names = [d["metadata"]["name"] for f in files for d in load_yaml(f) if d.get("kind") == "CustomResourceDefinition"]
    config = ["--kubeconfig", kubeconfig] if kubeconfig else []

    def established() -> bool:
        shown = kubectl(*config, "get", "crd", *names, "-o", "json", check=False).stdout
        items = (json.loads(shown) if shown else {}).get("items") or ([json.loads(shown)] if shown else [])
        ready = {i["metadata"]["name"] for i in items
                 if any(c["type"] == "Established" and c["status"] == "True"
                        for c in (i.get("status") or {}).get("conditions") or [])}
        return ready == set(names)

    wait_for(established, timeout=timeout, what=f"CRDs {', '.join(names)} to be Established", interval=0.2)


def wait_for(probe: Callable[[], T | None], timeout: float = 30, what: str = "condition", interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy, or fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def repository_secret(name: str, url: str, namespaces: str | None = None, **credentials: str) -> dict[str, Any]:
    """A credentials Secret that opts in to be sent to ``url`` (gitops/trust.py), for PatchPlans."""
    data = {"url": url, **({"namespaces": namespaces} if namespaces else {}), **credentials}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": {"reliability.center/secret-type": "repository"}},
            "stringData": data}


def slow_schedulers(namespace: str, names: list[str], module: str, min_ready: int, history: int = 10) -> None:
    """The sample app plus scheduler Deployments whose rollouts take ``min_ready`` seconds; returns when available.

    Made without the delay, then given it: ``minReadySeconds`` holds the first rollout too, which no test
    is about (it cost the test command 20 s in test_plan_review alone)."""
    from reliability_center.gateway import Ref

    apply_docs(namespace, load_yaml("examples/protected-app/app.yaml"))
    labels = {"reliability.center/role": "scheduler", "reliability.center/module": module}
    apply_docs(namespace, [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": d, "labels": labels},
                            "spec": {"replicas": 1, "revisionHistoryLimit": history,
                                     "selector": {"matchLabels": {"app": d}},
                                     "template": {"metadata": {"labels": {"app": d, **labels}},
                                                  "spec": {"containers": [{"name": "c",
                                                                           "image": "registry.invalid/s:1"}]}}}}
                           for d in names])
    for d in names:
        rollout_status(namespace, "Deployment", d)
        if min_ready:  # a patch, not in the apply: a later apply of the Deployment leaves it
            api().merge_patch(Ref("Deployment", namespace, d), {"spec": {"minReadySeconds": min_ready}},
                              manager="test-setup")
            rollout_status(namespace, "Deployment", d)  # the controller has seen it: the next rollout is slow


#: Set by hack/test.sh for its second session, the tests marked ``exclusive``: that session's cluster
#: ($RC_CLUSTER, made brand-new for it) is theirs alone.
OWN_CLUSTER = os.environ.get("RC_OWN_CLUSTER") == "1"


@contextlib.contextmanager
def cluster_of_its_own(name: str) -> Iterator[str]:
    """A brand-new local cluster for one test, without nodes (hack/cluster.sh with its own RC_CLUSTER);
    yields its kubeconfig and deletes it after.

    In hack/test.sh's session of ``exclusive`` tests (``OWN_CLUSTER``), that session's cluster is taken
    instead: brand-new, with no other session's operator, and each such test leaves nothing the next one
    reads (namespaces of their own, no admission policies; the test that installs them runs last). A
    cluster's start is tens of seconds of the apiserver's CPU, so the test command makes one, not three."""
    env = {**os.environ, **({} if OWN_CLUSTER else {"RC_CLUSTER": name, "RC_NODES": "0"}), "RC_NO_BUILD": "1"}
    up = subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], env=env, capture_output=True, text=True,
                        timeout=600)
    assert up.returncode == 0, f"the cluster of its own did not start:\n{up.stderr[-3000:]}"
    try:
        yield up.stdout.strip().splitlines()[-1]
    finally:
        if not OWN_CLUSTER:
            subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "delete"], env=env, capture_output=True,
                           timeout=300, check=False)
