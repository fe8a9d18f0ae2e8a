"""The dry-run of the inverses at the resolve decides on an answer, not on an apiserver that failed to give one.

The failure is the real apiserver's own: a validating webhook that only dry-run requests in this
test's namespace reach (a ``matchConditions`` on ``request.dryRun``), at an address where nothing
listens, with ``failurePolicy: Fail``: each dry-run gets a 500 ("failed calling webhook"), the real
restore is admitted as usual. A 500 says nothing about whether the inverses apply.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.cluster import apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import create, incident, resolve, status, wait_phase

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

FLAG = "auto-invoicing.tenant.acme"


def condition(namespace: str, name: str, type_: str) -> dict:
    return next((c for c in status(namespace, name).get("conditions") or [] if c["type"] == type_), {})


def failing_dry_runs(namespace: str) -> str:
    """A webhook that fails every dry-run UPDATE of a ConfigMap in ``namespace``; returns its name."""
    name = f"rc-test-dry-runs-{namespace}"
    body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{"name": "dry-runs.test.reliability.center", "admissionReviewVersions": ["v1"],
                          "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 2,
                          "clientConfig": {"url": "https://127.0.0.1:9/nothing-listens"},
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                                     "resources": ["configmaps"], "scope": "Namespaced"}],
                          "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                          "matchConditions": [{"name": "dry-runs-only",
                                               "expression": "has(request.dryRun) && request.dryRun"}]}]}
    kubectl("create", "-f", "-", input=json.dumps(body))
    return name


def test_a_dry_run_the_apiserver_failed_to_answer_is_tried_again_and_the_restore_waits_for_it(app):
    category = f"rr{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [{"name": "stop-invoicing", "level": 1, "action": "feature-flags-off",
                                        "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    create(app, incident("bill", category=category))
    wait_phase(app, "bill", "Mitigated")
    assert condition(app, "bill", "RollbackTested")["status"] == "True"

    webhook = failing_dry_runs(app)
    try:
        # The premise: the apiserver itself fails a dry-run here with a 500, and admits a real write.
        probe = kubectl("label", "configmap", "flags-billing", "-n", app, "probe=1", "--dry-run=server", check=False)
        assert probe.returncode != 0 and "failed calling webhook" in probe.stderr, probe.stderr
        resolve(app, "bill")
        # The runner retries the turn with backoff, and after a few attempts says why on the incident.
        reconciling = wait_for(lambda: (c := condition(app, "bill", "Reconciling")).get("status") == "True" and c,
                               timeout=60, what="the retried rehearsal to be reported")
        assert "failed calling webhook" in reconciling["message"], reconciling
        st = status(app, "bill")
        assert st["phase"] == "Mitigated", st["phase"]  # nothing restored before the inverses were dry-run
        assert get_json("configmap", "flags-billing", "-n", app)["data"][FLAG] == "false"
        assert condition(app, "bill", "RollbackTested")["status"] == "True"  # not turned into a refusal
    finally:
        kubectl("delete", "validatingwebhookconfiguration", webhook, "--ignore-not-found")

    st = wait_phase(app, "bill", {"Verifying", "Closed"}, timeout=60)
    tested = next(c for c in st["conditions"] if c["type"] == "RollbackTested")
    assert (tested["status"], tested["reason"]) == ("True", "DryRunApplies"), tested
    assert FLAG not in get_json("configmap", "flags-billing", "-n", app)["data"]
    gate = wait_for(lambda: next((g for g in status(app, "bill").get("gates") or []
                                  if g["name"] == "rollback-tested"), None), what="the rollback-tested gate")
    assert gate["passed"], gate
