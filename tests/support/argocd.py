"""A real Argo CD (hack/build-tools.sh builds it) as local processes against the local cluster.

Redis, ``argocd-repo-server`` and ``argocd-application-controller`` run out of cluster, the way
Argo CD's developer guide runs them (``ARGOCD_FAKE_IN_CLUSTER``: "in-cluster" is the kubeconfig's
cluster), in a namespace of their own: ``argocd-<worker>``. Session fixture (tests/conftest.py)::

    @pytest.fixture(scope="session")
    def argocd(kube) -> Iterator[ArgoCD]:
        with ArgoCD() as running:
            yield running

and a test::

    argocd.add_repository(repo.url, gitea.user, gitea.token)       # the repo-server clones from Gitea
    app = argocd.create_application(name, repo.url, "apps/shop", namespace)   # automated sync
    argocd.wait(name, lambda app: synced(app, repo.head("main")))

One Argo CD per pytest worker, not one shared behind a lock: each session owns its processes
from start to stop (nothing outlives the session that started it, nothing is stopped under a
session still using it), and a controller only reconciles the Applications of its own namespace,
so two workers' Applications never meet. The price is one more controller's cluster cache, kept
small by ``resource.inclusions`` (the kinds the tests deploy).

When a component cannot start, ``start`` raises with its log tail: tests fail, never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.support.cluster import BIN, CACHE, api, apply_docs, kubectl, wait_established, wait_for
from tests.support.processes import LocalProcesses, free_port

#: Same worker id as tests/conftest.py (not imported from there: it will import this module).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
#: The kinds the controller caches and may sync (the cluster cache watches every kind otherwise).
INCLUSIONS = [{"apiGroups": [""], "kinds": ["ConfigMap", "Service"], "clusters": ["*"]},
              {"apiGroups": ["apps"], "kinds": ["Deployment", "ReplicaSet"], "clusters": ["*"]},
              {"apiGroups": ["networking.k8s.io"], "kinds": ["NetworkPolicy"], "clusters": ["*"]},
              # The sample app's revocable binding (and its Role): the cross-tenant runbook narrows it.
              {"apiGroups": ["rbac.authorization.k8s.io"], "kinds": ["Role", "RoleBinding"], "clusters": ["*"]}]
IN_CLUSTER = "https://kubernetes.default.svc"
T = TypeVar("T")


def version() -> str:
    """The version build-tools.sh built (its stamp file): the CRDs installed are that version's."""
    stamp = BIN / ".argocd.version"
    if not (BIN / "argocd").exists() or not stamp.exists():
        raise RuntimeError(f"Argo CD is not built: {BIN / 'argocd'} is missing (run hack/build-tools.sh)")
    return stamp.read_text().strip()


class ArgoCD(LocalProcesses):
    """Redis + repo-server + application controller for the Applications of ``namespace``."""

    def __init__(self, namespace: str | None = None, directory: Path | None = None, app_resync: int = 5,
                 startup_timeout: float = 60):
        super().__init__(Path(directory or CACHE / f"argocd-{WORKER}"), startup_timeout)
        self.namespace = namespace or f"argocd-{WORKER}"
        #: Seconds between the controller's periodic reconciliations of each Application (default 120 s):
        #: short, so the tests see Argo CD look at an object several times within a test.
        self.app_resync = app_resync
        self.controller_metrics = ""
        self.created: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ArgoCD:
        shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ("redis", "tls", "ssh", "gpg", "tmp"):
            (self.dir / sub).mkdir(parents=True)
        try:
            self._install()
            redis, repo, repo_metrics, metrics = (free_port() for _ in range(4))
            env = {**os.environ, "ARGOCD_FAKE_IN_CLUSTER": "true",
                   # The repo-server runs `argocd` as git's askpass helper, found on PATH: set here, not only
                   # by the Makefile, so a test run straight from pytest clones too.
                   "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ARGOCD_GPG_ENABLED": "false",
                   "ARGOCD_TLS_DATA_PATH": str(self.dir / "tls"), "ARGOCD_SSH_DATA_PATH": str(self.dir / "ssh"),
                   "ARGOCD_GNUPGHOME": str(self.dir / "gpg"), "TMPDIR": str(self.dir / "tmp"),
                   # Its git askpass socket: by default one /tmp path for every repo-server on the machine,
                   # so with two workers' Argo CDs one answered the other's git ("unknown nonce").
                   "ARGOCD_ASK_PASS_SOCK": str(self.dir / "askpass.sock"),
                   # What argocd-cm's timeout.reconciliation sets in a real install, for both: how often the
                   # controller compares each Application with Git, and how long the repo-server keeps a
                   # branch's resolved commit (without it a new commit waits 3 minutes to be seen).
                   "ARGOCD_RECONCILIATION_TIMEOUT": f"{self.app_resync}s"}
            self._spawn("redis", ["redis-server", "--port", str(redis), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(self.dir / "redis")], env)
            self._wait("redis to listen", lambda: _listening(redis), "redis")
            self._spawn("repo-server", [
                str(BIN / "argocd-repo-server"), "--disable-tls", "--redis", f"127.0.0.1:{redis}",
                "--address", "127.0.0.1", "--port", str(repo), "--metrics-address", "127.0.0.1",
                "--metrics-port", str(repo_metrics), "--logformat", "text"], env)
            self._spawn("controller", [
                str(BIN / "argocd-application-controller"), "--namespace", self.namespace,
                "--repo-server", f"127.0.0.1:{repo}", "--repo-server-plaintext", "--redis", f"127.0.0.1:{redis}",
                "--metrics-port", str(metrics), "--app-resync-jitter", "0",
                "--logformat", "text"], env)
            self.controller_metrics = f"http://127.0.0.1:{metrics}/metrics"
            self._wait("the repo-server to serve", lambda: self._ok(
                f"http://127.0.0.1:{repo_metrics}/healthz?full=true"), "repo-server")
            self._wait("the controller to serve", lambda: self._ok(f"http://127.0.0.1:{metrics}/healthz"),
                       "controller")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminates the three processes; the namespace's Applications are deleted first."""
        if self._procs:
            kubectl("delete", "applications", "--all", "-n", self.namespace, "--wait=false", check=False)
        self._stop_processes()

    def __enter__(self) -> ArgoCD:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _install(self) -> None:
        crds = CACHE / "argocd" / version() / "crds"
        files = [str(crds / "application-crd.yaml"), str(crds / "appproject-crd.yaml")]
        # kubectl's default field manager, forced: the whole CRD is this version's, whoever applied it before.
        args = [a for f in files for a in ("-f", f)]
        kubectl("apply", "--server-side", "--force-conflicts", *args)
        wait_established(*files)
        kubectl("create", "namespace", self.namespace, check=False)  # outlives a session: reused
        part_of = {"app.kubernetes.io/part-of": "argocd"}
        apply_docs(self.namespace, [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm", "labels": part_of},
             "data": {"resource.inclusions": yaml.safe_dump(INCLUSIONS)}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-secret", "labels": part_of},
             "type": "Opaque", "stringData": {"server.secretkey": uuid.uuid4().hex}},
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "default"},
             "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                      "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}},
        ], force=True)
        # Applications left by a session that died: their controller is gone, and their names are reused.
        kubectl("delete", "applications", "--all", "-n", self.namespace, "--wait=true", check=False)

    # -- repositories and applications ----------------------------------------------------------
    def add_repository(self, url: str, username: str, password: str) -> None:
        """A repository Secret: the repo-server clones ``url`` with these credentials."""
        apply_docs(self.namespace, [{
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"repo-{uuid.uuid5(uuid.NAMESPACE_URL, url).hex[:12]}",
                         "labels": {"argocd.argoproj.io/secret-type": "repository"}},
            "stringData": {"type": "git", "url": url, "username": username, "password": password}}])

    def application(self, name: str, repo_url: str, path: str, destination: str, *, self_heal: bool = False,
                    ignore_differences: list[dict[str, Any]] | None = None,
                    sync_options: list[str] | None = None) -> dict[str, Any]:
        """An automated Application syncing ``path`` of ``repo_url`` (main) into namespace ``destination``."""
        spec: dict[str, Any] = {
            "project": "default",
            "source": {"repoURL": repo_url, "path": path, "targetRevision": "main"},
            "destination": {"server": IN_CLUSTER, "namespace": destination},
            # retry: a sync that fails (the repo-server busy on a loaded machine) is tried again, as
            # Argo CD users set it; without it an automated sync of a failed revision never retries.
            "syncPolicy": {"automated": {"prune": False, "selfHeal": self_heal},
                           "retry": {"limit": 5, "backoff": {"duration": "1s", "factor": 2, "maxDuration": "10s"}},
                           **({"syncOptions": sync_options} if sync_options else {})}}
        if ignore_differences:
            spec["ignoreDifferences"] = ignore_differences
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": name, "namespace": self.namespace}, "spec": spec}

    def create_application(self, name: str, repo_url: str, path: str, destination: str,
                           **options: Any) -> dict[str, Any]:
        doc = self.application(name, repo_url, path, destination, **options)
        apply_docs(self.namespace, [doc])
        self.created.append(name)
        return doc

    def delete_applications(self) -> None:
        """Delete the Applications made since the last call: the controller compares each with Git every
        ``app_resync`` seconds for as long as it exists (a session's leftovers: about 375 comparisons)."""
        if self.created:
            kubectl("delete", "applications", *self.created, "-n", self.namespace, "--wait=false",
                    "--ignore-not-found", check=False)
            self.created.clear()

    def get(self, name: str) -> dict[str, Any]:
        """The Application, read in-process: ``wait`` polls it every 0.2 s, and a kubectl process for each
        read was about 0.1 s of CPU."""
        from kubernetes import client

        return client.CustomObjectsApi(api().api).get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", self.namespace, "applications", name)

    def wait(self, name: str, probe: Callable[[dict[str, Any]], T], what: str, timeout: float = 60) -> T:
        """Poll the Application until ``probe(app)`` is truthy; the controller's log tail when it is not."""
        try:
            return wait_for(lambda: probe(self.get(name)), timeout=timeout, what=what, interval=0.2)
        except AssertionError as error:
            operation = (self.get(name).get("status") or {}).get("operationState") or {}
            raise AssertionError(f"{error}\nlast operation: {operation.get('phase')}: {operation.get('message')}"
                                 f"\ncontroller log:\n{self.log('controller')}") from None

    def refresh(self, name: str) -> None:
        """What ``argocd app get --refresh`` does: ask the controller to compare with Git now."""
        kubectl("annotate", "application", name, "-n", self.namespace, "argocd.argoproj.io/refresh=normal",
                "--overwrite")

    def pause(self, name: str = "controller") -> None:
        """Freeze a component (SIGSTOP): its state stays as it last wrote it."""
        self._procs[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str = "controller") -> None:
        self._procs[name].send_signal(signal.SIGCONT)

    def metrics(self) -> str:
        """The controller's Prometheus metrics (argocd_app_reconcile, argocd_app_sync_total, ...)."""
        return self._http.get(self.controller_metrics).text

def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- what the tests read from an Application ------------------------------------------------------
def synced(app: dict[str, Any], revision: str) -> dict[str, Any] | None:
    """The status when Argo CD synced ``revision`` by an operation that succeeded, and says Synced."""
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    if op.get("phase") == "Succeeded" and (op.get("syncResult") or {}).get("revision") == revision \
            and (status.get("sync") or {}).get("status") == "Synced" \
            and (status.get("sync") or {}).get("revision") == revision:
        return status
    return None
