"""Builders of valid model objects for unit tests."""

from __future__ import annotations

from typing import Any

from reliability_center.api.common import Condition
from reliability_center.api.incident import Incident
from reliability_center.api.runbook import Runbook


def incident(**spec: Any) -> Incident:
    base = {"category": "perf", "severity": "high", "tenant": "acme", "module": "search"}
    labels = spec.pop("labels", {})
    return Incident.model_validate({"metadata": {"name": "inc", "namespace": "ns", "uid": "u1", "labels": labels},
                                    "spec": {**base, **spec}})


def runbook(name: str = "perf", ready: bool = True, steps: list[dict[str, Any]] | None = None,
            **match: Any) -> Runbook:
    rb = Runbook.model_validate({
        "metadata": {"name": name},
        "spec": {"match": {"category": "perf", **match},
                 "steps": steps or [{"name": "flags", "level": 1, "action": "feature-flags-off"}]},
    })
    if ready:
        rb.status = rb.status or type(rb).model_fields["status"].annotation.__args__[0]()  # RunbookStatus
        rb.status.conditions = [Condition(type="Ready", status="True", reason="Validated")]
    return rb
