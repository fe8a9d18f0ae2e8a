"""Incidents are never stuck: runbooks that change under them, errors that are not conflicts, shadow by namespace."""

from __future__ import annotations

import uuid

import pytest

from tests.support.cluster import apply_docs, get_json, kubectl, runbook_doc, wait_for
from tests.support.incidents import (app_content, approve, changed, create, incident, settle_app, status, steps,
                                     wait_phase)

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]


def runbook(category: str, steps_: list[dict]) -> dict:
    return runbook_doc(category, {"limits": {"maxRunsPerHour": 100, "maxRefires": 100}, "steps": steps_})


def test_a_runbook_edited_while_an_incident_runs_does_not_stick_it(app):
    category = f"e{uuid.uuid4().hex[:8]}"
    flags = {"name": "flags", "level": 1, "action": "feature-flags-off", "params": {"modules": ["billing"],
                                                                                     "flags": ["auto-invoicing"]}}
    later = {"name": "later", "level": 2, "action": "feature-flags-off",
             "params": {"modules": ["billing"], "flags": ["dunning-retries"]}, "approval": {"required": True}}
    apply_docs(None, [runbook(category, [flags, later])])
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(app, incident("pinned", category=category))
    st = wait_phase(app, "pinned", "Mitigated")
    assert steps(st) == {"flags": "Succeeded", "later": "AwaitingApproval"}
    generation = st["runbookGeneration"]
    # The step the incident waits on disappears from the runbook, and the other one changes.
    edited = dict(flags, params={"modules": ["search"]})
    apply_docs(None, [runbook(category, [edited])])
    wait_for(lambda: get_json("runbook", f"rb-{category}")["metadata"]["generation"] > generation, what="the edit")
    approve(app, "pinned", "later")
    wait_for(lambda: steps(status(app, "pinned")).get("later") == "Succeeded", what="the pinned step to run")
    st = status(app, "pinned")
    assert st["runbookGeneration"] == generation and len(st["runbookSpec"]["steps"]) == 2
    assert get_json("configmap", "flags-billing", "-n", app)["data"]["dunning-retries.tenant.acme"] == "false"
    # A new incident follows the runbook as it is now.
    create(app, incident("after-edit", category=category))
    st = wait_phase(app, "after-edit", "Mitigated")
    assert steps(st) == {"flags": "Succeeded"} and st["runbookGeneration"] > generation
    assert get_json("configmap", "flags-search", "-n", app)["data"]["search-suggestions.tenant.acme"] == "false"


def test_an_error_that_is_not_a_conflict_is_written_with_its_next_attempt_and_retried(app):
    """A ResourceQuota that forbids more ConfigMaps stops the snapshot: the incident says so, then recovers."""
    used = len(get_json("configmaps", "-n", app)["items"])
    apply_docs(app, [{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-more-configmaps"},
                      "spec": {"hard": {"count/configmaps": str(used)}}}])
    wait_for(lambda: get_json("resourcequota", "no-more-configmaps", "-n", app).get("status", {}).get("used"),
             what="the quota to count")
    create(app, incident("quota", category="billing", module="billing"))

    def reported():
        st = status(app, "quota")
        return next((c for c in st.get("conditions") or [] if c["type"] == "Reconciling" and c["status"] == "True"),
                    None)

    condition = wait_for(reported, timeout=60, what="the error in the incident's status")
    assert condition["reason"] == "ProgressingWithRetry"
    assert "exceeded quota" in condition["message"] and "next attempt at" in condition["message"]
    assert get_json("configmap", "flags-billing", "-n", app)["data"].get("auto-invoicing.tenant.acme") is None
    kubectl("delete", "resourcequota", "no-more-configmaps", "-n", app)
    st = wait_phase(app, "quota", "Mitigated", timeout=90)  # the backoff's next attempt goes through
    reconciling = {c["type"]: c for c in st["conditions"]}["Reconciling"]
    assert reconciling["status"] == "False"
    assert get_json("configmap", "flags-billing", "-n", app)["data"]["auto-invoicing.tenant.acme"] == "false"


def test_a_namespace_in_shadow_mode_changes_nothing_and_never_shows_mitigated(app):
    kubectl("patch", "configmap", "reliability-center-settings", "-n", app, "--type=merge",
            "-p", '{"data":{"mode":"shadow"}}')
    # Settled first: a Deployment still rolling out gets status and revision updates from its controller
    # (seen on a fresh, loaded cluster), which are not the operator's.
    settle_app(app)
    names = lambda: {(o["kind"], o["metadata"]["name"])  # noqa: E731
                     for o in get_json("configmaps,deployments,networkpolicies", "-n", app)["items"]}
    before, objects = app_content(app), names()
    create(app, incident("bill", category="billing", module="billing"))  # spec.mode is enforce
    st = wait_phase(app, "bill", "Shadowed")
    assert st["mode"] == "shadow" and steps(st)["stop-auto-invoicing"] == "Shadowed"
    assert changed(before, app_content(app)) == set()  # labels, annotations, data and spec as they were
    assert names() == objects  # and no snapshot, guard or policy made
