"""The postmortem PatchPlan carries the threshold edits of the rules that fired late or flapped, when the
operator's settings name the rules file (alertRulesPath). Oracles: the PatchPlan CRD's own model, and
the edit applied to the shipped rules file (gitops.edits, the function a PatchPlan's changes go through)."""

from __future__ import annotations

import hashlib
import pathlib

from reliability_center.api.patchplan import PatchPlan
from reliability_center.gitops.edits import apply_change, threshold_of
from reliability_center.operator.closing import postmortem_plan

RULES = pathlib.Path(__file__).resolve().parents[2] / "manifests" / "prometheus" / "detection-rules.yaml"
REPO = {"url": "https://git.example/ops/gitops.git", "provider": "gitea"}


def incident() -> dict:
    def signal(name: str, time: str, refires: int = 0) -> dict:
        return {"source": "alertmanager", "name": name, "time": time, "refires": refires,
                "fingerprint": hashlib.sha256(name.encode()).hexdigest()[:16], "resolved": True}

    return {"metadata": {"name": "ocr-acme-1", "namespace": "shop", "uid": "u1"},
            "spec": {"category": "ocr", "severity": "high", "tenant": "acme", "module": "ocr", "signals": [
                signal("OcrFailureRateHigh", "2026-03-01T10:00:00Z"),
                signal("OcrReviewQueueSaturated", "2026-03-01T10:12:00Z"),        # 12 min after: late
                signal("OcrModelErrors", "2026-03-01T10:00:30Z", refires=3)]},  # flapped
            "status": {"times": {"detected": "2026-03-01T10:00:02Z"}}}


def test_with_a_rules_file_set_the_postmortem_proposes_each_rules_edit_in_the_same_pull_request():
    plan = postmortem_plan(incident(), {"alertRulesPath": "monitoring/detection-rules.yaml"}, REPO, [], [])
    PatchPlan.model_validate(plan)
    draft, *edits = plan["spec"]["changes"]
    assert draft["path"] == "postmortems/shop/ocr-acme-1.md"
    assert [(e["path"], e["operation"], e["value"]) for e in edits] == [
        ("monitoring/detection-rules.yaml", "alertThreshold", {"alert": "OcrModelErrors", "factor": 1.25}),
        ("monitoring/detection-rules.yaml", "alertThreshold", {"alert": "OcrReviewQueueSaturated", "factor": 0.8})]
    assert "proposed as an edit of `monitoring/detection-rules.yaml`" in draft["content"]
    assert "revert that file in the pull request to drop them" in plan["spec"]["description"]
    # On the shipped rules: the two thresholds move, in the directions said, and nothing else changes.
    text = RULES.read_text()
    for edit in edits:
        text = apply_change(edit["path"], text, edit["operation"], value=edit["value"])
    changed = {(a, b) for a, b in zip(RULES.read_text().splitlines(), text.splitlines(), strict=True) if a != b}
    assert {(threshold_of(a.split("expr: ", 1)[1]), threshold_of(b.split("expr: ", 1)[1])) for a, b in changed} == {
        ((">", 3.0), (">", 3.75)), ((">", 0.9), (">", 0.72))}


def test_without_a_rules_file_the_postmortem_is_the_draft_alone_and_says_why():
    plan = postmortem_plan(incident(), {}, REPO, [], [])
    PatchPlan.model_validate(plan)
    (draft,) = plan["spec"]["changes"]
    assert "not proposed as an edit: the operator's settings name no rules file (alertRulesPath)" in draft["content"]


def test_a_rules_path_the_patchplan_would_refuse_leaves_the_postmortem_whole_and_says_why():
    for bad in ("../etc/rules.yaml", ".github/rules.yaml", "/abs/rules.yaml", "a//b.yaml"):
        plan = postmortem_plan(incident(), {"alertRulesPath": bad}, REPO, [], [])
        PatchPlan.model_validate(plan)
        (draft,) = plan["spec"]["changes"]
        assert f"the settings' alertRulesPath {bad!r} is not a file path in the repository" in draft["content"], bad


def test_an_apiserver_whose_crd_predates_alert_threshold_gets_the_draft_alone_saying_why():
    """Helm never upgrades crds/: a PatchPlan CRD without alertThreshold must not keep the postmortem from going."""
    from reliability_center.gateway.kube import Invalid
    from reliability_center.operator.closing import propose_postmortem

    class OldCRD:
        def __init__(self):
            self.made = []

        def propose(self, write, plan, *, action):
            if any(c["operation"] == "alertThreshold" for c in plan["spec"]["changes"]):
                raise Invalid('PatchPlan "x" is invalid: spec.changes[1].operation: Unsupported value: '
                              '"alertThreshold"')
            PatchPlan.model_validate(plan)
            self.made.append(plan)

    gateway, settings = OldCRD(), {"gitopsRepoURL": REPO["url"], "gitopsProvider": "gitea",
                                   "alertRulesPath": "monitoring/detection-rules.yaml"}
    assert propose_postmortem(gateway, None, incident(), settings, [], []) == ""
    (plan,) = gateway.made
    (draft,) = plan["spec"]["changes"]
    assert "not proposed as an edit: the apiserver refused them" in draft["content"]
    assert "Unsupported value" in draft["content"] and "are the CRDs older than the operator?" in draft["content"]
