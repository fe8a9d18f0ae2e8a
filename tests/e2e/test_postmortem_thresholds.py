"""The postmortem proposes the threshold change, through the session operator and the real Gitea: an incident
whose Alertmanager signals show one rule that fired late and one that flapped resolves; its postmortem pull
request carries the draft and, in the rules file the namespace's settings name (alertRulesPath), the edit
of those two rules' thresholds, every other line and comment as it was.

Oracles: Gitea's own branch contents, Prometheus' promtool on the proposed file.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import uuid

import pytest

from reliability_center.gateway import Ref

from tests.conftest import ALERT_CATEGORY_PREFIX
from tests.gitea.conftest import create_repo
from tests.support.cluster import ROOT, apply_docs, apply_runbook, get_json, kubectl, repository_secret, wait_for
from tests.support.incidents import create, incident, wait_phase

pytestmark = pytest.mark.gitea

RULES = ROOT / "manifests" / "prometheus" / "detection-rules.yaml"
RULES_PATH = "apps/monitoring/detection-rules.yaml"  # inside the session operator's allow-list (apps/**)


def at(start: datetime.datetime, minutes: float) -> str:
    return (start + datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_postmortem_pull_request_proposes_the_late_and_the_flapping_rules_thresholds(
        kube, namespace, operator, gitea, tmp_path):
    # The CRDs are cluster-wide and sessions of other checkouts may have applied older ones since this session
    # did: this test needs this checkout's (PatchPlan operation alertThreshold, Incident signals' refires).
    for crd in ("reliability.center_patchplans.yaml", "reliability.center_incidents.yaml"):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / crd))
    shipped = RULES.read_text()
    repo = create_repo(gitea, {"README.md": "GitOps repository\n", RULES_PATH: shipped})
    apply_docs(namespace, [
        repository_secret("gitops-credentials", repo.url, username=gitea.user, token=gitea.token),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reliability-center-settings"},
         "data": {"gitopsRepoURL": repo.url, "gitopsProvider": "gitea", "gitopsCredentialsSecret": "gitops-credentials",
                  "alertRulesPath": RULES_PATH}}])
    category = f"{ALERT_CATEGORY_PREFIX}{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"resolveWhenSignalsResolve": True,
                             "steps": [{"name": "blast-radius", "level": 1, "action": "blast-radius"}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), 30, "runbook")

    first = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)

    def signal(name: str, fired: float, refires: int = 0) -> dict:
        return {"source": "alertmanager", "name": name, "time": at(first, fired), "resolved": True,
                "resolvedAt": at(first, 25), "refires": refires, "fingerprint": uuid.uuid4().hex[:16],
                "labels": {"alertname": name}}

    create(namespace, incident("ocr-thresholds", category=category, module="ocr", signals=[
        signal("OcrFailureRateHigh", 0),                  # the first to know
        signal("OcrReviewQueueSaturated", 12),            # 12 minutes later: late
        signal("OcrModelErrors", 1, refires=2)]))         # resolved and fired again twice: flapped
    wait_phase(namespace, "ocr-thresholds", {"Verifying", "Closed"}, 90)

    def pull_request_branch() -> str | None:
        found = kube.get(Ref("PatchPlan", namespace, "ocr-thresholds-postmortem")) or {}
        return ((found.get("status") or {}).get("pullRequest") or {}).get("branch")

    branch = wait_for(pull_request_branch, 90, "the postmortem pull request")

    proposed = repo.file(RULES_PATH, ref=branch)
    changed = [(a, b) for a, b in zip(shipped.splitlines(), proposed.splitlines(), strict=True) if a != b]
    assert [(a.split()[-1], b.split()[-1]) for a, b in changed] == [("0.9", "0.72"), ("3", "3.75")], changed
    assert [a for a, _ in changed][0].lstrip().startswith("expr: max by (namespace, tenant, module) (ocr_review_queue")
    assert "ocr_model_errors_total" in changed[1][1]
    draft = repo.file(f"postmortems/{namespace}/ocr-thresholds.md", ref=branch)
    section = draft.split("## Detection thresholds")[1].split("\n## ")[0]
    assert f"proposed as an edit of `{RULES_PATH}`" in section
    assert "`OcrReviewQueueSaturated`: fired 12m0s after the incident was first known" in section
    assert "`OcrModelErrors`: resolved and fired again 2 times" in section
    if shutil.which("promtool"):  # the proposal is still rules Prometheus loads
        path = tmp_path / "proposed.yaml"
        path.write_text(proposed)
        checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
