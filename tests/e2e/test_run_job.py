"""run-job, planned then applied: the dry-run Job runs and reports, approvers approve that report, then
the real Job runs. kwok completes Job pods, so both Jobs really complete in the cluster; kwok runs no
container, so the test writes the dry-run's report ConfigMap the way the job's container would."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import approve, incident, plan_digest, status, steps, wait_phase

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]
CRON = "repair-reprocess-ocr-batch"


def dry_run_job(namespace: str, other_than: str = "") -> str:
    """The dry-run Job the operator made (named after the incident, the step and the template it runs)."""
    return wait_for(lambda: next((j["metadata"]["name"] for j in get_json("jobs", "-n", namespace)["items"]
                                  if j["metadata"]["name"].startswith(f"{CRON}-dryrun-")
                                  and j["metadata"]["name"] != other_than), None), what="the dry-run Job")


def test_a_repair_job_runs_dry_first_waits_for_approval_then_runs_for_real(app):
    category = f"rj{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "repair", "level": 2, "action": "run-job", "params": {"cronJob": CRON},
                            "approval": {"required": True}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    made = json.loads(kubectl("create", "-n", app, "-f", "-", "-o", "json",
                              input=json.dumps(incident("ocr", category=category))).stdout)
    key = hashlib.sha256(f"{made['metadata']['uid']}|repair".encode()).hexdigest()[:8]
    dry, real = dry_run_job(app), f"{CRON}-apply-{key}"
    # What the repair's own container writes when DRY_RUN=true: the documents it would reprocess.
    apply_docs(app, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{dry}-report"},
                      "data": {"documents": "42", "batch": "2026-11-28"}}])
    digest = plan_digest(app, "ocr", "repair")
    repair = next(s for s in status(app, "ocr")["steps"] if s["name"] == "repair")
    assert repair["state"] == "AwaitingApproval" and repair["reason"] == "ApprovalRequired"
    plan = repair["evidence"]["plan"]
    assert plan["report"]["report"] == {"batch": "2026-11-28", "documents": "42"}
    assert plan["report"]["job"] == dry and plan["report"]["state"] == "Complete"
    jobs = {j["metadata"]["name"]: j for j in get_json("jobs", "-n", app)["items"]}
    assert set(jobs) == {dry}  # nothing real runs before approval
    env = {e["name"]: e["value"] for e in jobs[dry]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DRY_RUN"] == "true" and env["REPORT_CONFIGMAP"] == f"{dry}-report"

    approve(app, "ocr", "repair", user="alice", digest=digest)
    wait_for(lambda: steps(status(app, "ocr"))["repair"] == "Succeeded", timeout=60, what="the real job")
    jobs = {j["metadata"]["name"]: j for j in get_json("jobs", "-n", app)["items"]}
    assert set(jobs) == {dry, real}
    assert all(c["type"] == "Complete" for j in jobs.values() for c in j["status"]["conditions"]
               if c["status"] == "True" and c["type"] in ("Complete", "Failed"))
    env = {e["name"]: e["value"] for e in jobs[real]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DRY_RUN"] == "false"
    assert all(j["metadata"]["ownerReferences"][0]["uid"] == made["metadata"]["uid"] for j in jobs.values())
    approved_at = get_json("approvals", "-n", app)["items"][0]["metadata"]["creationTimestamp"]
    assert jobs[real]["metadata"]["creationTimestamp"] >= approved_at
    st = status(app, "ocr")
    assert next(s for s in st["steps"] if s["name"] == "repair")["evidence"]["plan"]["report"]["job"] == dry
    assert [e["target"] for e in st["timeline"] if e["event"] == "run-job:created"] == \
        [f"Job/{app}/{dry}", f"Job/{app}/{real}"]  # each Job audited, the dry-run first


def test_a_failing_dry_run_never_asks_for_approval(app):
    category = f"rj{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "repair", "level": 2, "action": "run-job",
                            "params": {"cronJob": "no-such-cronjob"}, "approval": {"required": True}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    kubectl("create", "-n", app, "-f", "-", input=json.dumps(incident("ocr", category=category)))
    st = wait_phase(app, "ocr", {"Failed", "Escalated"})
    repair = next(s for s in st["steps"] if s["name"] == "repair")
    assert repair["state"] == "Failed" and repair["reason"] == "TemplateNotFound" and not repair.get("approval")
