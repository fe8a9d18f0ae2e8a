"""PatchPlans never hold a namespace hostage: no finalizer, even while the operator is down.

Kopf's timer used to put a finalizer on every active PatchPlan, so deleting its
namespace hung for good while the operator was down, and a Lease created in a
terminating namespace ended in a traceback and a 60 s wait.
"""

from __future__ import annotations

import signal
import uuid

import yaml

from tests.conftest import CACHE, start_operator, stop_operator
from tests.support.cluster import exists, get_json, kubectl, wait_for

OLD_FINALIZER = "reliability.center/kopf-finalizer"


def plan_doc(name: str, finalizers: list[str] | None = None) -> str:
    meta = {"name": name, **({"finalizers": finalizers} if finalizers else {})}
    return yaml.safe_dump({
        "apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": meta,
        "spec": {"repository": {"url": "http://127.0.0.1:9/nobody/gitops.git", "provider": "git"},
                 "title": "t", "changes": [{"path": "a.yaml", "operation": "createFile", "content": "a: 1\n"}]}})


def test_a_namespace_with_active_patchplans_is_deleted_while_the_operator_is_down(seed_runbooks):
    ns = f"solo-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    log = CACHE / "operator-namespaces-test.log"
    proc = start_operator(log, {"RC_NAMESPACES": ns, "RC_PATCHPLAN_POLL": "1"})
    try:
        kubectl("apply", "-n", ns, "-f", "-", input=plan_doc("active"))
        # The operator works on it (a git error it retries: the plan stays active) ...
        wait_for(lambda: (get_json("patchplan", "active", "-n", ns).get("status") or {}).get("conditions"),
                 timeout=60, what="the operator to work on the plan")
        assert not get_json("patchplan", "active", "-n", ns)["metadata"].get("finalizers")
    finally:
        stop_operator(proc, signal.SIGKILL)
    # ... and with the operator gone, the namespace goes, plan and all.
    kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: not exists("Namespace", None, ns), timeout=90,
             what="the namespace to be deleted")


def test_the_finalizer_of_older_versions_is_dropped(namespace, operator):
    kubectl("apply", "-n", namespace, "-f", "-", input=plan_doc("inherited", [OLD_FINALIZER]))
    wait_for(lambda: not get_json("patchplan", "inherited", "-n", namespace)["metadata"].get("finalizers"),
             timeout=30, what="the old finalizer to be dropped")
    kubectl("delete", "patchplan", "inherited", "-n", namespace, "--timeout=30s")


def test_a_plan_whose_namespace_is_being_deleted_ends_quietly(seed_runbooks):
    ns = f"solo-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    log = CACHE / f"operator-terminating-{ns}.log"
    proc = start_operator(log, {"RC_NAMESPACES": ns, "RC_PATCHPLAN_POLL": "1"})
    try:
        kubectl("apply", "-n", ns, "-f", "-", input=plan_doc("going"))
        wait_for(lambda: (get_json("patchplan", "going", "-n", ns).get("status") or {}).get("conditions"),
                 timeout=60, what="the operator to work on the plan")
        kubectl("delete", "namespace", ns, "--wait=false")
        wait_for(lambda: not exists("Namespace", None, ns), timeout=90,
                 what="the namespace to be deleted")
    finally:
        stop_operator(proc)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


def test_a_plan_deleted_during_a_pass_ends_it_without_an_error(solo_namespace, kube, caplog):
    """The race above, made certain: the pass read the plan, then it was deleted before the status write."""
    from reliability_center.operator.patchplan import reconcile_patchplan

    kubectl("apply", "-n", solo_namespace, "-f", "-", input=plan_doc("gone"))
    read_before = get_json("patchplan", "gone", "-n", solo_namespace)
    kubectl("delete", "patchplan", "gone", "-n", solo_namespace)
    with caplog.at_level("WARNING", logger="reliability_center"):
        assert reconcile_patchplan((solo_namespace, "gone"), read_before, kube) is None
    assert not [r for r in caplog.records if r.levelno >= 30], [r.getMessage() for r in caplog.records]
