"""The operator in shadow mode for everything (RC_MODE=shadow): all four seed playbooks change no object.

A team trying the operator on a live cluster turns shadow on for the whole
operator; incidents written with ``mode: enforce`` still only dry-run. The
oracle is the cluster: every object's labels, annotations, data and spec (not its
status, which the app's controllers keep changing while it rolls out), and no
object created.
"""

from __future__ import annotations

import hashlib
import json

from tests.conftest import CACHE, start_operator, stop_operator
from tests.support.cluster import apply_docs, get_json, load_yaml, wait_for
from tests.support.incidents import APPROVERS, approve, create, incident, settle_app, status, steps, wait_phase

KINDS = "configmaps,deployments,cronjobs,jobs,networkpolicies,horizontalpodautoscalers,patchplans,rolebindings"


def content(namespace: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> digest of what a writer of ours could change: labels, annotations, data, spec, subjects."""
    return {(o["kind"], o["metadata"]["name"]): hashlib.sha256(json.dumps(
                [o["metadata"].get("labels"), o["metadata"].get("annotations"), o.get("data"), o.get("spec"),
                 o.get("subjects")],
                sort_keys=True).encode()).hexdigest()
            for o in get_json(KINDS, "-n", namespace)["items"]}


def test_global_shadow_mode_runs_all_four_playbooks_and_changes_no_object(solo_namespace, seed_runbooks):
    ns = solo_namespace
    apply_docs(ns, load_yaml("examples/protected-app/app.yaml"))
    settle_app(ns)  # the controllers' own first writes (revision annotations) come before the baseline
    before = content(ns)
    proc = start_operator(CACHE / "operator-shadow-test.log", {"RC_NAMESPACES": ns, "RC_MODE": "shadow"})
    try:
        cases = {"perf": "search", "cross-tenant": "exports", "ocr": "ocr", "billing": "billing"}
        # cross-tenant's revoke-access runs on the scanner's alert, which names the account it revokes.
        scanner = {"source": "alertmanager", "name": "CrossTenantAccess",
                   "labels": {"tenant": "acme", "module": "exports", "service_account": "exports-acme"}}
        for category, module in cases.items():
            # Approved level 2 steps too: shadow mode dry-runs them as well.
            create(ns, incident(category, category=category, module=module, severity="critical",
                                **({"signals": [scanner]} if category == "cross-tenant" else {})))
        governed = {"perf": "adjust-flags", "cross-tenant": "revoke-access", "billing": "disable-dunning",
                    "ocr": "repair-reprocess-ocr-batch"}
        for category, step in governed.items():
            approve(ns, category, step, user="sam", groups=(APPROVERS, "security-review"))
            wait_for(lambda: steps(status(ns, category))[step] not in ("Pending", "AwaitingApproval"), timeout=90,
                     what=f"the approved {step} to be dry-run")
        for category in cases:
            st = wait_phase(ns, category, "Shadowed", timeout=90)
            assert st["mode"] == "shadow"
            assert not any(e["event"] in ("phase:Mitigated", "phase:Escalated") for e in st["timeline"])
            ran = [s for s in st["steps"] if s["state"] not in ("Skipped", "AwaitingApproval", "Pending")]
            assert ran and all(s["state"] in ("Shadowed", "Escalated") for s in ran), st["steps"]
            assert any(e["event"].endswith(":dry-run") for e in st["timeline"]), category
    finally:
        stop_operator(proc)
    after = content(ns)
    assert after == before  # not one write, not one object made (no snapshot, guard, Job or PatchPlan)
    assert steps(wait_phase(ns, "perf", "Shadowed"))["restart-schedulers"] == "Shadowed"
