"""An approval covers exactly the plan shown in full, and anything new asks again (issue 19, item 8).

The approvers are real users (kubectl impersonation, the admission policies stamp them); the oracles
are the cluster's own objects: a Deployment's pod template (the restart marker is there or not), the
Jobs in the namespace and the image they run, the Approval objects that exist.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from reliability_center.actions.restart_one_by_one import RESTART_ANNOTATION
from reliability_center.gateway import Ref
from tests.e2e.test_run_job import CRON, dry_run_job
from tests.support.cluster import (api, apply_docs, apply_runbook, get_json, kubectl, rollout_status, slow_schedulers,
                                   wait_for)
from tests.support.incidents import APPROVERS, approve, create, incident, plan_digest, status, steps

pytestmark = pytest.mark.usefixtures("operator")
LABELS = {"reliability.center/role": "scheduler", "reliability.center/module": "waves"}


def relctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from reliability_center.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=60)


def step(namespace: str, name: str, which: str) -> dict:
    return next(s for s in status(namespace, name)["steps"] if s["name"] == which)


def restarted(namespace: str, deployment: str) -> bool:
    template = get_json("deployment", deployment, "-n", namespace)["spec"]["template"]
    return RESTART_ANNOTATION in ((template.get("metadata") or {}).get("annotations") or {})


def test_a_later_wave_whose_selection_grew_stops_and_asks_again(namespace):
    slow_schedulers(namespace, ["sched-a", "sched-b"], "waves", min_ready=0)
    # sched-a's next rollout lasts until the test lets it end (its minReadySeconds set back to 0), once a new
    # scheduler has appeared while the approved step runs: no fixed wait for it. (Below the progress
    # deadline, 600 s; not waited for: its pods are not "available" again for that long.)
    slowed = api().merge_patch(Ref("Deployment", namespace, "sched-a"), {"spec": {"minReadySeconds": 590}},
                               manager="test-setup")
    wait_for(lambda: api().get(Ref("Deployment", namespace, "sched-a"))["status"].get("observedGeneration", 0)
             >= slowed["metadata"]["generation"], what="the Deployment controller to see sched-a's minReadySeconds")
    category = f"pr{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100}, "steps": [
        {"name": "restart", "level": 2, "action": "restart-one-by-one",
         "params": {"role": "scheduler", "modules": ["waves"]}, "approval": {"required": True}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(namespace, incident("waves", category=category))
    digest = plan_digest(namespace, "waves", "restart")
    # Every wave is in the plan the approvers see, not only the first.
    plan = step(namespace, "waves", "restart")["evidence"]["plan"]
    assert [c["target"] for c in plan["changes"]] == [f"Deployment/{namespace}/sched-a",
                                                      f"Deployment/{namespace}/sched-b"]
    shown = relctl("plan", "waves", "restart", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert f"Deployment/{namespace}/sched-a" in shown.stdout and f"Deployment/{namespace}/sched-b" in shown.stdout

    approve(namespace, "waves", "restart", user="alice", digest=digest)
    wait_for(lambda: restarted(namespace, "sched-a"), what="the first wave to start")
    apply_docs(namespace, [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sched-c",
                                                                                       "labels": LABELS},
                            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sched-c"}},
                                     "template": {"metadata": {"labels": {"app": "sched-c", **LABELS}},
                                                  "spec": {"containers": [{"name": "c",
                                                                           "image": "registry.invalid/s:1"}]}}}}])
    rollout_status(namespace, "Deployment", "sched-c")
    api().merge_patch(Ref("Deployment", namespace, "sched-a"), {"spec": {"minReadySeconds": 0}}, manager="test-setup")
    asked = wait_for(lambda: (s := step(namespace, "waves", "restart"))["reason"] == "PlanChanged" and s,
                     timeout=90, what="the step to ask again")
    assert asked["state"] == "AwaitingApproval"
    assert f"Deployment/{namespace}/sched-c is not in the approved plan {digest}" in asked["message"]
    assert restarted(namespace, "sched-b")  # in the approved plan: done
    assert not restarted(namespace, "sched-c")  # not in it: untouched
    again = plan_digest(namespace, "waves", "restart")
    assert again != digest
    assert [c["target"] for c in step(namespace, "waves", "restart")["evidence"]["plan"]["changes"]] == \
        [f"Deployment/{namespace}/sched-c"]
    assert not restarted(namespace, "sched-c")  # still untouched while it waits

    # relctl approve with no --digest prints the whole plan it signs, then signs that digest.
    signed = relctl("approve", "waves", "restart", "-n", namespace, "--as", "alice", "--as-group", APPROVERS)
    assert signed.returncode == 0, signed.stderr
    assert signed.stdout.startswith(f"plan {again}: 1 changes") and f"Deployment/{namespace}/sched-c" in signed.stdout
    assert f"for plan {again}" in signed.stdout
    wait_for(lambda: steps(status(namespace, "waves"))["restart"] == "Succeeded", timeout=90, what="the step")
    assert restarted(namespace, "sched-c")


def test_a_cronjob_changed_after_its_dry_run_is_dry_run_again_and_asks_again(app):
    category = f"pr{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100}, "steps": [
        {"name": "repair", "level": 2, "action": "run-job", "params": {"cronJob": CRON},
         "approval": {"required": True}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(app, incident("ocr", category=category))
    first = dry_run_job(app)
    apply_docs(app, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{first}-report"},
                      "data": {"documents": "42"}}])
    reviewed = plan_digest(app, "ocr", "repair")
    # The CronJob changes after its dry-run: the report approvers read is not what would run.
    kubectl("patch", "cronjob", CRON, "-n", app, "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/jobTemplate/spec/template/spec/containers/0/image",
         "value": "registry.invalid/shop/repair-reprocess-ocr-batch:2.0"}]))
    approve(app, "ocr", "repair", user="alice", digest=reviewed)  # wakes the step: it plans again
    second = dry_run_job(app, other_than=first)
    image = get_json("job", second, "-n", app)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":2.0")
    apply_docs(app, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{second}-report"},
                      "data": {"documents": "4200"}}])
    moved = wait_for(lambda: (d := plan_digest(app, "ocr", "repair")) != reviewed and d, what="a new plan")
    jobs = [j["metadata"]["name"] for j in get_json("jobs", "-n", app)["items"]]
    assert not [j for j in jobs if "-apply-" in j]  # the approval of the old dry-run ran nothing
    assert step(app, "ocr", "repair")["state"] == "AwaitingApproval"

    # relctl approve --digest of the plan read before: refused, and no Approval made.
    count = len(get_json("approvals", "-n", app)["items"])
    refused = relctl("approve", "ocr", "repair", "-n", app, "--digest", reviewed)
    assert refused.returncode == 1 and f"the plan of step repair moved: it is now {moved}" in refused.stderr
    assert len(get_json("approvals", "-n", app)["items"]) == count

    approve(app, "ocr", "repair", user="alice", digest=moved)
    wait_for(lambda: steps(status(app, "ocr"))["repair"] == "Succeeded", timeout=60, what="the real job")
    real = next(j for j in get_json("jobs", "-n", app)["items"] if "-apply-" in j["metadata"]["name"])
    assert real["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0")
