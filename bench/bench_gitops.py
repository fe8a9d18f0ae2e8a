"""GitOps benchmark against a real Gitea: PatchPlan → pull request open, merge → merged detected.

    python bench/bench_gitops.py [--plans 30]

Starts a throwaway Gitea with hack/gitea.sh (or uses GITEA_URL/GITEA_USER/GITEA_TOKEN
when set), and measures in the same run the baselines the numbers are compared with:

- raw push:      ``git push`` of a one-file commit on a new branch from a warm clone
- raw create PR: one ``POST /pulls`` for an already pushed branch (httpx, no retries)
- raw get PR:    one ``GET /pulls/{n}``

and then, through ``gitops.reconcile.step`` exactly as the operator runs it each tick:

- PR open:       Pending → Proposed (fetch, edits, guards, commit, push, adopt-or-create PR), warm cache
- merge detect:  after the merge on Gitea, one step → Merged (what a poll costs)

Without a forge webhook the operator adds up to one poll interval (RC_PATCHPLAN_POLL, default 30 s) to
merge detection; that wait is configuration, not work, and is reported separately (a webhook removes it:
bench/bench_webhook.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from reliability_center.api.patchplan import PatchPlan  # noqa: E402
from reliability_center.gitops import reconcile as rc  # noqa: E402
from reliability_center.gitops.forges import ForgeOptions, new_forge  # noqa: E402
from reliability_center.gitops.paths import PathPolicy  # noqa: E402
from reliability_center.gitops.workspace import Credentials, Workspace  # noqa: E402
from tests.gitea.conftest import Gitea, _git, create_repo, start_gitea, stop_gitea  # noqa: E402
from measure import pct  # noqa: E402  (bench/, the script's own directory)


def plan_for(repo_url: str, i: int) -> PatchPlan:
    return PatchPlan.model_validate({
        "metadata": {"name": f"bench-{i}", "namespace": "bench", "uid": uuid.uuid4().hex, "generation": 1,
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"repository": {"url": repo_url, "provider": "gitea"}, "title": f"bench {i}",
                 "changes": [{"path": f"apps/bench/plan-{i}.yaml", "operation": "createFile",
                              "content": f"plan: {i}\n"}]},
    })


def step(plan: PatchPlan, creds: Credentials, cache: Path):
    forge = new_forge(plan.spec.repository.url, "gitea", creds, ForgeOptions(cache_dir=str(cache)))
    try:
        new = rc.step(plan, rc.Runtime(forge=forge, workspace=Workspace(plan.spec.repository.url, cache, creds,
                                                                      token_user="oauth2"),
                                       policy=PathPolicy(allow=("apps/bench/**",))))
    finally:
        forge.close()
    if new is not None:
        plan.status = new
    return new


def merge(gitea: Gitea, repo, number: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        r = gitea.api("POST", f"{repo.path}/pulls/{number}/merge", json={"Do": "merge"})
        if r.status_code == 200:
            return
        if time.monotonic() > deadline or r.status_code not in (405, 409):
            raise RuntimeError(f"merge #{number}: {r.status_code} {r.text}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plans", type=int, default=30)
    args = parser.parse_args()

    own = None
    if os.environ.get("GITEA_URL"):
        gitea = Gitea(os.environ["GITEA_URL"], os.environ["GITEA_USER"], os.environ["GITEA_TOKEN"], Path("."))
    else:
        own = Path(tempfile.mkdtemp(prefix="rc-bench-gitea."))
        gitea = start_gitea(own)
    try:
        run(gitea, args.plans)
    finally:
        if own:
            stop_gitea(own)


def run(gitea: Gitea, n: int) -> None:
    repo = create_repo(gitea)
    creds = Credentials(username=gitea.user, token=gitea.token)
    cache = Path(tempfile.mkdtemp(prefix="rc-bench-cache."))

    # -------- the operator's path, cold clone once
    cold_plan = plan_for(repo.url, -1)
    t0 = time.perf_counter()
    assert step(cold_plan, creds, cache).phase == "Proposed"
    cold = time.perf_counter() - t0
    merge(gitea, repo, cold_plan.status.pull_request.number)
    step(cold_plan, creds, cache)

    # -------- interleaved, so that baseline and plan see the same repository state:
    # raw push + raw create PR + raw get PR, then a PatchPlan opened, merged, detected.
    clone = tempfile.mkdtemp(prefix="rc-bench-clone.")
    _git(clone, "clone", "-q", gitea.auth_url(repo.name), ".")
    raw_push, raw_create, raw_get, open_times, detect_times = [], [], [], [], []
    with httpx.Client(base_url=f"{gitea.url}/api/v1", headers={"Authorization": f"token {gitea.token}"},
                      timeout=30) as api:
        for i in range(n):
            branch = f"raw/{i}"
            _git(clone, "fetch", "-q", "origin")
            _git(clone, "checkout", "-q", "-B", branch, "origin/main")
            Path(clone, f"raw-{i}.txt").write_text(f"{i}\n")
            _git(clone, "add", ".")
            _git(clone, "commit", "-q", "-m", f"raw {i}")
            t0 = time.perf_counter()
            _git(clone, "push", "-q", "origin", branch)
            raw_push.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = api.post(f"{repo.path}/pulls", json={"head": branch, "base": "main", "title": f"raw {i}"})
            raw_create.append(time.perf_counter() - t0)
            r.raise_for_status()
            number = r.json()["number"]
            t0 = time.perf_counter()
            api.get(f"{repo.path}/pulls/{number}").raise_for_status()
            raw_get.append(time.perf_counter() - t0)
            api.patch(f"{repo.path}/pulls/{number}", json={"state": "closed"}).raise_for_status()

            plan = plan_for(repo.url, i)
            t0 = time.perf_counter()
            new = step(plan, creds, cache)
            open_times.append(time.perf_counter() - t0)
            assert new.phase == "Proposed", new.conditions
            merge(gitea, repo, new.pull_request.number)
            t0 = time.perf_counter()
            merged = step(plan, creds, cache)
            detect_times.append(time.perf_counter() - t0)
            assert merged.phase == "Merged", merged.conditions

    poll = float(os.environ.get("RC_PATCHPLAN_POLL", "30"))
    rows = [
        ("raw git push (baseline)", raw_push),
        ("raw POST /pulls (baseline)", raw_create),
        ("raw GET /pulls/{n} (baseline)", raw_get),
        ("PatchPlan → PR open (warm)", open_times),
        ("merge → Merged detected (1 poll)", detect_times),
    ]
    print(f"\nGitea {gitea.url}, {n} samples each (ms)\n")
    print(f"{'measure':36} {'p50':>8} {'p99':>8} {'mean':>8}")
    for name, values in rows:
        print(f"{name:36} {pct(values, .5) * 1000:8.1f} {pct(values, .99) * 1000:8.1f} "
              f"{statistics.mean(values) * 1000:8.1f}")
    print(f"{'PatchPlan → PR open (cold clone)':36} {cold * 1000:8.1f}")
    base_open = pct(raw_push, .5) + pct(raw_create, .5)
    print("\nratios (p50)")
    print(f"  PR open / (raw push + raw create PR) = {pct(open_times, .5) / base_open:5.2f}x"
          f"   (our own work: {(pct(open_times, .5) - base_open) * 1000:.1f} ms)")
    print(f"  merge detection / raw GET PR        = {pct(detect_times, .5) / pct(raw_get, .5):5.2f}x")
    print(f"  operator merge → Merged latency     ≤ poll interval {poll:.1f} s + "
          f"{pct(detect_times, .99) * 1000:.0f} ms (p99 of one poll)")


if __name__ == "__main__":
    main()
