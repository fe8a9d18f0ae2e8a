"""Jobs that failed, made for tests: kwok runs no containers (its pods succeed), so a failed Job is a
suspended Job (the Job controller makes no pod for it) whose status is then written as the controller
writes a failure, through the status subresource: ``FailureTarget`` and ``Failed`` conditions, a start
time. The controller leaves a finished Job alone, so the cluster's Job list shows it failed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from tests.support.cluster import api, create_object

IDEMPOTENT = {"reliability.center/idempotent": "true"}


def failed_job(namespace: str, name: str, labels: dict[str, str], ago: timedelta = timedelta(minutes=5)) -> None:
    """A Job in ``namespace`` that failed ``ago`` (its Failed condition's time)."""
    from reliability_center.gateway import Ref

    create_object(namespace, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
        "spec": {"suspend": True, "backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "registry.invalid/job:1"}]}}}})
    at = (datetime.now(timezone.utc) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
    failure = {"status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified "
                                                                              "backoff limit", "lastTransitionTime": at}
    status: dict[str, Any] = {"startTime": at, "failed": 1,
                              "conditions": [{"type": "FailureTarget", **failure}, {"type": "Failed", **failure}]}
    api().json_patch(Ref("Job", namespace, name), [{"op": "replace", "path": "/status", "value": status}],
                     manager="test-setup", sub="status")


def failed(job: dict[str, Any]) -> bool:
    return any(c["type"] == "Failed" and c["status"] == "True" for c in (job.get("status") or {}).get("conditions") or [])
