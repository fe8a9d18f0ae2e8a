"""Level 2 governed job: rebuild an index, or run a repair such as ``repair_reprocess_ocr_batch``.

The Job is made from an idempotent CronJob's template. With ``dryRunFirst`` a
Job with ``DRY_RUN=true`` runs and must succeed before the real one starts;
both names derive from the incident and step, so a retry adopts them.
"""

from __future__ import annotations

import copy
import hashlib

from pydantic import Field

from reliability_center.actions.base import ActionContext, Failed, Params, Result, Running, Succeeded, action
from reliability_center.gateway import Ref


class JobParams(Params):
    cron_job: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    dry_run_first: bool = True
    backoff_limit: int = Field(default=1, ge=0, le=6)
    env: dict[str, str] = Field(default_factory=dict)


def _job(cron: dict, name: str, params: JobParams, dry_run: bool, ctx: ActionContext) -> dict:
    spec = copy.deepcopy(cron["spec"]["jobTemplate"].get("spec") or {})
    spec["backoffLimit"] = params.backoff_limit
    env = [{"name": k, "value": v} for k, v in {**params.env, "DRY_RUN": "true" if dry_run else "false",
                                                 "TRACE_ID": ctx.write.trace_id}.items()]
    for container in spec.get("template", {}).get("spec", {}).get("containers", []):
        container["env"] = [e for e in container.get("env", []) if e["name"] not in {x["name"] for x in env}] + env
    labels = {k: v for k, v in (cron["metadata"].get("labels") or {}).items() if k.startswith("reliability.center/")}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {**labels, "reliability.center/run-of": cron["metadata"]["name"]}},
            "spec": spec}


def job_state(job: dict | None) -> str:
    status = (job or {}).get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"]
    return "Running" if job else "Absent"


@action("run-job", params=JobParams, levels=(2,), reversible=False,
        summary="Governed job from a template: dry-run first, then apply")
def run(ctx: ActionContext, params: JobParams) -> Result:
    cron = ctx.read.get(Ref("CronJob", ctx.namespace, params.cron_job))
    if cron is None:
        return Failed("TemplateNotFound", f"CronJob {params.cron_job} not found in {ctx.namespace}")
    key = hashlib.sha256(f"{ctx.write.incident['metadata']['uid']}|{ctx.step.name}".encode()).hexdigest()[:8]
    phases = (["dryrun"] if params.dry_run_first else []) + ["apply"]
    evidence = {}
    for phase in phases:
        name = f"{params.cron_job}-{phase}-{key}"
        job = ctx.read.get(Ref("Job", ctx.namespace, name))
        state = job_state(job)
        evidence[phase] = {"job": name, "state": state}
        if state == "Failed":
            return Failed("JobFailed", f"{phase} Job {name} failed")
        if state == "Complete":
            continue
        if state == "Absent":
            ctx.create(_job(cron, name, params, phase == "dryrun", ctx))
            if ctx.write.shadow:
                continue
        return Running(f"{phase} Job {name} running", retry_after=1.0, evidence=evidence)
    return Succeeded("dry-run passed, job applied" if params.dry_run_first else "job applied", evidence)
