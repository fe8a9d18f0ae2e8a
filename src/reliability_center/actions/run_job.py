"""Level 2 governed job: rebuild an index, or run a repair such as ``repair_reprocess_ocr_batch``.

Planned before approval (``plan``): with the step's ``dryRunFirst`` a Job made from the
CronJob's template runs with ``DRY_RUN=true`` and must complete; what it reports (the
ConfigMap named in its ``REPORT_CONFIGMAP``, written by the job, and the Job's own status)
is the plan the approvers approve. Once approved (``run``) the real Job runs and its
completion or failure is observed. Both Job names derive from the incident and step, so a
retry adopts them; both are owned by the Incident.

The step's ``env`` sets values of variables the CronJob's containers declare (by name, in their
``env``), never new ones: a variable such as ``BASH_ENV`` or ``LD_PRELOAD`` would otherwise make
whoever writes a runbook run code of their choosing as the CronJob's ServiceAccount, in every
namespace the runbook answers. ``DRY_RUN``, ``TRACE_ID`` and ``REPORT_CONFIGMAP`` are the operator's.

A Job is not undone on resolve: what it changes is the application's data, which only the
job knows. Its contract (the seed's "dry-run then apply, with snapshot") is the template's:
with ``DRY_RUN=true`` it reports what it would change, and it snapshots what it repairs.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from pydantic import Field

from reliability_center.actions.base import (ActionContext, Failed, OutsidePlan, Params, Planned, Result, Running,
                                             Succeeded, action, job_name)
from reliability_center.gateway import Ref
from reliability_center.gateway.leaves import digest

#: The report a dry-run Job writes is read from at most this many keys (a report, not a dump).
REPORT_KEYS = 50
#: The variables the operator sets in every Job it makes: a step's env may not name them.
OPERATOR_ENV = ("DRY_RUN", "TRACE_ID", "REPORT_CONFIGMAP")


class JobParams(Params):
    cron_job: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    backoff_limit: int = Field(default=1, ge=0, le=6)
    env: dict[str, str] = Field(default_factory=dict)


def _job(cron: dict, name: str, params: JobParams, dry_run: bool, ctx: ActionContext) -> dict:
    spec = copy.deepcopy(cron["spec"]["jobTemplate"].get("spec") or {})
    spec["backoffLimit"] = params.backoff_limit
    ours = {"DRY_RUN": "true" if dry_run else "false", "TRACE_ID": ctx.write.trace_id,
            "REPORT_CONFIGMAP": report_name(name)}
    for container in _containers(spec):
        # A step's value replaces only a variable this container declares (env_refusal checked the names).
        values = {**{k: v for k, v in params.env.items() if k in _declared(container)}, **ours}
        env = [{"name": k, "value": v} for k, v in values.items()]
        container["env"] = [e for e in container.get("env", []) if e["name"] not in values] + env
    labels = {k: v for k, v in (cron["metadata"].get("labels") or {}).items() if k.startswith("reliability.center/")}
    incident = ctx.write.incident
    # Owned by the Incident: deleting it collects its Jobs (and their pods), as its snapshots are.
    owner = {"apiVersion": incident["apiVersion"], "kind": "Incident", "name": incident["metadata"]["name"],
             "uid": incident["metadata"]["uid"]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {**labels, "reliability.center/run-of": cron["metadata"]["name"]},
                         "ownerReferences": [owner]},
            "spec": spec}


def _containers(job_spec: dict) -> list[dict]:
    return job_spec.get("template", {}).get("spec", {}).get("containers", [])


def _declared(container: dict) -> set[str]:
    return {e["name"] for e in container.get("env") or [] if e.get("name")}


def env_refusal(cron: dict, params: JobParams) -> Failed | None:
    """Why the step's env may not go into this CronJob's Job: a name the operator sets, or one no
    container of the CronJob declares (None: every name is declared)."""
    name = cron["metadata"]["name"]
    reserved = sorted(set(params.env) & set(OPERATOR_ENV))
    if reserved:
        return Failed("EnvNotAllowed", f"env may not set {', '.join(reserved)}: the operator sets "
                                       f"{', '.join(OPERATOR_ENV)} in every Job it runs")
    declared = set().union(*(_declared(c) for c in _containers(cron["spec"]["jobTemplate"].get("spec") or {})))
    undeclared = sorted(set(params.env) - declared)
    if undeclared:
        return Failed("EnvNotDeclared",
                      f"env names {', '.join(undeclared)}, which no container of CronJob {name} declares "
                      f"(it declares {', '.join(sorted(declared)) or 'none'}): a step may set the value of a "
                      f"variable the CronJob declares in its containers' env, never add one")
    return None


def report_name(job: str) -> str:
    return f"{job}-report"


def job_state(job: dict | None) -> str:
    status = (job or {}).get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"]
    return "Running" if job else "Absent"


def _names(ctx: ActionContext, params: JobParams, cron: dict) -> tuple[str, str]:
    """The dry-run Job's name and the real one's. The dry-run's also derives from what it runs (the
    CronJob's template as it is now, the env, the backoff): a CronJob changed since its dry-run gets a new
    dry-run, whose report is a new plan to approve, never the old report."""
    key = hashlib.sha256(f"{ctx.write.incident['metadata']['uid']}|{ctx.step.name}".encode()).hexdigest()[:8]
    runs = hashlib.sha256(f"{key}|{_after(cron, params)}".encode()).hexdigest()[:8]
    return job_name(params.cron_job, "dryrun", runs), job_name(params.cron_job, "apply", key)


def _after(cron: dict, params: JobParams) -> dict[str, Any]:
    """What the real Job will run, as the plan shows it."""
    return {"template": digest(cron["spec"]["jobTemplate"]), "env": params.env, "backoffLimit": params.backoff_limit}


def _template(ctx: ActionContext, params: JobParams) -> tuple[dict | None, Result | None]:
    cron = ctx.read.get(Ref("CronJob", ctx.namespace, params.cron_job))
    if cron is None:
        return None, Failed("TemplateNotFound", f"CronJob {params.cron_job} not found in {ctx.namespace}")
    refused = env_refusal(cron, params)
    if refused is not None:
        return None, refused
    return cron, None


def _await(ctx: ActionContext, job: str, what: str) -> tuple[str, Result | None]:
    found = ctx.read.get(Ref("Job", ctx.namespace, job))
    state = job_state(found)
    if state == "Failed":
        return state, Failed("JobFailed", f"{what} Job {job} failed: {(found or {}).get('status', {}).get('failed')} "
                                          f"pods failed (kubectl logs job/{job} -n {ctx.namespace})")
    if state != "Complete":
        return state, Running(f"{what} Job {job} running", retry_after=2.0)  # polled: no watch on every Job
    return state, None


def plan(ctx: ActionContext, params: JobParams) -> Planned | Result:
    """Before approval: the dry-run Job runs to completion; its report is the plan."""
    cron, missing = _template(ctx, params)
    if cron is None:
        return missing  # type: ignore[return-value]
    dry, apply = _names(ctx, params, cron)
    template = {"target": f"Job/{ctx.namespace}/{apply}", "before": None, "after": _after(cron, params)}
    if not ctx.step.dry_run_first or ctx.write.shadow:
        return Planned([template])  # shadow mode creates no Job: the template is the plan
    if ctx.read.get(Ref("Job", ctx.namespace, dry)) is None:
        ctx.create(_job(cron, dry, params, True, ctx))
    state, waiting = _await(ctx, dry, "dry-run")
    if waiting is not None:
        return waiting
    report = (ctx.read.get(Ref("ConfigMap", ctx.namespace, report_name(dry))) or {}).get("data") or {}
    job = ctx.read.get(Ref("Job", ctx.namespace, dry)) or {}
    return Planned([template], {"job": dry, "state": state, "succeeded": job.get("status", {}).get("succeeded"),
                                "completionTime": job.get("status", {}).get("completionTime"),
                                "report": dict(sorted(report.items())[:REPORT_KEYS]) if report else
                                f"none: the job wrote no ConfigMap {report_name(dry)}"})


@action("run-job", params=JobParams, levels=(2,), reversible=False, plan=plan,
        summary="Governed job from a template: dry-run Job first, its report approved, then the real Job")
def run(ctx: ActionContext, params: JobParams) -> Result:
    cron, missing = _template(ctx, params)
    if cron is None:
        return missing  # type: ignore[return-value]
    _, apply = _names(ctx, params, cron)
    evidence: dict[str, Any] = {"apply": {"job": apply}}
    if ctx.read.get(Ref("Job", ctx.namespace, apply)) is None:
        approved = [c for c in ((ctx.status.evidence or {}).get("plan") or {}).get("changes") or []
                    if c.get("target") == f"Job/{ctx.namespace}/{apply}"]
        if ctx.approved is not None and approved and approved[0].get("after") != _after(cron, params):
            # Changed since the plan was made (between this turn's review and now): dry-run again, ask again.
            raise OutsidePlan(f"Job/{ctx.namespace}/{apply} from CronJob {params.cron_job} as changed since its "
                              f"dry-run")
        ctx.create(_job(cron, apply, params, False, ctx))
        if ctx.write.shadow:
            return Succeeded("shadow mode: the Job would run", evidence)
    state, waiting = _await(ctx, apply, "apply")
    evidence["apply"]["state"] = state
    if waiting is not None:
        if isinstance(waiting, Running):
            waiting.evidence = evidence
        return waiting
    return Succeeded(f"Job {apply} completed", evidence)
