"""A SIGTERM ends the operator promptly and cleanly, as a Deployment's rollout or a node drain expects.

The oracle is the process itself: its exit code and how long it took, against the pod's default
terminationGracePeriodSeconds (30 s). Other tests stop operators with a SIGKILL fallback, which hid a
hang here: Kopf waited for the stop flag in a thread of the default executor, a thread asyncio.run
joins at exit, and nothing ever set the flag after a signal.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import CACHE, start_operator, stop_operator
from tests.support.cluster import wait_for
from tests.support.processes import free_port

GRACE = 15.0
"""Half of Kubernetes' default terminationGracePeriodSeconds."""


def serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.loads(response.read()))
    except OSError:
        return False


@pytest.mark.parametrize("leader_election", [False, True], ids=["single", "elected"])
def test_a_sigterm_ends_the_operator_within_the_grace_period_with_exit_code_zero(
        solo_namespace: str, leader_election: bool) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    env = {"RC_NAMESPACES": solo_namespace, "RC_HEALTH_URL": url}
    if leader_election:
        env |= {"RC_LEADER_ELECTION": "true", "RC_LEADER_NAMESPACE": solo_namespace,
                "RC_LEADER_LEASE": "shutdown"}
    proc = start_operator(CACHE / f"operator-shutdown-{solo_namespace}.log", env)
    try:
        wait_for(lambda: serving(url), timeout=60, what="the operator's /healthz")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = proc.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the operator was still running {GRACE:.0f}s after SIGTERM")
        took = time.monotonic() - sent
        assert code == 0, f"exit code {code} after SIGTERM ({took:.1f}s)"
    finally:
        stop_operator(proc, signal.SIGKILL)
