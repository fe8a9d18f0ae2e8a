"""The pull request body carries everything a reviewer needs, bounded."""

from __future__ import annotations

from reliability_center.api.patchplan import PatchPlan
from reliability_center.gitops import prbody

PLAN = PatchPlan.model_validate({
    "metadata": {"name": "fix-invoices", "namespace": "billing", "uid": "u-123"},
    "spec": {"repository": {"url": "https://gitea.example/acme/gitops.git", "baseBranch": "main"},
             "title": "Correct invoice batch 42", "description": "Batch 42 used the wrong tax rate.",
             "incidentRef": "inc-7",
             "changes": [{"path": "tenants/acme/billing.yaml", "operation": "setValue", "yamlPath": "tax.rate",
                          "value": 0.2}]},
})

INCIDENT = {
    "metadata": {"name": "inc-7"},
    "spec": {"summary": "Invoices | wrong tax", "category": "billing", "severity": "high", "tenant": "acme"},
    "status": {"phase": "Escalated", "traceId": "trace-abc",
               "timeline": [{"time": "2030-01-01T00:00:00Z", "event": "detected", "message": "alert fired"},
                            {"time": "2030-01-01T00:01:00Z", "event": "phase:Mitigating"}],
               "snapshots": ["snap-1"], "steps": [{"name": "s", "snapshots": ["snap-2"]}]},
}

DIFF = "--- a/tenants/acme/billing.yaml\n+++ b/tenants/acme/billing.yaml\n@@ -1 +1 @@\n-  rate: 0.1\n+  rate: 0.2\n"


def test_body_has_every_section():
    body = prbody.render(PLAN, DIFF, "b" * 40, incident=INCIDENT,
                         events=[("2030-01-01T00:02:00Z", "PullRequestOpened", "branch rc/x")])
    assert body.startswith("<!-- reliability-center patchplan=billing/fix-invoices uid=u-123 -->")
    for section in ("## Incident", "## Why", "## Timeline so far", "## Snapshots", "## Changes", "## Rollback",
                    "## Post-repair checklist"):
        assert section in body
    assert "Invoices \\| wrong tax" in body  # table cells are escaped
    assert "trace-abc" in body and "| acme |" in body
    assert body.index("alert fired") < body.index("PullRequestOpened")  # timeline in time order
    assert "`snap-1`" in body and "`snap-2`" in body
    assert "```diff\n" + DIFF.rstrip("\n") + "\n```" in body
    assert "relctl rollback billing/fix-invoices" in body and "git revert -m 1" in body
    assert body.count("- [ ] ") == len(prbody.CHECKLIST)
    assert "Built on `bbbbbbbbbbbb` of `main`" in body


def test_without_incident():
    body = prbody.render(PLAN.model_copy(update={"spec": PLAN.spec.model_copy(update={"incident_ref": None})}),
                         DIFF, "b" * 40)
    assert "No incident: this PatchPlan was created directly." in body
    assert "None taken" in body


def test_backticks_in_the_diff_cannot_close_the_fence():
    diff = "+ text: ```` not a fence\n"
    body = prbody.render(PLAN, diff, "b" * 40)
    assert "`````diff\n" in body


def test_huge_diff_is_truncated_under_the_forge_limit():
    body = prbody.render(PLAN, "+x\n" * 100000, "b" * 40, incident=INCIDENT)
    assert len(body) <= prbody.MAX_BODY
    assert "diff truncated" in body and "## Post-repair checklist" in body


def test_revert_body():
    body = prbody.revert_body(PLAN, 12, "c" * 40, DIFF)
    assert "reverts merge commit `" + "c" * 40 + "` (pull request #12)" in body
    assert "Merging this pull request is the rollback" in body
