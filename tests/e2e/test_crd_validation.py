"""Bad objects are refused by the real apiserver at apply time, with a clear message."""

import pytest
import yaml

from tests.support.cluster import kubectl

API = "reliability.center/v1alpha1"

GOOD_INCIDENT = {"category": "perf", "severity": "high", "tenant": "acme"}
GOOD_STEP = {"name": "flags", "level": 1, "action": "feature-flags-off"}
GOOD_RUNBOOK = {"match": {"category": "perf"}, "steps": [GOOD_STEP]}
GOOD_PLAN = {"repository": {"url": "https://git.example/gitops.git"}, "title": "fix",
             "changes": [{"path": "apps/x.yaml", "operation": "setValue", "yamlPath": "spec.replicas", "value": 2}]}


def obj(kind, spec, name="bad"):
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


CASES = [
    ("incident without tenant", obj("Incident", {"category": "perf", "severity": "high"}),
     'spec.tenant: Required value'),
    ("incident with an unknown severity", obj("Incident", {**GOOD_INCIDENT, "severity": "apocalyptic"}),
     'spec.severity: Unsupported value: "apocalyptic"'),
    ("incident with a tenant that is not a DNS label", obj("Incident", {**GOOD_INCIDENT, "tenant": "Acme Corp"}),
     "spec.tenant: Invalid value"),
    ("incident with an unknown mode", obj("Incident", {**GOOD_INCIDENT, "mode": "yolo"}),
     'spec.mode: Unsupported value: "yolo"'),
    ("incident with a signal of the wrong type", obj("Incident", {**GOOD_INCIDENT, "signals": [
        {"source": "prom", "name": "lat", "value": "very high"}]}),
     "spec.signals[0].value: Invalid value: \"string\": spec.signals[0].value in body must be of type number"),
    ("incident with a huge summary", obj("Incident", {**GOOD_INCIDENT, "summary": "x" * 5000}),
     "spec.summary: Too long: may not be more than 4096"),
    ("runbook with an unknown level", obj("Runbook", {**GOOD_RUNBOOK, "steps": [{**GOOD_STEP, "level": 4}]}),
     "spec.steps[0].level: Unsupported value: 4"),
    ("runbook step without action", obj("Runbook", {**GOOD_RUNBOOK, "steps": [{"name": "x", "level": 1}]}),
     "spec.steps[0].action: Required value"),
    ("runbook with negative limits", obj("Runbook", {**GOOD_RUNBOOK, "limits": {"maxRunsPerHour": -1}}),
     "spec.limits.maxRunsPerHour: Invalid value: -1: spec.limits.maxRunsPerHour in body should be greater than or equal to 1"),
    ("runbook with a malformed timeout", obj("Runbook", {**GOOD_RUNBOOK, "steps": [{**GOOD_STEP, "timeout": "soon"}]}),
     "spec.steps[0].timeout: Invalid value: \"soon\""),
    ("runbook with duplicate step names", obj("Runbook", {**GOOD_RUNBOOK, "steps": [GOOD_STEP, GOOD_STEP]}),
     "step names must be unique within a runbook"),
    ("level 1 step with an approval", obj("Runbook", {**GOOD_RUNBOOK, "steps": [
        {**GOOD_STEP, "approval": {"required": True}}]}),
     "approval applies to level 2 steps only"),
    ("level 2 step with a check", obj("Runbook", {**GOOD_RUNBOOK, "steps": [
        {**GOOD_STEP, "level": 2, "check": {"query": "up", "direction": "decrease", "within": "1m"}}]}),
     "check applies to level 1 steps only"),
    ("step check with an unknown direction", obj("Runbook", {**GOOD_RUNBOOK, "steps": [
        {**GOOD_STEP, "check": {"query": "up", "direction": "sideways", "within": "1m"}}]}),
     'spec.steps[0].check.direction: Unsupported value: "sideways"'),
    ("level 3 step that would act on the cluster", obj("Runbook", {**GOOD_RUNBOOK, "steps": [
        {"name": "x", "level": 3, "action": "feature-flags-off"}]}),
     "a level 3 step may only open a PatchPlan or escalate"),
    ("runbook without steps", obj("Runbook", {"match": {"category": "perf"}, "steps": []}),
     "spec.steps: Invalid value: 0: spec.steps in body should have at least 1 items"),
    ("patchplan with path traversal", obj("PatchPlan", {**GOOD_PLAN, "changes": [
        {"path": "apps/../../etc/passwd", "operation": "createFile", "content": "x"}]}),
     "path must not contain a '..' segment"),
    ("patchplan with an absolute path", obj("PatchPlan", {**GOOD_PLAN, "changes": [
        {"path": "/etc/passwd", "operation": "createFile", "content": "x"}]}),
     'spec.changes[0].path: Invalid value: "/etc/passwd"'),
    ("patchplan with an unknown provider", obj("PatchPlan", {**GOOD_PLAN, "repository": {
        "url": "https://x", "provider": "svn"}}),
     'spec.repository.provider: Unsupported value: "svn"'),
    ("patchplan setValue without yamlPath", obj("PatchPlan", {**GOOD_PLAN, "changes": [
        {"path": "a.yaml", "operation": "setValue", "value": 1}]}),
     "setValue needs yamlPath"),
    ("patchplan without changes", obj("PatchPlan", {**GOOD_PLAN, "changes": []}),
     "spec.changes: Invalid value: 0: spec.changes in body should have at least 1 items"),
    ("patchplan on an Argo CD override file", obj("PatchPlan", {**GOOD_PLAN, "changes": [
        {"path": ".argocd-source-web.yaml", "operation": "createFile", "content": "x"}]}),
     "path must not name a hidden file or directory"),
    ("patchplan on a nested hidden file", obj("PatchPlan", {**GOOD_PLAN, "changes": [
        {"path": "apps/web/.argocd-source-web.yaml", "operation": "createFile", "content": "x"}]}),
     "Argo CD's .argocd-source-<app>.yaml overrides"),
]


@pytest.mark.parametrize("doc, expected", [(d, e) for _, d, e in CASES], ids=[c[0] for c in CASES])
def test_the_apiserver_rejects_the_object_with_a_clear_message(namespace, crds, doc, expected):
    scope = [] if doc["kind"] == "Runbook" else ["-n", namespace]
    # A server-side dry run: the apiserver validates in full, and an object it wrongly accepts is
    # not stored (a stray Runbook would compete with the seed ones in later tests).
    result = kubectl("apply", "--dry-run=server", *scope, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert result.returncode != 0, f"accepted: {doc}"
    assert expected in result.stderr, result.stderr


def test_valid_objects_of_each_kind_are_accepted(namespace, crds):
    for kind, spec in (("Incident", GOOD_INCIDENT), ("PatchPlan", GOOD_PLAN)):
        kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-", input=yaml.safe_dump(obj(kind, spec, "ok")))
    kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(obj("Runbook", GOOD_RUNBOOK, "ok")))


def test_an_incident_tenant_cannot_be_changed_afterwards(namespace, crds):
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj("Incident", GOOD_INCIDENT, "fixed")))
    result = kubectl("patch", "incident", "fixed", "-n", namespace, "--type=merge", "-p",
                     '{"spec":{"tenant":"globex"}}', check=False)
    assert result.returncode != 0 and "tenant is immutable" in result.stderr
