"""The monitoring harness (tests/support/monitoring.py) with real parts: a gauge over a rule's
threshold makes the real Prometheus fire and the real Alertmanager post to a webhook.

The oracle is a small receiver of this test's own (not the operator): what arrives there, with
which token, is what Alertmanager really sent. The two bodies it gets are kept as examples for
the intake's unit tests in tests/unit/fixtures/alertmanager_{firing,resolved}.json: written when
missing or when RC_RECORD_FIXTURES=1, otherwise checked to still have the shape Alertmanager sends.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import wait_for
from tests.support.monitoring import Monitoring
from tests.support.receiver import Receiver

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"
LABELS = {"namespace": "t-shop", "tenant": "acme", "module": "billing", "category": "alert-error-ratio"}


@pytest.fixture
def window_incident() -> None:
    """Overrides tests/e2e/conftest.py's autouse one for this module: the harness needs no cluster nor operator."""


def _shape(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    return sorted(body), sorted(body["alerts"][0])


def _keep(name: str, body: dict[str, Any]) -> None:
    path = FIXTURES / name
    if os.environ.get("RC_RECORD_FIXTURES") == "1" or not path.exists():
        FIXTURES.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2) + "\n")
    else:  # the intake's unit tests must keep seeing what Alertmanager really sends
        assert _shape(json.loads(path.read_text())) == _shape(body), f"{path} is stale: RC_RECORD_FIXTURES=1"


def test_a_gauge_over_the_threshold_reaches_the_webhook_firing_then_resolved(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")  # as tests/conftest.py writes it: Alertmanager trims the newline
    receiver = Receiver()
    try:
        with Monitoring(intake_url=receiver.url, token_file=token_file, directory=tmp_path / "monitoring") as mon:
            mon.exporter.set(0.2, **LABELS)  # below the threshold: nothing may fire
            mon.add_rule("RcErrorRatioHigh", "rc_test_error_ratio > 0.5", labels={"severity": "critical"},
                         annotations={"summary": "error ratio {{ $value }}"})
            scraped = wait_for(lambda: mon.query("rc_test_error_ratio"), what="the gauge in Prometheus")
            assert [(s["metric"]["tenant"], s["value"][1]) for s in scraped] == [("acme", "0.2")]
            assert mon.query("ALERTS") == [] and receiver.posts == []

            mon.exporter.set(0.9, **LABELS)
            firing = wait_for(lambda: receiver.first("firing"), timeout=15, what="a firing post")
            assert [a["labels"]["alertname"] for a in mon.alerts()] == ["RcErrorRatioHigh"]
            mon.exporter.set(0.1, **LABELS)
            resolved = wait_for(lambda: receiver.first("resolved"), timeout=15, what="a resolved post")
            mon.exporter.remove(**LABELS)  # the series goes stale in Prometheus at its next scrape
            wait_for(lambda: not mon.query("rc_test_error_ratio"), what="the gauge to leave Prometheus")
    finally:
        receiver.close()

    for post in receiver.posts:
        assert post["path"] == "/alerts"
        assert post["authorization"] == f"Bearer {token}"
        assert post["content_type"] == "application/json"
    body = firing["body"]
    assert (body["version"], body["receiver"], body["status"]) == ("4", "intake", "firing")
    assert body["groupLabels"] == LABELS  # the route groups by exactly these
    [alert] = body["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"].items() >= {**LABELS, "alertname": "RcErrorRatioHigh", "severity": "critical"}.items()
    assert alert["annotations"] == {"summary": "error ratio 0.9"}
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"

    body = resolved["body"]
    assert (body["version"], body["status"]) == ("4", "resolved")
    [gone] = body["alerts"]
    assert (gone["status"], gone["fingerprint"], gone["labels"]) == ("resolved", alert["fingerprint"], alert["labels"])
    assert gone["endsAt"] > gone["startsAt"] == alert["startsAt"]

    _keep("alertmanager_firing.json", firing["body"])
    _keep("alertmanager_resolved.json", resolved["body"])
