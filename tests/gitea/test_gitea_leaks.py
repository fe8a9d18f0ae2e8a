"""Hundreds of PatchPlans through one process leave nothing behind.

GitPython is known to leak ``git cat-file`` helpers in long-running daemons;
this code runs git as short-lived subprocesses and closes every HTTP client.
What is measured, before and after, is what a leak would change:

- the process table: no git process (child, grandchild re-parented to init, or
  helper) that names this test's repositories is left running;
- this process's file descriptors, threads and resident memory;
- the git cache on disk, and the branches left on the forge (ours are deleted
  once their pull request is merged or closed).

100 plans go through the plain git forge (real git against a local bare
repository: the forge the operator falls back to), four threads at once, as the
operator's workers do; 8 more go through the real Gitea, for its HTTP client.
Each plan is proposed, then merged (one in four) or closed by a human, and the
outcome detected.

Why 100 (it was 200, 57 s of the test command): a leak shows as growth with
the number of plans. A process, thread or branch left per plan (GitPython's
``cat-file`` helpers) shows after one; a descriptor per plan, after three (2
allowed). Memory and the cache on disk are bounded per plan as they were for
200: 15 MiB of resident memory (150 KiB a plan) and 1 MiB of cache (10 KiB a plan).
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reliability_center.api.patchplan import PatchPlan
from reliability_center.gitops import reconcile as rc
from reliability_center.gitops.forges import ForgeOptions, MergePullRequestOptions, new_forge
from reliability_center.gitops.paths import PathPolicy
from reliability_center.gitops.workspace import Credentials, Workspace
from tests.gitea.test_gitea_patchplan import Runtime, make_plan
from tests.unit.gitops.conftest import DEPLOYMENT, git

pytestmark = pytest.mark.gitea

PLANS = 100
#: Growth allowed over PLANS plans: the same per plan as over 200 plans before (30 MiB, 2 MiB).
RSS_MIB, CACHE_KIB = 15, 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return kib / 1024


def processes_naming(*markers: str) -> list[str]:
    """Every process in the table whose command line names one of ``markers`` (our repositories)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmdline for m in markers):
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def disk_kib(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 1024


def git_plan(url: str, i: int) -> PatchPlan:
    return PatchPlan.model_validate({
        "metadata": {"name": f"leak-{i}", "namespace": "shop", "uid": uuid.uuid4().hex, "generation": 1,
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"repository": {"url": url, "provider": "git"}, "title": f"PatchPlan leak-{i}",
                 "changes": [{"path": f"apps/leak/plan-{i}.yaml", "operation": "createFile", "content": f"plan: {i}\n"}]},
    })


class GitRuntime:
    """The runtime the operator builds per pass, on the plain git forge (forge closed after use)."""

    def __init__(self, url: str, cache: Path, human_cache: Path, clone: Path):
        self.url, self.cache, self.human_cache, self.clone = url, cache, human_cache, clone
        self.lock = threading.Lock()

    def step(self, plan: PatchPlan):
        forge = new_forge(self.url, "git", None, ForgeOptions(cache_dir=str(self.cache)))
        try:
            new = rc.step(plan, rc.Runtime(forge=forge, workspace=Workspace(self.url, self.cache),
                                          policy=PathPolicy(allow=("apps/**",))))
        finally:
            forge.close()
        if new is not None:
            plan.status = new
        return new

    def human(self, plan: PatchPlan, merge: bool) -> None:
        """A reviewer: merges the branch into main from their clone, or closes the pull request."""
        ref = plan.status.pull_request
        if merge:
            with self.lock:  # one human clone: one merge at a time
                git(self.clone, "fetch", "-q", "origin", "main", ref.branch)
                git(self.clone, "checkout", "-q", "-B", "main", "origin/main")
                git(self.clone, "merge", "-q", "--no-ff", "-m", f"Merge {ref.branch}", ref.head)
                git(self.clone, "push", "-q", "origin", "HEAD:refs/heads/main")
            return
        forge = new_forge(self.url, "git", None, ForgeOptions(cache_dir=str(self.human_cache)))
        try:
            forge.close_pull_request(ref.number)
        finally:
            forge.close()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    origin, clone = tmp_path / "origin.git", tmp_path / "human-clone"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    git(clone, "checkout", "-q", "-b", "main")
    (clone / "apps").mkdir()
    (clone / "apps" / "deployment.yaml").write_text(DEPLOYMENT)
    git(clone, "add", ".")
    git(clone, "commit", "-q", "-m", "layout")
    git(clone, "push", "-q", "origin", "main")
    return origin


def drive(rt, make, n: int, start: int, human) -> list[str]:
    def one(i: int) -> str:
        plan = make(i)
        proposed = rt.step(plan)
        assert proposed.phase == "Proposed", proposed.conditions
        human(plan, merge=i % 4 == 0)
        return rt.step(plan).phase

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(start, start + n)))


@pytest.mark.timeout(600)
def test_a_hundred_plans_on_the_plain_git_forge_leave_no_process_descriptor_branch_or_cache_growth(bare, tmp_path):
    cache = tmp_path / "gitops-cache"
    url = f"file://{bare}"
    rt = GitRuntime(url, cache, tmp_path / "human-cache", tmp_path / "human-clone")
    drive(rt, lambda i: git_plan(url, i), 4, 0, rt.human)  # warm up: caches, lazily imported modules
    fds, threads, rss, disk = open_fds(), threading.active_count(), rss_mib(), disk_kib(cache)

    phases = drive(rt, lambda i: git_plan(url, i), PLANS, 4, rt.human)

    assert phases.count("Merged") == PLANS // 4 and phases.count("Rejected") == PLANS - PLANS // 4, phases
    assert processes_naming(str(bare), str(cache)) == []
    assert open_fds() <= fds + 2, (fds, open_fds(), os.listdir("/proc/self/fd"))
    assert threading.active_count() <= threads
    print(f"leaks: {PLANS} plans: descriptors {fds} -> {open_fds()}, threads {threads} -> "
          f"{threading.active_count()}, RSS {rss:.1f} -> {rss_mib():.1f} MiB, cache {disk} -> {disk_kib(cache)} KiB")
    assert rss_mib() - rss < RSS_MIB, f"resident memory grew from {rss:.0f} to {rss_mib():.0f} MiB"
    # Our branches are deleted once merged or closed: only main is left, on the forge and in the cache.
    assert git(bare, "for-each-ref", "--format=%(refname)", "refs/heads/").split() == ["refs/heads/main"]
    cached = next(p for p in cache.iterdir() if p.suffix == ".git")
    assert git(cached, "for-each-ref", "--format=%(refname)", "refs/remotes/").split() in (
        [], ["refs/remotes/origin/main"])
    # The cache holds what main holds (the merged files), not every plan's branch: bounded.
    assert disk_kib(cache) - disk < CACHE_KIB, f"the git cache grew from {disk} to {disk_kib(cache)} KiB"
    merged = {f"plan: {i}\n" for i in range(4, 4 + PLANS, 4)}
    assert {git(bare, "show", f"main:apps/leak/plan-{i}.yaml") for i in range(4, 4 + PLANS, 4)} == merged


@pytest.mark.timeout(600)
def test_plans_on_gitea_close_every_client_and_leave_only_main(repo, cache):
    rt = Runtime(repo, cache)

    def human(plan: PatchPlan, merge: bool) -> None:
        number = plan.status.pull_request.number
        repo.merge(number) if merge else repo.close(number)

    drive(rt, lambda i: make_plan(repo, name=f"leak-{i}", changes=[
        {"path": f"apps/leak/plan-{i}.yaml", "operation": "createFile", "content": f"plan: {i}\n"}]), 4, 0, human)
    fds, threads = open_fds(), threading.active_count()
    phases = drive(rt, lambda i: make_plan(repo, name=f"leak-{i}", changes=[
        {"path": f"apps/leak/plan-{i}.yaml", "operation": "createFile", "content": f"plan: {i}\n"}]), 8, 4, human)
    assert phases.count("Merged") == 2 and phases.count("Rejected") == 6, phases
    assert processes_naming(str(cache), repo.url) == []
    assert open_fds() <= fds + 2 and threading.active_count() <= threads
    assert repo.branches() == {"main"}
