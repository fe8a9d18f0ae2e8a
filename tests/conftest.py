"""Shared fixtures. Cluster tests use the real local cluster (started once per session by
hack/cluster.sh, reused if already up) and each gets its own namespace. When the cluster
cannot start, those tests fail — they are never skipped."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.support.cluster import (CACHE, SESSION, ROOT, api, apply_docs, create_object, kubectl, load_yaml, wait_established,
                                   wait_for)
from tests.support.monitoring import Monitoring
from tests.support.processes import free_port

#: Under pytest-xdist each worker is a session of its own: its own operator, watching its own
#: namespaces (t-<worker>-*), so two workers' operators never act on the same incident.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
NAMESPACE_PREFIX = f"t-{WORKER}-"
OPERATOR_LOG = CACHE / f"operator-test-{WORKER}.log"


#: The session operator serves Prometheus metrics here.
METRICS_PORT = free_port()
#: The session operator's Alertmanager receiver: its port, the bearer token file, the mapping.
INTAKE_PORT = free_port()
INTAKE_URL = f"http://127.0.0.1:{INTAKE_PORT}/alerts"
INTAKE_TOKEN = uuid.uuid4().hex
INTAKE_TOKEN_FILE = CACHE / f"intake-token-{WORKER}"
INTAKE_CONFIG_FILE = CACHE / f"intake-{WORKER}.yaml"
#: The session's Prometheus (tests/support/monitoring.py), which the operator's SLO gate queries.
PROMETHEUS_PORT = free_port()
#: Test runbooks whose incidents come from alerts use categories with this prefix (the allow-list).
ALERT_CATEGORY_PREFIX = "alert-"


#: Files whose tests take 20 s or more (pytest --durations=0), longest first: scheduled first, in this order.
LONG_FILES = [f"tests/{name}.py" for name in (
    "e2e/test_crash", "e2e/test_group_commit", "e2e/test_failover", "e2e/test_argocd_selfheal", "e2e/test_waiting",
    "e2e/test_seed_paths", "e2e/test_holds_scale", "e2e/test_leader_service",
    "e2e/test_patchplan_e2e", "gitea/test_gitea_leaks", "gitea/test_gitea_patchplan", "e2e/test_console",
    "e2e/test_plan_review", "e2e/test_detection", "e2e/test_collisions", "e2e/test_relctl", "e2e/test_actions_more",
    "e2e/test_chart", "e2e/test_shadow_global", "e2e/test_close_loop", "e2e/test_install_manifests", "e2e/test_hostile",
    "e2e/test_intake")]

#: The tests marked ``exclusive`` (a cluster of their own), in the order hack/test.sh's session of them runs
#: them on its one brand-new cluster: the first two need it as it was made (no operator, no admission
#: policy), and the session fixtures of the last one install the policies and the seed Runbooks.
EXCLUSIVE_FILES = [f"tests/e2e/{name}.py" for name in (
    "test_fresh_cluster", "test_hostile_no_admission", "test_apiserver_outage")]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist hands out the files of --dist loadfile by their number of tests unless told not to,
    # which put the long one-test files (test_crash.py, test_waiting.py) last: keep the order below.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)
    # The long files go first, longest first, so the workers finish together instead of one
    # starting a long file when the other is done; tests that judge the whole session (a watch that
    # ran beside every other test) come last.
    rank = {name: i for i, name in enumerate(EXCLUSIVE_FILES + LONG_FILES)}
    items.sort(key=lambda item: (item.get_closest_marker("session_end") is not None,
                                 rank.get(item.nodeid.split("::")[0], len(rank))))


@pytest.fixture(scope="session")
def cluster() -> str:
    """The kubeconfig of the running local cluster."""
    result = subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], capture_output=True, text=True,
                            timeout=3000)
    if result.returncode != 0:
        pytest.fail(f"the local cluster did not start:\n{result.stderr[-4000:]}", pytrace=False)
    kubeconfig = result.stdout.strip().splitlines()[-1]
    os.environ["KUBECONFIG"] = kubeconfig
    return kubeconfig


@pytest.fixture(scope="session")
def node_watch(cluster: str):
    """Started with the cluster, it watches the nodes while every other test runs."""
    from tests.support import nodes

    return nodes.start()


@pytest.fixture(scope="session")
def crds(cluster: str, node_watch) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(ROOT / "crds")
    for extra in sorted((ROOT / "tests" / "e2e" / "fixtures").glob("*-crd.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(extra))
        wait_established(extra)
    # Approvals as the install makes them: the admission policies, the approver role bound to the
    # group the tests impersonate (tests/support/incidents.approve).
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "manifests" / "admission" / "policies.yaml"),
            "-f", str(ROOT / "manifests" / "rbac" / "approval_approver_role.yaml"),
            "-f", str(ROOT / "manifests" / "rbac" / "incident_editor_role.yaml"),
            "-f", str(ROOT / "manifests" / "rbac" / "patchplan_editor_role.yaml"))
    kubectl("create", "clusterrolebinding", "rc-test-approvers", "--clusterrole=reliability-center-approver",
            "--group=rc-test-approvers", check=False)  # exists already when the cluster outlived a run
    sweep_stale_namespaces()


#: Older than any test session runs: a test namespace this old belongs to a session that was killed.
STALE_AFTER = datetime.timedelta(hours=1)


def sweep_stale_namespaces() -> None:
    """Delete the test namespaces (``t-*``, ``solo-*``) that killed sessions left in a reused cluster;
    a session deletes its own, and other sessions' live ones are younger than ``STALE_AFTER``."""
    from reliability_center.gateway import Ref
    from reliability_center.gateway.kube import NotFound

    now = datetime.datetime.now(datetime.timezone.utc)
    for ns in api().list("Namespace"):
        meta = ns["metadata"]
        created = datetime.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
        if meta["name"].startswith(("t-", "solo-")) and not meta.get("deletionTimestamp") \
                and now - created > STALE_AFTER:
            with contextlib.suppress(NotFound):
                api().delete(Ref("Namespace", None, meta["name"]))


@pytest.fixture(scope="session")
def kube(cluster: str, crds: None):
    return api()  # the one client the helpers in tests/support/cluster.py use too


@pytest.fixture
def namespace(cluster: str) -> Iterator[str]:
    name = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:10]}"
    yield from _scratch_namespace(name)


@pytest.fixture
def second_namespace(cluster: str) -> Iterator[str]:
    """Another namespace of this worker's (the session operator serves it), for tests that need two."""
    yield from _scratch_namespace(f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:10]}")


@pytest.fixture
def solo_namespace(kube) -> Iterator[str]:
    """A namespace the session operator ignores: for tests that drive the gateway themselves
    or run operators of their own (crash tests)."""
    yield from _scratch_namespace(f"solo-{uuid.uuid4().hex[:8]}")


def _scratch_namespace(name: str) -> Iterator[str]:
    from reliability_center.gateway import Ref
    from reliability_center.gateway.kube import NotFound

    create_object(None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFound):  # some tests delete it themselves
        api().delete(Ref("Namespace", None, name))  # not waited for: the next test needs no clean slate


@pytest.fixture(scope="session")
def seed_runbooks(crds: None) -> Iterator[None]:
    for path in sorted((ROOT / "runbooks").glob("*.yaml")):
        apply_docs(None, load_yaml(path), force=True)
    yield
    # Runbooks are cluster-scoped: remove the ones tests made, the cluster outlives the run.
    kubectl("delete", "runbooks", "-l", f"reliability.center/test={SESSION}", "--wait=false", check=False)


def start_operator(log_path=OPERATOR_LOG, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RC_METRICS_PORT": "0", **(extra_env or {})}
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "reliability_center.operator"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


class WarmOperators:
    """Operator processes started one after another, each forked from one process that imported the operator
    once (tests/support/warm_operator.py): a kill test's next operator starts without a second of imports."""

    def __init__(self, log_path, extra_env: dict[str, str]):
        env = {**os.environ, "RC_METRICS_PORT": "0", **extra_env}
        with open(log_path, "ab") as log:
            self.zygote = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "warm_operator.py"),
                                            str(log_path)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=log, cwd=ROOT, start_new_session=True)
        self.forked: queue.Queue[int] = queue.Queue()
        self.ended: dict[int, int] = {}
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.zygote.stdout is not None
        for line in self.zygote.stdout:
            word, *rest = line.split()
            if word == b"pid":
                self.forked.put(int(rest[0]))
            elif word == b"exit":
                with self.changed:
                    self.ended[int(rest[0])] = int(rest[1])
                    self.changed.notify_all()

    def start(self) -> Forked:
        assert self.zygote.stdin is not None
        self.zygote.stdin.write(b"go\n")
        self.zygote.stdin.flush()
        return Forked(self.forked.get(timeout=30), self)

    def close(self) -> None:
        stop_operator(self.zygote, signal.SIGKILL)


class Forked:
    """An operator process forked by WarmOperators, read like the subprocess.Popen that stop_operator takes."""

    stdin = None

    def __init__(self, pid: int, parent: WarmOperators):
        self.pid, self.parent = pid, parent

    @property
    def returncode(self) -> int | None:
        return self.parent.ended.get(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        with self.parent.changed:
            if not self.parent.changed.wait_for(lambda: self.pid in self.parent.ended, timeout):
                raise subprocess.TimeoutExpired(f"operator {self.pid}", timeout)
        return self.parent.ended[self.pid]


def stop_operator(proc: subprocess.Popen[bytes] | Forked, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


@pytest.fixture(scope="session")
def operator(kube, seed_runbooks: None) -> Iterator[subprocess.Popen[bytes]]:
    """One operator process for the session, watching every namespace."""
    OPERATOR_LOG.unlink(missing_ok=True)
    # Tests that run operators of their own, or none, use solo-* namespaces (see solo_namespace).
    INTAKE_TOKEN_FILE.write_text(INTAKE_TOKEN + "\n")
    INTAKE_CONFIG_FILE.write_text(
        f"namespaces: ['{NAMESPACE_PREFIX}*']\n"
        f"categories: [perf, cross-tenant, ocr, billing, '{ALERT_CATEGORY_PREFIX}*']\n")
    proc = start_operator(extra_env={"RC_NAMESPACES": f"{NAMESPACE_PREFIX}*", "RC_METRICS_PORT": str(METRICS_PORT),
                                     "RC_PATCHPLAN_POLL": "1", "RC_PATCHPLAN_SYNC_POLL": "1",
                                     "RC_INTAKE_PORT": str(INTAKE_PORT),
                                     "RC_INTAKE_TOKEN_FILE": str(INTAKE_TOKEN_FILE),
                                     "RC_INTAKE_CONFIG": str(INTAKE_CONFIG_FILE),
                                     # The session's Alertmanager posts over plain HTTP on localhost (TLS:
                                     # tests/e2e/test_intake_boundaries.py).
                                     "RC_INTAKE_ALLOW_PLAIN_HTTP": "true",
                                     "RC_PROMETHEUS_URL": f"http://127.0.0.1:{PROMETHEUS_PORT}",
                                     "RC_GATE_INTERVAL": "2",
                                     # The repositories these tests build keep manifests under apps/ (and a.yaml):
                                     # the admin's allow-list; the default (the Runbooks' own paths) is proven by
                                     # tests/e2e/test_patchplan_boundaries.py with an in-process pass.
                                     "RC_GITOPS_ALLOW": "apps/**,a.yaml,incidents/*/*.md,postmortems/*/*.md",
                                     # This worker's Argo CD (tests/support/argocd.py), when a test starts it.
                                     "RC_ARGOCD_NAMESPACE": f"argocd-{WORKER}"})
    wait_for(lambda: all(
        rb.get("status", {}).get("conditions") for rb in kube.list("Runbook")
    ) and kube.list("Runbook"), timeout=60, what="the operator to report on the seed runbooks")
    yield proc
    stop_operator(proc)


@pytest.fixture(scope="session")
def monitoring(operator) -> Iterator[Monitoring]:
    """Real Prometheus + Alertmanager posting to the session operator's intake (tests/support/monitoring.py)."""
    with Monitoring(intake_url=INTAKE_URL, token_file=INTAKE_TOKEN_FILE, prometheus_port=PROMETHEUS_PORT) as running:
        yield running


@pytest.fixture
def app(namespace: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The sample protected app, applied into the test's namespace, its workloads running (kwok's pods).

    Marked ``app_at_rest`` (a module's ``pytestmark``; ``app_at_rest(False)`` on a test takes it back): every
    Deployment at 0 replicas, the same objects but no pods, for tests whose steps write no workload. A running
    app costs the cluster about 500 requests a test (its 15 pods created, bound, made ready and deleted, the
    Deployments' and ReplicaSets' status after each); over a whole run, Deployments, ReplicaSets and Pods made
    40% of its 106,607 apiserver requests.
    A test that did write one (a restart, a pause) would prove less on Deployments with no pods, so its
    incidents' durable audit logs are read after it: a record of a workload fails the test."""
    marker = request.node.get_closest_marker("app_at_rest")
    at_rest = marker is not None and (marker.args or (True,))[0]
    apply_docs(namespace, sample_app(at_rest))
    yield namespace
    if at_rest:
        written = workloads_written(namespace)
        assert not written, \
            f"steps wrote workloads of an app at rest (no pods): mark the test app_at_rest(False): {written}"


def sample_app(at_rest: bool = False) -> list[dict]:
    """The sample app's objects (examples/protected-app/app.yaml); ``at_rest``: every Deployment at 0 replicas."""
    docs = load_yaml("examples/protected-app/app.yaml")
    for doc in docs if at_rest else ():
        if doc.get("kind") == "Deployment":
            doc["spec"]["replicas"] = 0
    return docs


#: What a step writes to when it touches workloads (gateway.kube.Ref's str: Kind/namespace/name).
WORKLOAD_KINDS = ("Deployment/", "StatefulSet/", "HorizontalPodAutoscaler/")


def workloads_written(namespace: str) -> list[str]:
    """The workloads the incidents of ``namespace`` wrote, from their durable audit logs."""
    from reliability_center.gateway.audit import AUDIT_LABEL

    targets = {json.loads(line).get("target", "") for log in api().list("ConfigMap", namespace, AUDIT_LABEL)
               for line in (log.get("data") or {}).values()}
    return sorted(t for t in targets if t.startswith(WORKLOAD_KINDS))


@pytest.fixture(scope="session")
def gitea(tmp_path_factory: pytest.TempPathFactory):
    """A real Gitea for the session (hack/gitea.sh; tests/gitea/conftest.py), one per worker: test modules
    take it as a fixture, never import it."""
    from tests.gitea.conftest import start_gitea, stop_gitea

    directory = tmp_path_factory.mktemp("gitea")
    server = start_gitea(directory)
    yield server
    stop_gitea(directory)


@pytest.fixture(scope="session")
def argocd_server(kube):
    """A real Argo CD for this worker's Applications, in namespace argocd-<worker> (tests/support/argocd.py)."""
    from tests.support.argocd import ArgoCD

    try:
        # Every 3 s: the tests wait for Argo CD to look again (self-heal, a merge synced), and their
        # Applications are deleted after each test, so few are compared at once.
        running = ArgoCD(app_resync=3).start()
    except Exception as error:  # built but not starting, or not built: a failure, never a skip
        pytest.fail(f"Argo CD did not start: {error}", pytrace=False)
    yield running
    running.stop()


@pytest.fixture
def argocd(argocd_server):
    """The session's Argo CD; the Applications a test made are deleted after it (not compared with Git
    every 5 s for the rest of the session)."""
    yield argocd_server
    argocd_server.delete_applications()
