"""What the benchmarks share: the local cluster, the raw write round trip, percentiles, and a process's peak memory
and CPU time from /proc."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent


def use_cluster() -> str:
    """Start (or reuse) the local cluster and point KUBECONFIG at it, for this process and its children."""
    os.environ["KUBECONFIG"] = subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], check=True,
                                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return os.environ["KUBECONFIG"]


def raw_writes(kube: Any, ref: Any, count: int) -> list[float]:
    """The raw write round trip, ``count`` times: a merge patch of one key of ConfigMap ``ref`` through the
    benchmark's own client (the key removed after)."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        kube.merge_patch(ref, {"data": {"bench": str(i)}}, manager="bench")
        times.append(time.perf_counter() - start)
    kube.merge_patch(ref, {"data": {"bench": None}}, manager="bench")
    return times


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (its /proc stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
