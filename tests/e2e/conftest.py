"""Fixtures only the cluster tests use."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import NAMESPACE_PREFIX
from tests.support.cluster import OWN_CLUSTER, apply_docs, apply_runbook, get_json, kubectl, load_yaml, wait_for
from tests.support.incidents import approve, create, incident, status


ZONE = ZoneInfo("Asia/Kolkata")


@pytest.fixture(scope="session", autouse=True)
def window_incident(request: pytest.FixtureRequest) -> Iterator[tuple[str, datetime.datetime, dict] | None]:
    """An approved level 2 step whose window (in Asia/Kolkata time) opens 15 to 75 s after the e2e session starts.

    Made at the first cluster test, so that the wait for the window runs beside the other
    tests; ``test_an_approved_level_2_step_runs_when_its_window_opens`` (run last) judges it.
    Not in hack/test.sh's session of ``exclusive`` tests (``OWN_CLUSTER``): its brand-new cluster must
    have no operator, CRD or admission policy the test in hand did not put there.
    """
    if OWN_CLUSTER:
        yield None
        return
    request.getfixturevalue("operator")
    now = datetime.datetime.now(datetime.timezone.utc)
    opens = (now + datetime.timedelta(minutes=1)).replace(second=0, microsecond=0)
    if opens - now < datetime.timedelta(seconds=15):
        opens += datetime.timedelta(minutes=1)  # late enough that the step is first seen outside it
    closes = opens + datetime.timedelta(minutes=10)
    namespace = f"{NAMESPACE_PREFIX}window-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    apply_docs(namespace, load_yaml("examples/protected-app/app.yaml"))
    category = f"w{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "later", "level": 2, "action": "feature-flags-off",
                            "params": {"modules": ["billing"], "flags": ["auto-dunning"]},
                            # Wall-clock times in a zone half an hour off UTC's: a window read as UTC
                            # would open 5h30 early or late, never during the test.
                            "approval": {"required": True, "window": {
                                "start": opens.astimezone(ZONE).strftime("%H:%M"),
                                "end": closes.astimezone(ZONE).strftime("%H:%M"), "timezone": ZONE.key,
                                "days": [opens.astimezone(ZONE).strftime("%a").lower()]}}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(namespace, incident("win", category=category))
    approve(namespace, "win", "later")
    waiting = wait_for(lambda: next((s for s in (status(namespace, "win").get("steps") or [])
                                     if s["reason"] == "OutsideWindow"), None), what="the approved step to wait")
    yield namespace, opens, waiting
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
