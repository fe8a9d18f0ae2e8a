"""The whole path with real parts: an exporter's value crosses a Prometheus rule, Alertmanager posts
to the operator's intake, the Incident appears and mitigates; its Level 3 fix is proposed in Gitea,
merged by a reviewer and verified; the value goes back, the alert resolves, the runbook resolves the
incident, the SLO gate holds, the postmortem pull request is merged: the Incident is Closed.

Oracles: the cluster's objects (kubectl), Gitea's own branches and files, Prometheus' own answer.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ALERT_CATEGORY_PREFIX
from tests.gitea.conftest import create_repo
from tests.support.cluster import apply_docs, apply_runbook, get_json, repository_secret, wait_for
from tests.support.incidents import merge_plan, settle_app

pytestmark = pytest.mark.gitea

RELCTL = str(Path(sys.executable).with_name("relctl"))


def incidents(namespace: str) -> list[dict[str, Any]]:
    return get_json("incidents", "-n", namespace)["items"]


def phase_of(namespace: str, name: str) -> str | None:
    return (get_json("incident", name, "-n", namespace).get("status") or {}).get("phase")


def test_an_alert_opens_an_incident_that_mitigates_and_closes_once_its_five_gates_pass(
        kube, app, operator, monitoring, gitea):
    settle_app(app)
    repo = create_repo(gitea, {"README.md": "GitOps repository (close-loop test)\n"})
    apply_docs(app, [
        repository_secret("gitops-credentials", repo.url, username=gitea.user, token=gitea.token),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reliability-center-settings"},
         "data": {"gitopsRepoURL": repo.url, "gitopsProvider": "gitea",
                  "gitopsCredentialsSecret": "gitops-credentials"}}])
    category = f"{ALERT_CATEGORY_PREFIX}{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"resolveWhenSignalsResolve": True,
                                "slo": {"query": 'max(rc_test_error_ratio{namespace="{namespace}",tenant="{tenant}"})',
                                        "threshold": 0.5, "for": "5s"},
                                "postmortem": ["Review the error-ratio alert threshold"],
                                "steps": [
                                    {"name": "stop-invoicing", "level": 1, "action": "feature-flags-off",
                                     "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}},
                                    {"name": "fix", "level": 3, "action": "patch-plan",
                                     "params": {"title": "[{category}] {incident}: the fix"}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), 30, "runbook")
    series = {"namespace": app, "tenant": "acme", "module": "billing", "category": category}
    monitoring.add_rule(f"ErrorRatioHigh{category.replace('-', '')}",
                        f'rc_test_error_ratio{{namespace="{app}"}} > 0.5',
                        labels={"severity": "critical"}, annotations={"summary": "billing error ratio high"})

    # 1. The value crosses the threshold: Prometheus fires, Alertmanager posts, the Incident appears.
    monitoring.exporter.set(0.9, **series)
    found = wait_for(lambda: incidents(app), 60, "the Incident the alert opens")
    assert len(found) == 1, [i["metadata"]["name"] for i in found]
    name = found[0]["metadata"]["name"]
    spec = found[0]["spec"]
    assert (spec["category"], spec["tenant"], spec["module"], spec["severity"]) == (category, "acme", "billing",
                                                                                  "critical")
    assert [s["source"] for s in spec["signals"]] == ["alertmanager"] and not spec["signals"][0]["resolved"]

    # 2. Level 1 acts; Level 3 proposes the fix: the incident is Escalated until the fix is verified.
    wait_for(lambda: phase_of(app, name) == "Escalated", 60, "the incident to escalate to its fix")
    assert get_json("configmap", "flags-billing", "-n", app)["data"]["auto-invoicing.tenant.acme"] == "false"
    merge_plan(kube, repo, app, f"{name}-fix")
    st = wait_for(lambda: (s := get_json("incident", name, "-n", app)["status"])["phase"] == "Mitigated" and s,
                  60, "the verified fix to mitigate the incident")
    assert {"patchplan:Merged", "patchplan:Verified"} <= {e["event"] for e in st["timeline"]}
    assert next(c for c in st["conditions"] if c["type"] == "FixDeployed")["status"] == "True"

    # 3. The value goes back: the alert resolves, the runbook resolves the incident, Level 1 is restored.
    monitoring.exporter.set(0.1, **series)
    wait_for(lambda: phase_of(app, name) == "Verifying", 60, "the resolved alert to resolve the incident")
    body = get_json("incident", name, "-n", app, "--show-managed-fields")
    assert body["spec"]["resolved"] is True and body["spec"]["signals"][0]["resolved"] is True
    assert any(f["manager"] == "reliability-center" and "f:resolved" in f.get("fieldsV1", {}).get("f:spec", {})
               for f in body["metadata"]["managedFields"])
    assert "auto-invoicing.tenant.acme" not in get_json("configmap", "flags-billing", "-n", app)["data"]

    # 4. The postmortem is proposed in Gitea; the reviewer merges it; every gate passes: Closed.
    merge_plan(kube, repo, app, f"{name}-postmortem")
    st = wait_for(lambda: (s := get_json("incident", name, "-n", app)["status"])["phase"] == "Closed" and s,
                  90, "the incident to close")
    gates = {g["name"]: g for g in st["gates"]}
    assert all(g["passed"] for g in gates.values()) and len(gates) == 5, gates
    assert gates["slo-normal"]["reason"] == "SLOMet" and "max_over_time" in gates["slo-normal"]["evidence"]
    assert gates["rollback-tested"]["evidence"].count("Verified") == 1
    assert st["times"]["closed"] >= st["times"]["resolved"] >= st["times"]["mitigated"]
    # Each verdict change is in the timeline: the postmortem gate failed until the reviewer merged.
    verdicts = [e["message"].split(":")[0] for e in st["timeline"] if e["event"] == "gate:postmortem-shared"]
    assert verdicts[0].startswith("failing (Postmortem") and verdicts[-1] == "passed (PostmortemMerged)", verdicts
    # Prometheus' own answer agrees with the gate: the ratio has been under 0.5 for the last 5 s.
    assert all(float(r["value"][1]) < 0.5 for r in monitoring.query(
        f'max_over_time(max(rc_test_error_ratio{{namespace="{app}",tenant="acme"}})[5s:])'))
    postmortem = repo.file(f"postmortems/{app}/{name}.md")
    assert name in postmortem and "- [ ] Review the error-ratio alert threshold" in postmortem
    shown = subprocess.run([RELCTL, "gates", name, "-n", app], capture_output=True, text=True, check=True).stdout
    assert "closed at" in shown
