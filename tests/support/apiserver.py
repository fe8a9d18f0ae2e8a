"""Take the local cluster's own kube-apiserver away for a while, then bring it back as it was.

kwokctl runs the control plane as plain processes and keeps their pids in
``$KWOK_WORKDIR/clusters/<name>/pids``. An outage here is the real thing: the
apiserver process is killed (connections refused, watches cut), and after the
outage the same binary starts again with the same arguments, working directory
and environment, its pid written back where kwokctl looks for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.cluster import CACHE, kubectl, wait_for

CLUSTER = CACHE / "kwok" / "clusters" / os.environ.get("RC_CLUSTER", "reliability-center")


def _pidfile() -> Path:
    return CLUSTER / "pids" / "kube-apiserver.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


def stop() -> tuple[list[str], str, dict[str, str]]:
    """Kill the apiserver; returns how to start it again (arguments, working directory, environment)."""
    pid = int(_pidfile().read_text().strip())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    cwd = os.readlink(f"/proc/{pid}/cwd")
    env = dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
               if "=" in line)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), timeout=10, what="the apiserver to die")
    return argv, cwd, env


def start(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    log = open(CLUSTER / "logs" / "kube-apiserver.log", "ab")
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    _pidfile().write_text(str(proc.pid))  # so that kwokctl stop cluster finds it
    wait_for(lambda: kubectl("get", "--raw", "/readyz", check=False).returncode == 0, timeout=60,
             interval=0.2, what="the apiserver to be ready again")


def outage(seconds: float) -> float:
    """The apiserver away for ``seconds``; returns when it answers again (the time it was away)."""
    began = time.monotonic()
    how = stop()
    time.sleep(seconds)  # the outage itself: time is what is being tested
    start(*how)
    return time.monotonic() - began
