"""The paging rules (manifests/prometheus/paging-rules.yaml) and the series they read.

``promtool test rules`` (Debian's prometheus package) runs tests/unit/fixtures/paging-rules.test.yaml
on the file as shipped: each alert fires at its default threshold with its labels and annotations (the
approve command, the pull request URL), and not before. The series come from the Incident and
PatchPlan statuses as the API models write them (``wire()``), which is what the operator's collector reads.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

from reliability_center.api.incident import ApprovalState, Gate, IncidentStatus, PlanState, StepStatus, Times
from reliability_center.intake import metrics as intake_metrics  # noqa: F401  (registers the intake's)
from reliability_center.operator import metrics
from tests.support.cluster import ROOT
from tests.support.paging import PAGING_RULES, paging_rules

PROMTOOL_TESTS = ROOT / "tests" / "unit" / "fixtures" / "paging-rules.test.yaml"
ALERTS = [rule["alert"] for group in paging_rules()["groups"] for rule in group["rules"]]


def test_promtool_passes_every_rule_test_on_the_shipped_file():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (Debian ships promtool in it)"
    checked = subprocess.run([promtool, "check", "rules", str(PAGING_RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", str(PROMTOOL_TESTS)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_shipped_alert_has_a_promtool_test_that_sees_it_fire():
    fired = {case["alertname"] for test in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert fired == set(ALERTS)


def test_the_rules_read_only_metrics_the_operator_exports():
    exported = {family.name + ("_total" if family.type == "counter" else "") for family in REGISTRY.collect()}
    read = set(re.findall(r"reliability_center_\w+", PAGING_RULES.read_text()))
    assert read and read <= exported, read - exported


def wire(status: IncidentStatus) -> dict:
    return {"spec": {"category": "perf", "tenant": "acme", "resolved": bool(status.times.resolved)},
            "status": status.model_dump(by_alias=True, exclude_none=True, mode="json")}


def waiting(name: str = "adjust-flags", approved: bool = False) -> StepStatus:
    return StepStatus(name=name, level=2, action="feature-flags-off", state="AwaitingApproval",
                      approval=ApprovalState(plan_digest="sha256:abc", requested_at="2026-11-28T10:00:00Z",
                                             approved=approved))


def test_a_step_waiting_for_approval_exports_when_it_was_asked_with_its_plan_digest():
    status = IncidentStatus(phase="Mitigated", level=2, steps=[waiting(), waiting("approved-already", approved=True)])
    assert metrics.incident_samples("shop", "lat", wire(status)) == [
        ("reliability_center_approval_waiting_since_timestamp_seconds",
         {"namespace": "shop", "incident": "lat", "step": "adjust-flags", "digest": "sha256:abc"}, 1795860000.0)]


def test_level_3_exports_the_fix_pull_request_url_and_an_expired_approval_its_time():
    expired = StepStatus(name="stop-dunning", level=2, action="feature-flags-off", state="Escalated",
                         reason="ApprovalTimeout", finished_at="2026-11-28T10:00:00Z")
    status = IncidentStatus(phase="Escalated", level=3, steps=[expired], plans=[
        PlanState(name="pm", phase="Proposed", pull_request="https://git/pulls/9", purpose="postmortem"),
        PlanState(name="fix", phase="Proposed", pull_request="https://git/pulls/7")])
    assert metrics.incident_samples("shop", "inv", wire(status)) == [
        ("reliability_center_approval_expired_timestamp_seconds",
         {"namespace": "shop", "incident": "inv", "step": "stop-dunning"}, 1795860000.0),
        ("reliability_center_incident_escalated_info",
         {"namespace": "shop", "incident": "inv", "category": "perf", "tenant": "acme",
          "pull_request": "https://git/pulls/7"}, 1.0)]
    status.plans = []
    assert metrics.incident_samples("shop", "inv", wire(status))[1][1]["pull_request"] == ""


def test_failing_gates_of_a_resolved_incident_export_the_resolve_time():
    status = IncidentStatus(phase="Verifying", level=1, times=Times(resolved="2026-11-28T10:00:00Z"), gates=[
        Gate(name="slo-normal", passed=False), Gate(name="audit-complete", passed=True)])
    assert metrics.incident_samples("shop", "inv", wire(status)) == [
        ("reliability_center_gate_failing_resolved_timestamp_seconds",
         {"namespace": "shop", "incident": "inv", "gate": "slo-normal"}, 1795860000.0)]


def test_a_closed_incident_exports_nothing():
    status = IncidentStatus(phase="Closed", level=3, steps=[waiting()], times=Times(resolved="2026-11-28T10:00:00Z"),
                            gates=[Gate(name="slo-normal", passed=False)])
    assert metrics.incident_samples("shop", "inv", wire(status)) == []


@pytest.mark.parametrize("phase", metrics.MOVING_PLAN_PHASES)
def test_a_moving_patchplan_exports_its_phase(phase):
    body = {"spec": {"incidentRef": "inv"}, "status": {"phase": phase}}
    assert metrics.patchplan_samples("shop", "fix-1", body) == [
        ("reliability_center_patchplan_phase",
         {"namespace": "shop", "patchplan": "fix-1", "incident": "inv", "phase": phase}, 1.0)]


@pytest.mark.parametrize("phase", ["Verified", "Rejected", "RolledBack", "Failed"])
def test_a_patchplan_that_no_longer_moves_exports_nothing(phase):
    assert metrics.patchplan_samples("shop", "fix-1", {"spec": {}, "status": {"phase": phase}}) == []


def test_the_collector_exports_what_the_indexes_hold_now():
    collector = metrics.Paging()
    index = {("shop", "lat"): [metrics.incident_samples("shop", "lat", wire(IncidentStatus(steps=[waiting()])))]}
    collector.indexes["incidents"] = index
    families = {f.name: f for f in collector.collect()}
    [sample] = families["reliability_center_approval_waiting_since_timestamp_seconds"].samples
    assert sample.labels == {"namespace": "shop", "incident": "lat", "step": "adjust-flags", "digest": "sha256:abc"}
    index.clear()  # the incident closed or was deleted: Kopf dropped it from the index
    assert all(not f.samples for f in collector.collect())


def test_for_overrides_change_only_the_named_alerts_durations():
    shipped, short = paging_rules(), paging_rules({"RcStepAwaitingApproval": "3s"})
    rules = lambda doc: {r["alert"]: r for g in doc["groups"] for r in g["rules"]}  # noqa: E731
    assert rules(short)["RcStepAwaitingApproval"] == {**rules(shipped)["RcStepAwaitingApproval"], "for": "3s"}
    assert {k: v for k, v in rules(short).items() if k != "RcStepAwaitingApproval"} == \
        {k: v for k, v in rules(shipped).items() if k != "RcStepAwaitingApproval"}
    with pytest.raises(AssertionError, match="RcTypo"):
        paging_rules({"RcTypo": "1s"})
