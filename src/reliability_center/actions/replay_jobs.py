"""Replay idempotent jobs as Jobs made from a CronJob's template, with a hard limit.

Job names derive from the incident, step and attempt number, so a retried step
adopts the Jobs it already made instead of making more; the limit bounds the
replays of one incident, and ``backoffLimit`` bounds each Job's own retries.
"""

from __future__ import annotations

import copy
import hashlib

from pydantic import Field

from reliability_center.actions.base import ActionContext, Failed, Params, Result, Succeeded, action, job_name
from reliability_center.gateway import Ref


class ReplayParams(Params):
    cron_job: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=52,
                          description="The CronJob whose jobTemplate is replayed (it must be idempotent).")
    count: int = Field(default=1, ge=1, le=10, description="Jobs to replay for this incident.")
    backoff_limit: int = Field(default=2, ge=0, le=6, description="Attempts per Job before it fails.")


def replay_name(cron_job: str, uid: str, step: str, index: int) -> str:
    suffix = hashlib.sha256(f"{uid}|{step}|{index}".encode()).hexdigest()[:8]
    return job_name(cron_job, "replay", suffix)


@action("replay-jobs", params=ReplayParams, reversible=False, summary="Replay idempotent jobs, bounded")
def run(ctx: ActionContext, params: ReplayParams) -> Result:
    cron = ctx.read.get(Ref("CronJob", ctx.namespace, params.cron_job))
    if cron is None:
        return Failed("TemplateNotFound", f"CronJob {params.cron_job} not found in {ctx.namespace}")
    labels = cron["metadata"].get("labels") or {}
    if labels.get("reliability.center/idempotent") != "true":
        return Failed("NotIdempotent", f"CronJob {params.cron_job} is not labelled reliability.center/idempotent=true")
    template = cron["spec"]["jobTemplate"]
    uid = ctx.write.incident["metadata"]["uid"]
    names = []
    for index in range(params.count):
        spec = copy.deepcopy(template.get("spec") or {})
        spec["backoffLimit"] = params.backoff_limit
        job_labels = {**(template.get("metadata", {}).get("labels") or {}),
                      **{k: v for k, v in labels.items() if k.startswith("reliability.center/")},
                      "reliability.center/replay-of": params.cron_job,
                      "reliability.center/incident": ctx.write.incident["metadata"]["name"][:63]}
        name = replay_name(params.cron_job, uid, ctx.step.name, index)
        ctx.create({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": name, "labels": job_labels,
                                 "annotations": {"reliability.center/trace-id": ctx.write.trace_id}},
                    "spec": spec})
        names.append(name)
    return Succeeded(f"{len(names)} replay Jobs from {params.cron_job}", {"jobs": names, "limit": params.count})
