"""Merge → Synced through a real Argo CD: the local cluster, a throwaway Gitea, Argo CD, the operator.

    python bench/bench_argocd_sync.py [--plans 12]

One automated Application syncs ``apps/bench`` (a Deployment per plan) of a Gitea repository into a
bench namespace; the operator watches it (RC_PATCHPLAN_POLL=1, RC_PATCHPLAN_SYNC_POLL=1). For each plan, one after another:
PatchPlan → pull request → merged through the Gitea API (t0), then

- Argo CD synced:  the Application first shows the merge commit synced by an operation that
                   succeeded (polled every 0.1 s) — Argo CD's own latency, mostly its polling of Git
                   (ARGOCD_RECONCILIATION_TIMEOUT 5 s here; a Git webhook would cut it);
- plan Synced:     the PatchPlan first shows Synced or Verified (polled every 0.1 s).

Beside them, in the same run, Argo CD's own reconcile time (its ``argocd_app_reconcile`` histogram:
one comparison of the Application with Git and the cluster). The operator's share is
plan Synced − Argo CD synced.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("PYTEST_XDIST_WORKER", "bench")  # Argo CD in argocd-bench, apart from the tests'

from measure import pct, use_cluster  # noqa: E402  (bench/, the script's own directory)
from tests.gitea.conftest import DEPLOYMENT, create_repo, start_gitea, stop_gitea  # noqa: E402
from tests.support.argocd import ArgoCD, synced  # noqa: E402
from tests.support.cluster import CACHE, apply_docs, get_json, kubectl, repository_secret  # noqa: E402

API = "reliability.center/v1alpha1"


def deployment(namespace: str, i: int) -> str:
    return DEPLOYMENT.replace("namespace: shop", f"namespace: {namespace}").replace("name: web", f"name: web-{i}") \
        .replace("{app: web}", f"{{app: web-{i}}}")


def reconcile_histogram(metrics: str) -> tuple[float, float]:
    """(sum, count) of argocd_app_reconcile over every Application (seconds)."""
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith("argocd_app_reconcile_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("argocd_app_reconcile_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def poll(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plans", type=int, default=12)
    args = parser.parse_args()
    use_cluster()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    run = uuid.uuid4().hex[:6]
    namespace = f"bench-argo-{run}"
    kubectl("create", "namespace", namespace)
    atexit.register(lambda: kubectl("delete", "namespace", namespace, "--wait=false", check=False))
    gitea_dir = Path(tempfile.mkdtemp(prefix="rc-bench-gitea."))
    gitea = start_gitea(gitea_dir)
    atexit.register(stop_gitea, gitea_dir)
    argocd = ArgoCD().start()
    atexit.register(argocd.stop)

    repo = create_repo(gitea, {f"apps/bench/web-{i}.yaml": deployment(namespace, i) for i in range(args.plans)})
    argocd.add_repository(repo.url, gitea.user, gitea.token)
    app = f"bench-{run}"
    argocd.create_application(app, repo.url, "apps/bench", namespace)
    poll(lambda: synced(argocd.get(app), repo.head("main")), 120, "Argo CD to sync the base commit")
    apply_docs(namespace, [repository_secret("creds", repo.url, username=gitea.user, token=gitea.token)])

    log = open(CACHE / "operator-bench-argocd.log", "wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "reliability_center.operator"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "RC_NAMESPACES": namespace,
                                     "RC_METRICS_PORT": "0", "RC_PATCHPLAN_POLL": "1", "RC_PATCHPLAN_SYNC_POLL": "1",
                                     "RC_GITOPS_ALLOW": "apps/bench/**",
                                     "RC_ARGOCD_NAMESPACE": argocd.namespace})
    # Whatever happens below, the operator does not outlive the bench.
    atexit.register(lambda: operator.poll() is None and os.killpg(operator.pid, signal.SIGTERM))

    def phase(name: str) -> dict:
        return get_json("patchplan", name, "-n", namespace).get("status") or {}

    reconcile_before = reconcile_histogram(argocd.metrics())
    argo_times, plan_times = [], []
    for i in range(args.plans):
        name = f"scale-{i}"
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
            "apiVersion": API, "kind": "PatchPlan", "metadata": {"name": name},
            "spec": {"repository": {"url": repo.url, "provider": "gitea", "credentialsSecret": "creds"},
                     "title": f"web-{i} to 4", "argoApplication": f"{argocd.namespace}/{app}",
                     "changes": [{"path": f"apps/bench/web-{i}.yaml", "operation": "setValue",
                                  "yamlPath": "spec.replicas", "value": 4}]}}))
        number = poll(lambda: (s := phase(name)).get("phase") == "Proposed" and s["pullRequest"]["number"], 120,
                      f"{name} to be Proposed")
        repo.merge(number)
        t0 = time.perf_counter()
        merge_commit = repo.head("main")
        poll(lambda: synced(argocd.get(app), merge_commit), 120, f"Argo CD to sync {name}")
        argo_times.append(time.perf_counter() - t0)
        poll(lambda: phase(name).get("phase") in ("Synced", "Verified"), 120, f"{name} to be Synced")
        plan_times.append(time.perf_counter() - t0)
        print(f"  {name}: Argo CD synced {argo_times[-1]:.2f} s, plan Synced {plan_times[-1]:.2f} s", flush=True)
    total, count = (a - b for a, b in zip(reconcile_histogram(argocd.metrics()), reconcile_before))

    print(f"\nArgo CD {argocd_version()}, {args.plans} plans, one at a time (s)\n")
    print(f"{'measure':40} {'p50':>7} {'p90':>7} {'max':>7}")
    for label, values in (("merge → Argo CD synced", argo_times), ("merge → PatchPlan Synced", plan_times),
                          ("operator's share (Synced − Argo synced)",
                           [p - a for p, a in zip(plan_times, argo_times)])):
        print(f"{label:40} {pct(values, .5):7.2f} {pct(values, .9):7.2f} {max(values):7.2f}")
    mean_reconcile = total / count if count else float("nan")
    print(f"\nArgo CD's own reconcile (argocd_app_reconcile): {count:.0f} in the run, mean {mean_reconcile * 1000:.0f} ms")
    print(f"ratio merge → Synced / merge → Argo CD synced (p50): {pct(plan_times, .5) / pct(argo_times, .5):.2f}x")


def argocd_version() -> str:
    return (CACHE / "bin" / ".argocd.version").read_text().strip()


if __name__ == "__main__":
    main()
