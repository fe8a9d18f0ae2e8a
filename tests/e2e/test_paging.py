"""The operator pages people through Alertmanager, with real parts: the session operator (its real
/metrics), a real Prometheus scraping it with the shipped paging rules, a real Alertmanager posting to
a local HTTP receiver standing in for the pager, and the real Gitea for the Level 3 pull request.

The rules are manifests/prometheus/paging-rules.yaml as shipped, but for RcStepAwaitingApproval's
`for:`, 15m → 2s, changed as the chart's pagingRules.for changes it (tests/support/paging.py): the
expressions and annotations paged are the shipped ones. The defaults are promtool-tested
(tests/unit/test_paging_rules.py).

Oracles, none of them the operator's metrics: the Incident's own status (the digest of the plan put to
approval), relctl itself (the paged command line, run as an approver, gets the step approved), the
PatchPlan's pull request as Gitea lists it, and what Alertmanager posted to the receiver.

The chart's opt-in PrometheusRule is the same file (files/paging-rules.yaml links it),
as helm renders it: compared with the plain file, and checked by promtool.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from reliability_center.gateway import Ref
from tests.conftest import METRICS_PORT
from tests.e2e.test_chart import CHART, helm, render
from tests.gitea.conftest import create_repo
from tests.support.cluster import apply_docs, apply_runbook, get_json, repository_secret, wait_for
from tests.support.incidents import APPROVERS, create, incident, status
from tests.support.monitoring import Monitoring
from tests.support.paging import PAGING_RULES, paging_rules
from tests.support.receiver import Receiver

pytestmark = pytest.mark.gitea

RELCTL = str(Path(sys.executable).with_name("relctl"))
PAGE_WITHIN = 60  # seconds: a scrape and an evaluation a second, Alertmanager's group_wait 1 s


@pytest.fixture
def pager(tmp_path: Path, operator):
    """The receiver, and a Prometheus + Alertmanager of this test's own that scrape the session operator
    (with the paging rules) and page the receiver."""
    token_file = tmp_path / "token"
    token_file.write_text(uuid.uuid4().hex + "\n")
    receiver = Receiver()
    monitoring = Monitoring(intake_url=receiver.url, token_file=token_file, directory=tmp_path / "monitoring",
                            targets={"operator": f"127.0.0.1:{METRICS_PORT}"})
    try:
        with monitoring:
            wait_for(lambda: monitoring.query('up{job="operator"} == 1'), 30, "prometheus to scrape the operator")
            monitoring.add_rules("paging", paging_rules({"RcStepAwaitingApproval": "2s"}))
            # The single session operator leads: RcNoLeader has nothing to say.
            assert monitoring.query('reliability_center_leader{job="operator"} == 1')
            yield receiver, monitoring
    finally:
        receiver.close()


def test_a_waiting_level_2_step_and_a_level_3_escalation_page_with_the_approve_command_and_the_pr_url(
        kube, app, gitea, pager):
    receiver, monitoring = pager
    repo = create_repo(gitea, {"README.md": "GitOps repository (paging test)\n"})
    apply_docs(app, [
        repository_secret("gitops-credentials", repo.url, username=gitea.user, token=gitea.token),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reliability-center-settings"},
         "data": {"gitopsRepoURL": repo.url, "gitopsProvider": "gitea",
                  "gitopsCredentialsSecret": "gitops-credentials"}}])
    category = f"p{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
        {"name": "hold-invoicing", "level": 2, "action": "feature-flags-off",
         "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}, "approval": {"required": True}},
        {"name": "fix", "level": 3, "action": "patch-plan", "after": [],  # not behind the approval
         "params": {"title": "[{category}] {incident}: the fix"}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), 30, "runbook")
    name = "billing-stuck"
    create(app, incident(name, category=category, module="billing"))

    # Level 2 left waiting: the page carries the approve command of the plan the Incident shows.
    page = wait_for(lambda: receiver.alerts("RcStepAwaitingApproval", namespace=app, incident=name), PAGE_WITHIN,
                    "the receiver to be paged for the step awaiting approval")
    step = next(s for s in status(app, name)["steps"] if s["name"] == "hold-invoicing")
    assert step["state"] == "AwaitingApproval", step
    digest = step["approval"]["planDigest"]
    [alert] = page
    assert alert["labels"]["step"] == "hold-invoicing" and alert["labels"]["severity"] == "page"
    assert alert["annotations"]["approve"] == f"relctl approve {name} hold-invoicing -n {app} --digest {digest}"
    alert_approve = alert["annotations"]["approve"]

    # Level 3: the page carries the pull request the PatchPlan opened, as Gitea lists it.
    page = wait_for(lambda: receiver.alerts("RcIncidentEscalatedToLevel3", namespace=app, incident=name), PAGE_WITHIN,
                    "the receiver to be paged for the level 3 escalation")
    [plan] = status(app, name)["patchPlans"]
    url = kube.get(Ref("PatchPlan", app, plan))["status"]["pullRequest"]["url"]
    assert url in {p["html_url"] for p in repo.pulls()}
    [alert] = page
    assert alert["labels"]["pull_request"] == alert["annotations"]["pull_request"] == url
    assert url in alert["annotations"]["summary"]
    # The plan, open for review, is among the moving PatchPlans (RcPatchPlanStuck's series).
    proposed = f'reliability_center_patchplan_phase{{namespace="{app}",patchplan="{plan}",phase="Proposed"}} == 1'
    wait_for(lambda: monitoring.query(proposed), 10, "the plan's phase in Prometheus")

    # The paged command line, run as it reads by an approver, approves the step; the page then resolves.
    command = shlex.split(alert_approve)
    assert command[0] == "relctl"
    ran = subprocess.run([RELCTL, *command[1:], "--as", "bob", "--as-group", APPROVERS], capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    wait_for(lambda: (next(s for s in status(app, name)["steps"] if s["name"] == "hold-invoicing")
                      .get("approval") or {}).get("approved"), 60, "the step to count bob's approval")
    wait_for(lambda: receiver.alerts("RcStepAwaitingApproval", "resolved", namespace=app, incident=name), PAGE_WITHIN,
             "the approval page to resolve")


def prometheus_rule(*values: str) -> dict | None:
    return next((d for d in render(*values) if d["kind"] == "PrometheusRule"), None)


def test_the_chart_renders_the_shipped_paging_rules_only_when_asked(tmp_path: Path):
    assert prometheus_rule() is None  # off by default: its CRD is the Prometheus Operator's
    rule = prometheus_rule("--set", "pagingRules.enabled=true", "--set", "pagingRules.labels.release=kps")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(PAGING_RULES.read_text())
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    checked = subprocess.run(["promtool", "check", "rules", str(rendered)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_chart_sets_the_rules_durations_and_refuses_an_unknown_alert():
    rule = prometheus_rule("--set", "pagingRules.enabled=true", "--set", "pagingRules.for.RcStepAwaitingApproval=30m")
    assert rule["spec"] == paging_rules({"RcStepAwaitingApproval": "30m"})
    typo = helm("template", "r", str(CHART), "--set", "pagingRules.enabled=true",
                "--set", "pagingRules.for.RcStepAwaitingAproval=30m", check=False)
    assert typo.returncode != 0 and "pagingRules.for.RcStepAwaitingAproval: no such alert" in typo.stderr
    soon = helm("template", "r", str(CHART), "--set", "pagingRules.enabled=true",
                "--set", "pagingRules.for.RcNoLeader=soon", check=False)
    assert soon.returncode != 0 and "/pagingRules/for/RcNoLeader': 'soon' does not match" in soon.stderr
