"""After mitigation: approvals, resolution and restore, shadow mode, level 3 proposals."""

from __future__ import annotations

import pytest

from tests.support.audit import AuditLog
from tests.support.cluster import get_json, kubectl, wait_for
from tests.support.incidents import (APPROVERS, app_content, approval_schema_current, approve, changed, create,
                                     incident, settle_app, status, steps, wait_phase)

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]


def relctl(*args: str) -> str:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "from reliability_center.cli import main; main()", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cm(namespace: str, name: str) -> dict[str, str]:
    return get_json("configmap", name, "-n", namespace)["data"]


def test_resolution_restores_level_1_changes_from_their_snapshots(app):
    settle_app(app)
    before = app_content(app)
    create(app, incident("bill", category="billing", module="billing"))
    wait_phase(app, "bill", "Mitigated")
    assert cm(app, "flags-billing")["auto-invoicing.tenant.acme"] == "false"
    relctl("resolve", "bill", "-n", app)
    st = wait_phase(app, "bill", "Verifying")
    assert steps(st)["stop-auto-invoicing"] == "Restored"
    assert changed(before, app_content(app)) == set()  # every key we added is gone again
    assert any(e["event"] == "restore:feature-flags-off:restored" for e in st["timeline"])
    assert st["times"]["resolved"]


def test_restore_does_not_clobber_a_value_someone_changed_since(app):
    create(app, incident("bill", category="billing", module="billing"))
    wait_phase(app, "bill", "Mitigated")
    # A human decides auto-dunning stays off for acme, after the operator turned it off.
    kubectl("patch", "configmap", "flags-billing", "-n", app, "--type=merge",
            "-p", '{"data":{"auto-dunning.tenant.acme":"off-by-oncall"}}')
    relctl("resolve", "bill", "-n", app)
    st = wait_phase(app, "bill", "Verifying")
    data = cm(app, "flags-billing")
    assert data["auto-dunning.tenant.acme"] == "off-by-oncall"  # not clobbered
    assert "auto-invoicing.tenant.acme" not in data  # ours, restored
    step = next(s for s in st["steps"] if s["name"] == "stop-auto-invoicing")
    assert step["reason"] == "RestoreConflict" and "auto-dunning.tenant.acme" in step["message"]
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["RestoreConflicts"]["status"] == "True"


def test_shadow_mode_changes_no_object_and_records_what_it_would_do(app):
    # The oracles are the apiserver's audit log (not one write request of the operator's but its incident's
    # own and its Events) and the app's content; not resourceVersions, which the controller-manager's status
    # writes to Deployments still settling move (seen in CI under load).
    settle_app(app)
    before = app_content(app)
    audit = AuditLog()
    start = audit.position()
    create(app, incident("xt", category="cross-tenant", module="exports", mode="shadow"))
    st = wait_phase(app, "xt", "Shadowed")  # never "Mitigated": nothing was changed
    writes = [f"{w.verb} {w.target} {w.code}" for w in audit.writes(start, namespace=app, operator=True)
              if w.resource not in ("incidents", "events")]
    assert writes == []  # nothing written, nothing created (no snapshot, no guard state), not even refused
    assert changed(before, app_content(app)) == set()
    assert not any(e["event"] == "phase:Mitigated" for e in st["timeline"])
    assert steps(st)["block-feature"] == "Shadowed" and steps(st)["isolate-tenant"] == "Shadowed"
    dry = [e for e in st["timeline"] if e["event"].endswith(":dry-run")]
    assert {e["target"].split("/")[-1] for e in dry} >= {"flags-exports", "tenant-acme", "rc-isolate-acme"}
    assert not st.get("snapshots")
    assert not [c for c in get_json("configmaps", "-n", app)["items"] if c["metadata"]["name"].startswith("rc-")]


def test_a_level_2_step_runs_once_approved(app):
    create(app, incident("bill", category="billing", module="billing"))
    st = wait_phase(app, "bill", "Mitigated")
    assert steps(st)["disable-dunning"] == "AwaitingApproval"
    assert {c["type"]: c["status"] for c in st["conditions"]}["AwaitingApproval"] == "True"
    approval_schema_current()
    relctl("approve", "bill", "disable-dunning", "-n", app, "--as", "alice", "--as-group", APPROVERS)
    wait_for(lambda: steps(status(app, "bill"))["disable-dunning"] == "Succeeded", what="the approved step")
    assert cm(app, "flags-billing")["dunning-retries.tenant.acme"] == "false"


def test_approving_an_unknown_step_is_refused(app):
    import subprocess
    import sys

    create(app, incident("bill", category="billing", module="billing"))
    wait_phase(app, "bill", "Mitigated")
    result = subprocess.run([sys.executable, "-c", "from reliability_center.cli import main; main()",
                             "approve", "bill", "no-such-step", "-n", app], capture_output=True, text=True)
    assert result.returncode != 0 and "has no step 'no-such-step'" in result.stderr


def test_level_3_without_a_gitops_repository_escalates_visibly(app):
    create(app, incident("bill", category="billing", module="billing"))
    approve(app, "bill", "disable-dunning")
    st = wait_phase(app, "bill", "Escalated")
    step = next(s for s in st["steps"] if s["name"] == "patch-plan")
    assert step["state"] == "Escalated" and step["reason"] == "NoGitOpsRepository"
    assert st["times"]["escalated"]


def test_level_3_proposes_a_patchplan_owned_by_the_incident(app):
    kubectl("patch", "configmap", "reliability-center-settings", "-n", app, "--type=merge",
            "-p", '{"data":{"gitopsRepoURL":"http://127.0.0.1:9/nowhere.git","gitopsProvider":"git"}}')
    create(app, incident("bill", category="billing", module="billing"))
    approve(app, "bill", "disable-dunning")
    st = wait_phase(app, "bill", "Escalated")
    assert st["patchPlans"] == ["bill-patch-plan"]
    plan = get_json("patchplan", "bill-patch-plan", "-n", app)
    assert plan["metadata"]["ownerReferences"][0]["kind"] == "Incident"
    assert plan["spec"]["incidentRef"] == "bill"
    assert plan["spec"]["title"] == "[billing] bill: billing/accounting correction"
    # The declared fix (the Git-declared flag off, under the default apps/<namespace> layout), and the record.
    assert [(c["path"], c.get("yamlPath"), c.get("value")) for c in plan["spec"]["changes"]] == [
        (f"apps/{app}/configmap-flags-billing.yaml", "data.auto-dunning", "false"), (f"incidents/{app}/bill.md", None, None)]


@pytest.mark.session_end
def test_an_approved_level_2_step_runs_when_its_window_opens(window_incident):
    """Set up when the e2e session began (tests/e2e/conftest.py), judged last: the wait ran beside the rest."""
    import datetime

    app, opens, waiting = window_incident
    assert waiting["state"] == "AwaitingApproval" and waiting["reason"] == "OutsideWindow", waiting
    # Nothing happens until the window opens; then the incident's own wake-up (a requeue, no scan) runs it.
    st = wait_for(lambda: (s := status(app, "win")) and steps(s)["later"] == "Succeeded" and s, timeout=120,
                  interval=0.5, what="the step to run once its window opened")
    ran = next(e for e in st["timeline"] if e["event"] == "feature-flags-off:applied")
    assert datetime.datetime.fromisoformat(ran["time"].replace("Z", "+00:00")) >= opens
    assert cm(app, "flags-billing")["auto-dunning.tenant.acme"] == "false"
