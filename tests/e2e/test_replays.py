"""replay-jobs on the real cluster: the idempotent Jobs that failed are replayed, each at most once per
incident, bounded. The oracle is the cluster's own Job list."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest

from tests.support.cluster import api, apply_runbook, get_json, wait_for
from tests.support.incidents import create, incident, steps, wait_phase
from tests.support.jobs import IDEMPOTENT, failed_job

pytestmark = pytest.mark.usefixtures("operator")

OCR = {"reliability.center/module": "ocr"}
REPLAY_OF = "reliability.center/replay-of"


def test_exactly_the_failed_idempotent_jobs_are_replayed_once_each_for_an_incident_up_to_its_bound(namespace):
    # Four recent failures, oldest first: the bound of 3 replays the three oldest.
    for minutes, name in ((10, "ocr-a"), (8, "ocr-b"), (6, "ocr-c"), (4, "ocr-d")):
        failed_job(namespace, name, {**OCR, **IDEMPOTENT}, ago=timedelta(minutes=minutes))
    failed_job(namespace, "ocr-last-night", {**OCR, **IDEMPOTENT}, ago=timedelta(hours=10))  # outside the window
    failed_job(namespace, "ocr-not-idempotent", OCR)
    failed_job(namespace, "ocr-globex", {**OCR, **IDEMPOTENT, "reliability.center/tenant": "globex"})
    failed_job(namespace, "search-a", {"reliability.center/module": "search", **IDEMPOTENT})  # not selected
    category = f"j{uuid.uuid4().hex[:8]}"
    replay = {"level": 1, "action": "replay-jobs",
              "params": {"selector": "reliability.center/module=ocr", "failedWithin": "1h", "maxReplays": 3}}
    # The same step twice in one incident: the second finds the three made, which fill its bound.
    apply_runbook(category, {"steps": [{"name": "replay", **replay}, {"name": "replay-again", **replay}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(namespace, incident("ocr-down", category=category, module="ocr"))
    st = wait_phase(namespace, "ocr-down", {"Mitigated", "Failed", "Escalated"})
    assert steps(st) == {"replay": "Succeeded", "replay-again": "Succeeded"}, st["steps"]

    uid = get_json("incident", "ocr-down", "-n", namespace)["metadata"]["uid"]
    replays = [j for j in api().list("Job", namespace) if REPLAY_OF in (j["metadata"].get("labels") or {})]
    originals = Counter(j["metadata"]["labels"][REPLAY_OF] for j in replays)
    assert originals == {"ocr-a": 1, "ocr-b": 1, "ocr-c": 1}, originals
    assert all(j["metadata"]["labels"]["reliability.center/replay-for"] == uid for j in replays)
    # Each replay is its original's spec again, runnable (not suspended), with the step's retry bound.
    for job in replays:
        assert not job["spec"].get("suspend") and job["spec"]["backoffLimit"] == 2
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/job:1"
    first, again = (next(s for s in st["steps"] if s["name"] == n)["evidence"] for n in ("replay", "replay-again"))
    assert sorted(first["replayed"]) == ["ocr-a", "ocr-b", "ocr-c"] and first["overLimit"] == ["ocr-d"]
    assert again["alreadyReplayed"] == ["ocr-a", "ocr-b", "ocr-c"] and again["overLimit"] == ["ocr-d"]
    # Audited: each replay's creation has its record, and another tenant's failed Job was left out, audited.
    created = Counter(e["target"] for e in st["timeline"] if e["event"] == "replay-jobs:created")
    assert created == {f"Job/{namespace}/{j['metadata']['name']}": 1 for j in replays}, created
    left = next(s for s in st["steps"] if s["name"] == "replay")["leftOut"]
    assert left == [f"Job/{namespace}/ocr-globex: belongs to tenant 'globex', not 'acme'"]
