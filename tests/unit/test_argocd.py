"""gitops/argocd.py: which Application manages an object, and whether a Level 1 change on it holds.

The tracking annotations below are the ones Argo CD v3.2.11 wrote on the local cluster
(tests/e2e/test_argocd_selfheal.py runs the same check against the real controller).
"""

from __future__ import annotations

from typing import Any

from reliability_center.gateway.kube import Ref
from reliability_center.gitops.argocd import check, hold_problem, managing_application, release_ops


def configmap(tracking: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "flags-search", "namespace": "shop", "labels": labels or {}}
    if tracking:
        meta["annotations"] = {"argocd.argoproj.io/tracking-id": tracking}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def application(self_heal: bool = True, ignore: list[dict[str, Any]] | None = None,
                options: list[str] | None = None, automated: dict[str, Any] | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = {"automated": automated if automated is not None else {"selfHeal": self_heal}}
    if options is not None:
        policy["syncOptions"] = options
    return {"metadata": {"name": "shop", "namespace": "argocd"},
            "spec": {"syncPolicy": policy, **({"ignoreDifferences": ignore} if ignore is not None else {})}}


HOLDS = dict(ignore=[{"kind": "ConfigMap", "managedFieldsManagers": ["reliability-center"]}],
             options=["CreateNamespace=true", "RespectIgnoreDifferences=true"])


def test_the_tracking_annotation_names_the_application():
    assert managing_application(configmap("shop:/ConfigMap:shop/flags-search"), "argocd") == ("argocd", "shop")
    # An Application outside Argo CD's namespace is tracked as <namespace>_<name>.
    assert managing_application(configmap("team-a_shop:/ConfigMap:shop/flags-search"), "argocd") == \
        ("team-a", "shop")


def test_an_annotation_copied_from_another_object_names_no_application():
    assert managing_application(configmap("shop:/ConfigMap:shop/flags-billing"), "argocd") is None
    assert managing_application(configmap("shop:apps/Deployment:shop/flags-search"), "argocd") is None


def test_label_tracking_and_no_tracking():
    assert managing_application(configmap(labels={"app.kubernetes.io/instance": "shop"}), "argocd") == \
        ("argocd", "shop")
    assert managing_application(configmap(), "argocd") is None


def test_self_heal_without_the_mechanism_is_reported_with_what_to_add():
    problem = hold_problem(application(), configmap())
    assert problem is not None
    assert "argocd/shop" in problem and "self-heal reverts it" in problem
    assert "ignoreDifferences [{kind: ConfigMap, managedFieldsManagers: [reliability-center]}]" in problem
    assert "RespectIgnoreDifferences=true" in problem


def test_both_halves_are_needed():
    ignore_only = hold_problem(application(ignore=HOLDS["ignore"]), configmap())
    assert ignore_only is not None and "RespectIgnoreDifferences" in ignore_only and "ignoreDifferences [" not in \
        ignore_only
    option_only = hold_problem(application(options=HOLDS["options"]), configmap())
    assert option_only is not None and "ignoreDifferences [" in option_only
    assert hold_problem(application(**HOLDS), configmap()) is None


def test_a_rule_for_another_kind_group_object_or_manager_does_not_count():
    for rule in ({"kind": "Deployment", "group": "apps", "managedFieldsManagers": ["reliability-center"]},
                 {"kind": "ConfigMap", "group": "apps", "managedFieldsManagers": ["reliability-center"]},
                 {"kind": "ConfigMap", "name": "flags-billing", "managedFieldsManagers": ["reliability-center"]},
                 {"kind": "ConfigMap", "managedFieldsManagers": ["kube-controller-manager"]},
                 {"kind": "ConfigMap", "jsonPointers": ["/data"]}):
        assert hold_problem(application(ignore=[rule], options=HOLDS["options"]), configmap()) is not None, rule
    named = {"kind": "ConfigMap", "name": "flags-search", "namespace": "shop",
             "managedFieldsManagers": ["reliability-center"]}
    assert hold_problem(application(ignore=[named], options=HOLDS["options"]), configmap()) is None


def test_automated_without_self_heal_still_reverts_at_the_next_commit_and_manual_sync_does_not():
    problem = hold_problem(application(self_heal=False), configmap())
    assert problem is not None and "next commit" in problem
    assert hold_problem({"metadata": {"name": "shop", "namespace": "argocd"}, "spec": {}}, configmap()) is None
    assert hold_problem(application(automated={"enabled": False, "selfHeal": True}), configmap()) is None


class Reader:
    def __init__(self, objects: dict[Ref, dict[str, Any]]):
        self.objects = objects
        self.asked: list[Ref] = []

    def get(self, ref: Ref) -> dict[str, Any] | None:
        self.asked.append(ref)
        return self.objects.get(ref)


def test_check_reads_the_tracked_application():
    reader = Reader({Ref("Application", "argocd", "shop"): application()})
    assert "self-heal" in check(reader, configmap("shop:/ConfigMap:shop/flags-search"), "argocd")
    assert reader.asked == [Ref("Application", "argocd", "shop")]
    held = Reader({Ref("Application", "argocd", "shop"): application(**HOLDS)})
    assert check(held, configmap("shop:/ConfigMap:shop/flags-search"), "argocd") is None
    # Untracked, or tracked by an Application since deleted: nothing to report, nothing (or one thing) read.
    empty = Reader({})
    assert check(empty, configmap(), "argocd") is None and empty.asked == []
    assert check(empty, configmap("gone:/ConfigMap:shop/flags-search"), "argocd") is None


def test_release_drops_only_our_entries_from_the_end_each_tested():
    obj = {"metadata": {"managedFields": [{"manager": "argocd-controller"}, {"manager": "reliability-center"},
                                          {"manager": "kubectl"}, {"manager": "reliability-center",
                                                                   "operation": "Apply"}]}}
    ops = release_ops(obj)
    assert ops == [{"op": "test", "path": "/metadata/managedFields/3/manager", "value": "reliability-center"},
                   {"op": "remove", "path": "/metadata/managedFields/3"},
                   {"op": "test", "path": "/metadata/managedFields/1/manager", "value": "reliability-center"},
                   {"op": "remove", "path": "/metadata/managedFields/1"}]
    # Applied in order, what is left is everyone else's.
    entries = list(obj["metadata"]["managedFields"])
    for op in ops:
        index = int(op["path"].split("/")[3])
        if op["op"] == "test":
            assert entries[index]["manager"] == op["value"]
        else:
            del entries[index]
    assert [e["manager"] for e in entries] == ["argocd-controller", "kubectl"]
    assert release_ops({"metadata": {"managedFields": [{"manager": "kubectl"}]}}) == []
    assert release_ops({"metadata": {}}) == []
