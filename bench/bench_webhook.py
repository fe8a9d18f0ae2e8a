"""Merge in the forge → PatchPlan Merged: a forge webhook against the poll it replaces.

    python bench/bench_webhook.py [--merges 10]

The local cluster, a throwaway Gitea (hack/gitea.sh) and the operator, twice in one run, each operator
in a namespace of its own:

- webhook: the operator serves the forge webhooks (RC_FORGE_HOOKS_PORT); the repository has Gitea's
  webhook with the secret; the pull-request poll is an hour (RC_PATCHPLAN_POLL=3600), so only the
  webhook can move a plan within the run;
- poll:    no webhook, the pull-request poll at 3 s (the default before the webhooks; the default now is
  30 s, which would add up to 30 s).

For each of ``--merges`` plans, one after another: PatchPlan → pull request (Proposed) → a wait of
0–3 s (so the merge falls anywhere in the poll's cycle) → merged through the Gitea API; t0 when Gitea
answers the merge, then the plan is read every 20 ms until Merged. For the webhook, the operator's log
splits the time: Gitea's delivery (merge → webhook received) and the operator's pass (→ Merged seen).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from measure import pct, use_cluster  # noqa: E402  (bench/, the script's own directory)
from reliability_center.gateway import Ref  # noqa: E402
from tests.gitea.conftest import DEPLOYMENT, Gitea, create_repo, start_gitea, stop_gitea  # noqa: E402
from tests.support.cluster import CACHE, api, apply_docs, kubectl, repository_secret  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

API = "reliability.center/v1alpha1"
SECRET = uuid.uuid4().hex


def poll(probe, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def run(mode: str, gitea: Gitea, merges: int, secret_file: Path) -> list[float]:
    namespace = f"bench-hook-{mode}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    atexit.register(lambda: kubectl("delete", "namespace", namespace, "--wait=false", check=False))
    repo = create_repo(gitea, {f"apps/bench/web-{i}.yaml": DEPLOYMENT.replace("name: web", f"name: web-{i}")
                               for i in range(merges)})
    apply_docs(namespace, [repository_secret("creds", repo.url, username=gitea.user, token=gitea.token)])
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RC_NAMESPACES": namespace, "RC_METRICS_PORT": "0",
           "RC_GITOPS_ALLOW": "apps/bench/**"}
    if mode == "webhook":
        env.update(RC_PATCHPLAN_POLL="3600", RC_PATCHPLAN_POLL_MAX="3600", RC_FORGE_HOOKS_PORT=str(port),
                   RC_FORGE_HOOKS_SECRET_FILE=str(secret_file), RC_FORGE_HOOKS_ALLOW_PLAIN_HTTP="true")
    else:
        env.update(RC_PATCHPLAN_POLL="3")
    log = open(CACHE / f"operator-bench-webhook-{mode}.log", "wb")
    operator = subprocess.Popen([sys.executable, "-m", "reliability_center.operator"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        if mode == "webhook":
            poll(lambda: _serving(f"http://127.0.0.1:{port}/healthz"), 60, "the forge webhook receiver")
            hook = gitea.api("POST", f"{repo.path}/hooks", json={
                "type": "gitea", "active": True, "events": ["pull_request"], "branch_filter": "*",
                "config": {"url": f"http://127.0.0.1:{port}/forge/gitea", "content_type": "json",
                           "secret": SECRET}})
            assert hook.status_code == 201, hook.text
        times = []
        merged_at: dict[int, tuple[float, float]] = {}  # PR number → (merge returned, Merged seen), wall clock
        for i in range(merges):
            name = f"scale-{i}"
            kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
                "apiVersion": API, "kind": "PatchPlan", "metadata": {"name": name},
                "spec": {"repository": {"url": repo.url, "provider": "gitea", "credentialsSecret": "creds"},
                         "title": f"web-{i} to 4",
                         "changes": [{"path": f"apps/bench/web-{i}.yaml", "operation": "setValue",
                                      "yamlPath": "spec.replicas", "value": 4}]}}))

            def status(plan: str = name) -> dict:
                return (api().get(Ref("PatchPlan", namespace, plan)) or {}).get("status") or {}

            number = poll(lambda: (s := status()).get("phase") == "Proposed" and s["pullRequest"]["number"], 120,
                          f"{name} to be Proposed")
            time.sleep(random.uniform(0, 3))  # a reviewer merges at any moment, not just after a poll
            merge(repo, number)
            t0, wall = time.perf_counter(), time.time()
            poll(lambda: status().get("phase") == "Merged", 120, f"{name} to be Merged")
            times.append(time.perf_counter() - t0)
            merged_at[number] = (wall, wall + times[-1])
            print(f"  {mode} {name}: merge → Merged {times[-1]:.2f} s", flush=True)
        if mode == "webhook":
            split(CACHE / f"operator-bench-webhook-{mode}.log", merged_at)
        return times
    finally:
        os.killpg(operator.pid, signal.SIGTERM)
        try:
            operator.wait(15)
        except subprocess.TimeoutExpired:  # as tests/conftest.stop_operator: a stop that hangs is killed
            os.killpg(operator.pid, signal.SIGKILL)
            operator.wait()


def merge(repo, number: int) -> None:
    """Merge through the Gitea API; returns the moment Gitea answers the merge that succeeded (the merge is
    committed by then), without the read of the pull request that tests' Repo.merge adds."""
    def attempt() -> bool:
        r = repo.gitea.api("POST", f"{repo.path}/pulls/{number}/merge", json={"Do": "merge"})
        if r.status_code == 200:
            return True
        # 405 "try again later" while Gitea re-checks mergeability, 409 when the base just moved: again.
        assert r.status_code in (405, 409), r.text
        return False

    poll(attempt, 60, f"pull request #{number} to merge", interval=0.05)


def split(log: Path, merged_at: dict[int, tuple[float, float]]) -> None:
    """Where the time goes: merge → the operator received Gitea's webhook (Gitea's delivery), and
    webhook → Merged seen (the operator's pass: the forge read and the status write), from the
    operator's own log line for each delivery ("forge webhook: gitea <repo>#<n> closed woke ...")."""
    received: dict[int, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        words = record.get("message", "").split()
        if words[:3] == ["forge", "webhook:", "gitea"] and len(words) > 4 and words[4] == "closed":
            number = int(words[3].rsplit("#", 1)[1])
            stamp = datetime.fromisoformat(record["timestamp"]).timestamp()
            received.setdefault(number, stamp)
    delivery = [received[n] - merged for n, (merged, _) in merged_at.items() if n in received]
    operator = [seen - received[n] for n, (_, seen) in merged_at.items() if n in received]
    if delivery:
        print(f"  where it goes (p50): Gitea's delivery {pct(delivery, .5):.2f} s, the operator's pass "
              f"{pct(operator, .5):.2f} s ({len(delivery)} deliveries)", flush=True)
        SPLITS.extend(zip(delivery, operator))


SPLITS: list[tuple[float, float]] = []


def _serving(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--merges", type=int, default=10)
    args = parser.parse_args()
    use_cluster()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    gitea_dir = Path(tempfile.mkdtemp(prefix="rc-bench-gitea."))
    gitea = start_gitea(gitea_dir)
    atexit.register(stop_gitea, gitea_dir)
    secret_file = gitea_dir / "forge-hooks-secret"
    secret_file.write_text(SECRET)

    results = {mode: run(mode, gitea, args.merges, secret_file) for mode in ("webhook", "poll")}
    print(f"\nmerge in Gitea → PatchPlan Merged, {args.merges} merges each, one at a time (s)\n")
    print(f"{'measure':36} {'p50':>7} {'p90':>7} {'max':>7}")
    labels = {"webhook": "webhook (poll 3600 s)", "poll": "poll only (RC_PATCHPLAN_POLL=3)"}
    for mode, values in results.items():
        print(f"{labels[mode]:36} {pct(values, .5):7.2f} {pct(values, .9):7.2f} {max(values):7.2f}")
    if SPLITS:
        delivery, operator = zip(*SPLITS)
        print(f"{'webhook, merge → received (Gitea)':36} {pct(list(delivery), .5):7.2f} "
              f"{pct(list(delivery), .9):7.2f} {max(delivery):7.2f}")
        print(f"{'webhook, received → Merged (operator)':36} {pct(list(operator), .5):7.2f} "
              f"{pct(list(operator), .9):7.2f} {max(operator):7.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print(f"\nratio webhook / 3 s poll (p50): {pct(results['webhook'], .5) / pct(results['poll'], .5):.2f}x; "
          f"target: webhook p50 ≤ 1 s")


if __name__ == "__main__":
    main()
