"""Replay the idempotent Jobs that failed, from the queue, with a bound (seed OCR L1.2).

The Jobs replayed are the ones that actually failed: selected by a label selector, labelled
``reliability.center/idempotent=true``, with a ``Failed`` condition within ``failedWithin``, oldest
failure first. Each is copied (its spec, without what the Job controller set) as a new Job whose name
derives from the incident and the failed Job, so it is replayed at most once per incident: a retried
step, or a later run of it, finds it made and adopts it. ``maxReplays`` bounds the replays of one
incident (those already made count); the rest are named in the evidence, not replayed. A replay is never
replayed itself (no loop: its failure is for a human), and another tenant's Job is left out. Every
replay is created through the Write Gateway, audited; Jobs are not undone on resolve.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from reliability_center.actions.base import ActionContext, Params, Result, Succeeded, action, job_name
from reliability_center.api.common import DURATION
from reliability_center.policy.limits import seconds
from reliability_center.policy.writes import TENANT_LABEL

IDEMPOTENT_LABEL = "reliability.center/idempotent"
REPLAY_OF_LABEL = "reliability.center/replay-of"
#: The incident a replay was made for, by uid: a name can be reused by a later incident.
REPLAY_FOR_LABEL = "reliability.center/replay-for"
#: What the Job controller writes into a Job it admits: a copy carrying them is refused (selector mismatch).
CONTROLLER_LABELS = ("controller-uid", "job-name", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")


class ReplayParams(Params):
    selector: str = Field(min_length=1, max_length=1024,
                          description="Label selector of the Jobs that may be replayed (besides "
                                      "reliability.center/idempotent=true, which every replayed Job must carry).")
    failed_within: str = Field(default="1h", pattern=DURATION, description="Only Jobs that failed this recently.")
    max_replays: int = Field(default=5, ge=1, le=50, description="Replays made for one incident at most.")
    backoff_limit: int = Field(default=2, ge=0, le=6, description="Attempts per replay before it fails.")


@dataclass
class Selection:
    """Which failed Jobs to replay now, which this incident replayed already, which the bound leaves."""

    replay: list[dict[str, Any]] = field(default_factory=list)
    already: list[dict[str, Any]] = field(default_factory=list)
    over_limit: list[str] = field(default_factory=list)


def failed_at(job: dict[str, Any]) -> str | None:
    """When the Job failed (its ``Failed`` condition), or None if it has not."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return condition.get("lastTransitionTime") or (job.get("status") or {}).get("startTime") or ""
    return None


def select(jobs: list[dict[str, Any]], replayed: set[str], now: str, window: float, limit: int) -> Selection:
    """Pure: the Jobs failed within ``window`` seconds of ``now``, oldest first; those in ``replayed`` (by name)
    were replayed by this incident already and count towards ``limit`` with every other replay it made."""
    since = datetime.fromisoformat(now.replace("Z", "+00:00")) - timedelta(seconds=window)
    failed = []
    for job in jobs:
        when = failed_at(job)
        if when is not None and (not when or datetime.fromisoformat(when.replace("Z", "+00:00")) >= since):
            failed.append((when, job["metadata"]["name"], job))
    out = Selection()
    room = limit - len(replayed)
    for _, name, job in sorted(failed, key=lambda f: (f[0], f[1])):
        if name in replayed:
            out.already.append(job)
        elif room > 0:
            out.replay.append(job)
            room -= 1
        else:
            out.over_limit.append(name)
    return out


def replay_name(job: str, incident_uid: str) -> str:
    """One name per incident and failed Job: the second attempt to replay it finds the first."""
    suffix = hashlib.sha256(f"{incident_uid}|{job}".encode()).hexdigest()[:8]
    return job_name(job, "replay", suffix)


def replica(job: dict[str, Any], name: str, backoff_limit: int, marks: dict[str, str],
            annotations: dict[str, str]) -> dict[str, Any]:
    """The failed Job's spec again, under a new name, without what its controller set (selector, uid labels)."""
    spec = copy.deepcopy(job.get("spec") or {})
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    spec.pop("suspend", None)  # a replay runs
    spec["backoffLimit"] = backoff_limit
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    if template_meta.get("labels"):
        template_meta["labels"] = {k: v for k, v in template_meta["labels"].items() if k not in CONTROLLER_LABELS}
    labels = {k: v for k, v in (job["metadata"].get("labels") or {}).items() if k not in CONTROLLER_LABELS}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {**labels, **marks}, "annotations": annotations}, "spec": spec}


@action("replay-jobs", params=ReplayParams, reversible=False, summary="Replay the idempotent Jobs that failed, bounded")
def run(ctx: ActionContext, params: ReplayParams) -> Result:
    incident = ctx.write.incident["metadata"]
    # Replays are never replayed (a loop); the apiserver filters, the idempotent label is required.
    selector = f"{params.selector},{IDEMPOTENT_LABEL}=true,!{REPLAY_OF_LABEL}"
    jobs = []
    for job in ctx.read.list("Job", ctx.namespace, selector):
        owner = (job["metadata"].get("labels") or {}).get(TENANT_LABEL)
        if owner and ctx.tenant != "*" and owner != ctx.tenant:
            ctx.left_out[f"Job/{ctx.namespace}/{job['metadata']['name']}"] = \
                f"belongs to tenant {owner!r}, not {ctx.tenant!r}"
            continue
        jobs.append(job)
    made = ctx.read.list("Job", ctx.namespace, f"{REPLAY_FOR_LABEL}={incident['uid']}")
    replayed = {(j["metadata"].get("labels") or {}).get(REPLAY_OF_LABEL, "") for j in made}
    chosen = select(jobs, replayed, ctx.facts.now, seconds(params.failed_within), params.max_replays)
    replays = {}
    # Those made before (a step retried after a crash) are created again: found made, adopted and audited
    # as such ("exists"), so every replay has its audit record in the step whatever happened between.
    for job in chosen.already + chosen.replay:
        original = job["metadata"]["name"]
        name = replay_name(original, incident["uid"])
        marks = {REPLAY_OF_LABEL: original, REPLAY_FOR_LABEL: incident["uid"],
                 "reliability.center/incident": incident["name"][:63]}
        ctx.create(replica(job, name, params.backoff_limit, marks,
                           {"reliability.center/trace-id": ctx.write.trace_id}))
        replays[original] = name
    already = [j["metadata"]["name"] for j in chosen.already]
    evidence = {"replayed": replays, "alreadyReplayed": already, "overLimit": chosen.over_limit,
                "limit": params.max_replays, "selector": selector, "failedWithin": params.failed_within}
    message = f"{len(chosen.replay)} failed Jobs replayed"
    if already:
        message += f", {len(already)} replayed before for this incident"
    if chosen.over_limit:
        message += f", {len(chosen.over_limit)} left over the limit of {params.max_replays}"
    return Succeeded(message, evidence)
