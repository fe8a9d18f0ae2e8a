"""Hundreds of PatchPlans through one process: no child process, file descriptor or thread piles up.

GitPython is known to leak ``git cat-file`` helpers in long-running daemons;
this code runs git as short-lived subprocesses and closes every HTTP client,
and this test holds it to that over >= 200 plans. Like the operator (Kopf runs
sync handlers in a thread pool), four threads drive the plans at once, sharing
one git cache; each plan is proposed, then merged (one in four) or closed on Gitea, and
the outcome detected.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.gitea.test_gitea_patchplan import Runtime, make_plan

pytestmark = pytest.mark.gitea

PLANS = 200


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def children() -> list[str]:
    """Every process whose parent is this one, zombies included."""
    me, out = str(os.getpid()), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me:  # fields: state, ppid, ...
            out.append(f"{pid} {stat.split(')')[0]}) state={fields[0]}")
    return out


def run_one(rt: Runtime, repo, i: int) -> str:
    plan = make_plan(repo, name=f"leak-{i}", changes=[
        {"path": f"apps/leak/plan-{i}.yaml", "operation": "createFile", "content": f"plan: {i}\n"}])
    proposed = rt.step(plan)
    assert proposed.phase == "Proposed", proposed.conditions
    if i % 4:
        repo.close(proposed.pull_request.number)
    else:
        repo.merge(proposed.pull_request.number)
    return rt.step(plan).phase


@pytest.mark.timeout(900)
def test_no_leak_over_hundreds_of_patchplans(repo, cache):
    rt = Runtime(repo, cache)
    for i in range(4):  # warm up: caches, connection pools, lazily imported modules
        run_one(rt, repo, i)
    fds, threads = open_fds(), threading.active_count()
    before = set(children())  # e.g. the e2e session's operator, when the whole suite runs
    with ThreadPoolExecutor(max_workers=4) as pool:
        phases = list(pool.map(lambda i: run_one(rt, repo, i), range(4, 4 + PLANS)))
    assert phases.count("Merged") == PLANS // 4 and phases.count("Rejected") == PLANS - PLANS // 4
    assert set(children()) <= before
    assert open_fds() <= fds + 2, (fds, open_fds(), os.listdir("/proc/self/fd"))
    assert threading.active_count() <= threads
    merged = {f"plan: {i}\n" for i in range(4, 4 + PLANS, 4)}
    assert {repo.file(f"apps/leak/plan-{i}.yaml") for i in range(4, 4 + PLANS, 4)} == merged
