"""A zygote: imports the operator once, then forks a fresh operator process for each ``go`` line on stdin.

Crash and failover tests SIGKILL the operator dozens of times; a process started
anew spends about 0.9 s of CPU importing Kopf, the Kubernetes client and the
operator, and a test command starts 52 of them (test_crash.py 32, test_failover.py 12,
the group commit's SIGKILL test 8). Forked from this
process, each operator is still a process of its own (its pid, its connections,
its threads, its own session so that a test can signal its whole group), started
from modules that have run nothing but their imports: nothing here starts a
thread, a loop or a connection before the fork.

Protocol, one line each way: ``go`` in; ``pid <pid>`` out once forked, then
``exit <pid> <returncode>`` when that process ends (reaped here, as
``subprocess.Popen.returncode`` reads it: -9 for a SIGKILL). Each operator's
stdout and stderr go to the log file named on the command line (appended).
"""

from __future__ import annotations

import os
import select
import sys

from reliability_center.operator.main import run


def child(log: str) -> None:
    """In the forked process: become a session of its own, write to the log, run, exit as a process would."""
    os.setsid()
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.close(devnull)
    run()
    sys.exit(0)  # unwinds through the zygote's loop to a normal interpreter exit (atexit, thread joins)


def reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        os.write(1, f"exit {pid} {os.waitstatus_to_exitcode(status)}\n".encode())


def main(log: str) -> None:
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        reap()
        if not readable:
            continue
        chunk = os.read(0, 1024)
        if not chunk:  # the test closed our stdin: its operators are its own to stop
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() != b"go":
                continue
            pid = os.fork()
            if pid == 0:
                child(log)
            os.write(1, f"pid {pid}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1])
