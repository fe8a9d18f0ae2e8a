"""The intake trusts no more than it must (issue 19, item 6): over real HTTP, against the real apiserver.

Most posts go to the session operator's receiver (tests/conftest.py: INTAKE_URL, its token, its
config). A test that needs a setting of its own (a small queue) serves a receiver in this process,
built as ``intake.server.start`` builds it, on the same apiserver. The oracles are the apiserver's
objects and refusals, and the HTTP answers Alertmanager itself would act on (status, Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from reliability_center.intake.config import IntakeConfig
from reliability_center.intake.incidents import Incidents, Outcome
from reliability_center.intake.mapping import Plan
from reliability_center.intake.server import Receiver, TokenFile
from tests.conftest import INTAKE_TOKEN, INTAKE_TOKEN_FILE
from tests.e2e.test_intake import alert_category, am_alert, expected_name, incidents, payload, post  # noqa: F401
from tests.support.cluster import wait_for
from tests.support.processes import free_port

pytestmark = pytest.mark.usefixtures("operator")


@contextlib.contextmanager
def serving(receiver: Receiver) -> Iterator[str]:
    """The receiver's aiohttp app on a free local port, its event loop on a thread of its own."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(receiver.app(), access_log=None)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/alerts"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class HeldIncidents(Incidents):
    """The real Incidents (the real apiserver), each post held until the test releases them: a slow apiserver."""

    def __init__(self, kube: Any):
        super().__init__(kube)
        self.release = threading.Event()
        self.holding = 0
        self._count = threading.Lock()

    def apply(self, plans: list[Plan]) -> Outcome:
        with self._count:
            self.holding += 1
        self.release.wait(60)
        return super().apply(plans)


# ------------------------------------------------------------------------------ a bounded queue


def test_a_full_queue_answers_429_with_retry_after_and_the_held_posts_still_land(kube, namespace, alert_category):
    config = IntakeConfig(namespaces=[namespace], categories=[alert_category], max_pending_posts=2)
    held = HeldIncidents(kube)
    bodies = [payload(namespace, alert_category, am_alert(f"ca{i}"), group=f"queue-{i}") for i in range(3)]
    answers: dict[int, httpx.Response] = {}
    with serving(Receiver(config, TokenFile(str(INTAKE_TOKEN_FILE)), held)) as url:
        def send(i: int) -> None:
            answers[i] = post(bodies[i], url=url)

        senders = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for sender in senders:
            sender.start()
        try:
            wait_for(lambda: held.holding == 2, timeout=30, what="two posts held in the intake executor")
            full = post(bodies[2], url=url)
        finally:
            held.release.set()
        for sender in senders:
            sender.join(60)
    assert full.status_code == 429, full.text
    assert int(full.headers["Retry-After"]) > 0
    assert full.json()["error"] == "TooManyPendingPosts" and "maxPendingPosts" in full.json()["message"]
    assert held.holding == 2  # the refused post never reached the executor
    assert [answers[i].status_code for i in range(2)] == [200, 200], [answers[i].text for i in range(2)]
    # The apiserver holds the two held posts' Incidents and not the refused one's (Alertmanager retries it).
    assert sorted(incidents(kube, namespace)) == sorted(expected_name(b, alert_category) for b in bodies[:2])
