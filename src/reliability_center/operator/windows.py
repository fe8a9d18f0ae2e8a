"""Wake Incidents whose level 2 step waits for a time window that has now opened.

Incident handlers run on events only; a window opening is not an event. A
background task of the operator (no per-object timer, so no finalizer on
Incidents) looks every ``RC_WINDOW_SCAN`` seconds and, for each step whose
window is open, sets the Incident's AwaitingApproval condition to WindowOpen:
that status change is the event that makes the runner act.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from reliability_center.api.common import now_iso
from reliability_center.api.incident import StepStatus
from reliability_center.engine.progress import window_opened
from reliability_center.gateway import Ref, records
from reliability_center.operator.context import kube, runner

log = logging.getLogger("reliability_center.windows")
SCAN_SECONDS = float(os.environ.get("RC_WINDOW_SCAN", "30"))


def scan() -> int:
    """One pass over the Incidents; returns how many were woken."""
    woken = 0
    now = now_iso()
    runbooks = {rb["metadata"]["name"]: rb for rb in kube().list("Runbook")}
    for item in kube().list("Incident"):
        status = item.get("status") or {}
        raw = runbooks.get(status.get("runbook") or "")
        runbook = runner().parse_runbook(raw) if raw else None
        if runbook is None or item["spec"].get("resolved"):
            continue
        steps = [StepStatus.model_validate(s) for s in status.get("steps") or []]
        step = window_opened(runbook, steps, now)
        if step is None:
            continue
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "AwaitingApproval"]
        conditions.append({"type": "AwaitingApproval", "status": "True", "reason": "WindowOpen",
                           "message": f"the window of step {step!r} is open", "lastTransitionTime": now})
        meta = item["metadata"]
        try:
            records.patch_status(kube(), Ref("Incident", meta["namespace"], meta["name"]), {"conditions": conditions},
                                 meta["resourceVersion"])
            woken += 1
        except Exception as exc:  # the next pass tries again; one Incident must not stop the others
            log.warning("could not wake incident %s/%s: %s", meta["namespace"], meta["name"], exc)
    return woken


_tasks: set[asyncio.Task[None]] = set()  # a reference, so the running task is not garbage-collected


@kopf.on.startup()
async def start_window_scanner(**_: Any) -> None:
    async def loop() -> None:
        while True:
            await asyncio.sleep(SCAN_SECONDS)
            try:
                await asyncio.to_thread(scan)
            except Exception as exc:  # the apiserver may be briefly away; keep scanning
                log.warning("window scan failed: %s", exc)

    task = asyncio.get_running_loop().create_task(loop())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
