"""Installing reliability-center: the kustomize manifests (manifests/default) and the Helm chart
(charts/reliability-center) render the same objects, the real apiserver accepts both, and the
operator's RBAC is least privilege — asked of the real RBAC authorizer, and proven enough by
running the operator under its own ServiceAccount against the sample app."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import start_operator, stop_operator
from tests.support.cluster import BIN, ROOT, apply_docs, exists, get_json, kubectl, load_yaml, wait_for

HELM = BIN / "helm"
CHART = ROOT / "charts" / "reliability-center"
SAMPLES = ROOT / "manifests" / "samples"
INSTALL_NS = "reliability-center"
RELEASE = "reliability-center"  # with this release name the chart's names equal the kustomize ones
OPERATOR = f"system:serviceaccount:{INSTALL_NS}:reliability-center"
OPERATOR_GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{INSTALL_NS}", "system:authenticated"]
#: What both installs must agree on. The Namespace is kustomize's alone (Helm: --create-namespace).
COMPARED = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
            "RoleBinding", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

Doc = dict[str, Any]


# ------------------------------------------------------------------------------ renders


def docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def helm(*args: str) -> str:
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"helm is not built at {HELM}: run `bash hack/build-tools.sh`", pytrace=False)
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def helm_template(*extra: str) -> list[Doc]:
    return docs(helm("template", RELEASE, str(CHART), "--include-crds", "--namespace", INSTALL_NS, *extra))


@pytest.fixture(scope="module")
def kustomize_render(cluster: str) -> list[Doc]:
    return docs(kubectl("kustomize", str(ROOT / "manifests" / "default")).stdout)


@pytest.fixture(scope="module")
def helm_render() -> list[Doc]:
    return helm_template()


def key(doc: Doc) -> tuple[str, str | None, str]:
    return doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]


def by_key(rendered: list[Doc]) -> dict[tuple[str, str | None, str], Doc]:
    found: dict[tuple[str, str | None, str], Doc] = {}
    for doc in rendered:
        assert key(doc) not in found, f"{key(doc)} rendered twice"
        found[key(doc)] = doc
    return found


def one(rendered: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(rendered: list[Doc]) -> Doc:
    deployment = one(rendered, "Deployment", "reliability-center")
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env(rendered: list[Doc]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(rendered)["env"]}


# ------------------------------------------------------------------------------ same install either way


def test_kustomize_and_helm_install_the_same_objects(kustomize_render: list[Doc], helm_render: list[Doc]) -> None:
    ours = {k for k in by_key(kustomize_render) if k[0] in COMPARED}
    theirs = {k for k in by_key(helm_render) if k[0] in COMPARED}
    assert ours == theirs, f"only in kustomize: {sorted(ours - theirs)}; only in helm: {sorted(theirs - ours)}"
    assert {k[0] for k in ours} == COMPARED
    for kind, namespace, name in ours:
        namespaced = kind not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
        assert namespace == (INSTALL_NS if namespaced else None), f"{kind}/{name} in namespace {namespace!r}"
    assert [key(d) for d in kustomize_render if d["kind"] == "Namespace"] == [("Namespace", None, INSTALL_NS)]


def test_kustomize_and_helm_grant_the_same_rights(kustomize_render: list[Doc], helm_render: list[Doc]) -> None:
    ours, theirs = by_key(kustomize_render), by_key(helm_render)
    aggregation = "rbac.authorization.k8s.io/aggregate-to-"
    for k, doc in ours.items():
        if k[0] in {"ClusterRole", "Role"}:
            assert theirs[k]["rules"] == doc["rules"], f"{k}: rules differ"
            labels = {n: v for n, v in doc["metadata"]["labels"].items() if n.startswith(aggregation)}
            their_labels = {n: v for n, v in theirs[k]["metadata"]["labels"].items() if n.startswith(aggregation)}
            assert their_labels == labels, f"{k}: aggregation labels differ"
        if k[0] in {"ClusterRoleBinding", "RoleBinding"}:
            assert (theirs[k]["roleRef"], theirs[k]["subjects"]) == (doc["roleRef"], doc["subjects"]), k


def test_kustomize_and_helm_run_the_operator_the_same_way(kustomize_render: list[Doc],
                                                          helm_render: list[Doc]) -> None:
    ours = one(kustomize_render, "Deployment", "reliability-center")["spec"]
    theirs = one(helm_render, "Deployment", "reliability-center")["spec"]
    assert theirs["template"]["spec"] == ours["template"]["spec"]
    assert (theirs["replicas"], theirs["strategy"]) == (ours["replicas"], ours["strategy"])
    service, their_service = (one(r, "Service", "reliability-center-metrics") for r in (kustomize_render, helm_render))
    assert their_service["spec"]["ports"] == service["spec"]["ports"]
    assert their_service["metadata"]["annotations"] == service["metadata"]["annotations"]
    # Posts (Alertmanager's) go to the leader alone, in both installs: a Service without a selector, whose
    # EndpointSlice the leader writes (operator/leadership.py), named in the pods' settings.
    hooks, their_hooks = (one(r, "Service", "reliability-center-webhooks") for r in (kustomize_render, helm_render))
    assert their_hooks["spec"]["ports"] == hooks["spec"]["ports"]
    for rendered, svc in ((kustomize_render, hooks), (helm_render, their_hooks)):
        assert "selector" not in svc["spec"], svc
        env = {e["name"]: e for e in container(rendered)["env"]}
        assert env["RC_LEADER_SERVICE"]["value"] == svc["metadata"]["name"]
        assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # The same NetworkPolicy on the intake's port, each on its own Deployment's pods.
    policy, their_policy = (one(r, "NetworkPolicy", "reliability-center-intake")
                            for r in (kustomize_render, helm_render))
    assert (their_policy["spec"]["ingress"], their_policy["spec"]["policyTypes"]) == (
        policy["spec"]["ingress"], policy["spec"]["policyTypes"])
    for rendered, np in ((kustomize_render, policy), (helm_render, their_policy)):
        pod_labels = one(rendered, "Deployment", "reliability-center")["spec"]["template"]["metadata"]["labels"]
        assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    # Each metrics Service selects its own Deployment's pods.
    for rendered, svc in ((kustomize_render, service), (helm_render, their_service)):
        pod_labels = one(rendered, "Deployment", "reliability-center")["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_every_generated_crd_is_in_both_installs_unchanged(kustomize_render: list[Doc],
                                                          helm_render: list[Doc]) -> None:
    generated = [d for path in sorted((ROOT / "crds").glob("*.yaml")) for d in load_yaml(path)]
    assert len(generated) == 4
    for rendered in (kustomize_render, helm_render):
        crds = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "CustomResourceDefinition"}
        assert sorted(crds) == sorted(d["metadata"]["name"] for d in generated)
        for crd in generated:
            assert crds[crd["metadata"]["name"]]["spec"] == crd["spec"]
            assert crd["metadata"]["labels"].items() <= crds[crd["metadata"]["name"]]["metadata"]["labels"].items()


# ------------------------------------------------------------------------------ what the install looks like


def test_the_operator_role_grants_no_wildcards_and_no_secret_writes(kustomize_render: list[Doc],
                                                                    helm_render: list[Doc]) -> None:
    for rendered in (kustomize_render, helm_render):
        roles = [one(rendered, "ClusterRole", "reliability-center-operator"),
                 one(rendered, "Role", "reliability-center-namespace"),
                 one(rendered, "ClusterRole", "reliability-center-tenant")]
        # Cluster-wide, the operator reads, and writes only the status of its own cluster-scoped Runbooks.
        writes = [r for r in roles[0]["rules"] if set(r["verbs"]) - {"get", "list", "watch"}]
        assert writes == [{"apiGroups": ["reliability.center"], "resources": ["runbooks/status"],
                           "verbs": ["get", "patch"]}], writes
        for role in roles:
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert not any("*" in value for value in rule[field]), f"{role['metadata']['name']}: {rule}"
                assert not set(rule["verbs"]) & {"escalate", "impersonate", "deletecollection"}, rule
                if "bind" in rule["verbs"]:
                    # revoke-access updates RoleBindings; the apiserver's escalation check asks for bind on
                    # the role they reference. bind lets its holder add subjects to a binding of that role
                    # (roleRef cannot change, subjects can): it is granted only in the namespaces served, and
                    # the gateway only takes subjects out of bindings labelled reliability.center/revocable.
                    assert rule["verbs"] == ["bind"] and set(rule["resources"]) <= {"roles", "clusterroles"}, rule
                assert "nonResourceURLs" not in rule and "resourceNames" not in rule, rule
                if "" in rule["apiGroups"] and "secrets" in rule["resources"]:
                    assert set(rule["verbs"]) <= {"get"}, f"the operator may only read Secrets by name: {rule}"
                assert not {"pods", "pods/exec", "nodes", "serviceaccounts/token"} & set(rule["resources"]), rule
                assert "admissionregistration.k8s.io" not in rule["apiGroups"], rule
                if "rbac.authorization.k8s.io" in rule["apiGroups"]:  # revoke-access's alone: see above
                    assert rule["apiGroups"] == ["rbac.authorization.k8s.io"], rule
                    assert rule["verbs"] == ["bind"] or (rule["resources"] == ["rolebindings"]
                                                         and set(rule["verbs"]) <= {"get", "patch"}), rule
        assert not any("secrets" in rule["resources"] for rule in roles[0]["rules"]), \
            "no Secret may be read cluster-wide: credentials live in the operator's namespace"
        assert not any("secrets" in rule["resources"] for rule in roles[2]["rules"]), \
            "no Secret may be read in a served namespace: credentials live in the operator's namespace"
        assert sorted(r for rule in roles[1]["rules"] for r in rule["resources"]) == \
            ["approvals", "endpointslices", "incidents", "leases", "records", "secrets"], \
            "the namespaced Role is for the PatchPlan Lease locks (records of ours), the credentials Secrets, " \
            "the webhooks' EndpointSlice (posts to the leader) and " \
            "the admission check's dry-run Approval and Incident only"
        admission_check = next(rule for rule in roles[1]["rules"] if "approvals" in rule["resources"])
        assert admission_check["verbs"] == ["create"], admission_check


def test_the_deployment_is_locked_down_and_wired_to_the_settings(kustomize_render: list[Doc]) -> None:
    deployment = one(kustomize_render, "Deployment", "reliability-center")
    pod = deployment["spec"]["template"]["spec"]
    c = container(kustomize_render)
    # Two replicas electing a leader through a Lease, spread over nodes, one kept through a drain.
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert pod["affinity"]["podAntiAffinity"]
    pdb = one(kustomize_render, "PodDisruptionBudget", "reliability-center")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert pod["serviceAccountName"] == "reliability-center"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert set(c["resources"]) == {"requests", "limits"}
    assert c["image"] == "reliability-center:0.1.0"
    settings = env(kustomize_render)
    assert settings["RC_HEALTH_URL"] == "http://0.0.0.0:8080/healthz"
    assert settings["RC_METRICS_PORT"] == "9090"
    assert settings["RC_NAMESPACES"] == "" and settings["RC_SAFE_MODE"] == "false"
    assert settings["RC_LOCK_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert settings["RC_CREDENTIALS_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert settings["RC_MODE"] == "enforce" and settings["RC_LEADER_ELECTION"] == "true"
    assert settings["RC_LEADER_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert settings["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Everything the operator writes on its own disk goes to an emptyDir.
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert os.path.dirname(settings["RC_GITOPS_CACHE"]) in mounts and settings["HOME"] in mounts


def test_the_chart_values_change_what_they_say(cluster: str) -> None:
    rendered = helm_template("--set", "image.repository=registry.example/rc", "--set", "image.tag=1.2.3",
                             "--set", "namespaces={shop,billing}", "--set", "safeMode=true",
                             "--set", "metrics.enabled=false", "--set", "rbac.create=false",
                             "--set", "admission.enabled=false",
                             "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=existing")
    kinds = {d["kind"] for d in rendered}
    # The intake's NetworkPolicy and its Service stay: only the metrics Service goes.
    assert kinds == {"CustomResourceDefinition", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "Service"}
    assert [d["metadata"]["name"] for d in rendered if d["kind"] == "Service"] == ["reliability-center-webhooks"]
    admission = {"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy",
                 "ValidatingAdmissionPolicyBinding"}
    assert admission <= {d["kind"] for d in helm_template()}  # on by default: approvals count only with them
    assert container(rendered)["image"] == "registry.example/rc:1.2.3"
    settings = env(rendered)
    assert (settings["RC_NAMESPACES"], settings["RC_SAFE_MODE"], settings["RC_METRICS_PORT"]) == ("shop,billing", "true", "0")
    pod = one(rendered, "Deployment", "reliability-center")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing"
    single = helm_template("--set", "replicas=1")
    assert {d["kind"] for d in single} >= {"Deployment"} and "PodDisruptionBudget" not in {d["kind"] for d in single}
    assert env(single)["RC_LEADER_ELECTION"] == "false"  # one replica acts alone
    no_user_roles = helm_template("--set", "rbac.userRoles=false")
    assert {d["metadata"]["name"] for d in no_user_roles if d["kind"] == "ClusterRole"} == {"reliability-center-operator",
                                                                                     "reliability-center-tenant"}


def test_the_chart_passes_helm_lint(cluster: str) -> None:
    out = helm("lint", "--strict", str(CHART), "--namespace", INSTALL_NS)
    assert "0 chart(s) failed" in out


# ------------------------------------------------------------------------------ the apiserver's word


@pytest.fixture(scope="module")
def install_namespace(kustomize_render: list[Doc], crds: None) -> str:
    """The install namespace, for real: a server-side dry-run of namespaced objects needs it."""
    apply_docs(None, [d for d in kustomize_render if d["kind"] == "Namespace"])
    return INSTALL_NS


def dry_run(rendered: list[Doc], *args: str) -> str:
    # --force-conflicts: a dry-run only asks whether the objects are valid; the RBAC test below
    # applies some of them for real under another field manager.
    result = kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts",
                     "--field-manager=reliability-center-install", "-f", "-", *args,
                     input=yaml.safe_dump_all(rendered), check=False)
    assert result.returncode == 0, f"the apiserver refused the install:\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("render", ["kustomize_render", "helm_render"])
def test_the_apiserver_accepts_the_install(render: str, request: pytest.FixtureRequest, install_namespace: str) -> None:
    rendered: list[Doc] = request.getfixturevalue(render)
    out = dry_run(rendered)
    lines = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(lines) == len(rendered), out


def test_the_samples_are_valid_objects(namespace: str, crds: None) -> None:
    from reliability_center.actions.validate import check_runbook
    from reliability_center.api.incident import Incident
    from reliability_center.api.patchplan import PatchPlan
    from reliability_center.api.runbook import Runbook

    models = {"Incident": Incident, "Runbook": Runbook, "PatchPlan": PatchPlan}
    files = sorted(p.name for p in SAMPLES.glob("reliability.center_*.yaml"))
    assert files == sorted(f"reliability.center_v1alpha1_{k.lower()}.yaml" for k in models)
    for name in files:
        (doc,) = load_yaml(SAMPLES / name)
        assert name == f"reliability.center_v1alpha1_{doc['kind'].lower()}.yaml"
        parsed = models[doc["kind"]].model_validate(doc)
        if doc["kind"] == "Runbook":
            assert check_runbook(parsed.spec) == [], "the sample Runbook must pass the operator's own checks"
        dry_run([doc], "-n", namespace)
    # The samples' kustomization lists each of them once.
    listed = yaml.safe_load((SAMPLES / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == files


# ------------------------------------------------------------------------------ least privilege, for real


@pytest.fixture(scope="module")
def operator_rbac(kustomize_render: list[Doc], install_namespace: str) -> None:
    """The operator's ServiceAccount and roles, applied for real (idempotent, shared by the session)."""
    apply_docs(None, [d for d in kustomize_render if d["kind"] in RBAC_KINDS])


def allowed(checks: list[tuple[str, str, str, str | None]]) -> list[bool]:
    """Ask the RBAC authorizer (SubjectAccessReview) what the operator's ServiceAccount may do."""
    reviews = []
    for verb, resource, subresource, namespace in checks:
        group, _, plural = resource.rpartition("/")
        attributes = {"group": group, "resource": plural, "verb": verb, "subresource": subresource}
        if namespace:
            attributes["namespace"] = namespace
        reviews.append({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                        "spec": {"user": OPERATOR, "groups": OPERATOR_GROUPS, "resourceAttributes": attributes}})
    out = kubectl("create", "-f", "-", "-o", "json", input=yaml.safe_dump_all(reviews)).stdout
    decoder, answers, pos = json.JSONDecoder(), [], 0
    while pos < len(out):
        if out[pos].isspace():
            pos += 1
            continue
        review, pos = decoder.raw_decode(out, pos)
        answers.append(bool(review["status"].get("allowed")))
    assert len(answers) == len(checks)
    return answers


APP = "some-app"
#: (verb, group/resource, subresource, namespace) the operator needs: Kopf, handlers, actions, gateway.
NEEDED = [
    ("watch", "reliability.center/incidents", "", None),
    ("create", "reliability.center/incidents", "", APP),  # the Alertmanager intake opens incidents
    ("update", "reliability.center/incidents", "", APP),  # their signals, and resolution when all resolved
    ("list", "reliability.center/runbooks", "", None),
    ("watch", "reliability.center/patchplans", "", None),
    ("patch", "reliability.center/incidents", "status", APP),
    ("patch", "reliability.center/runbooks", "status", None),
    ("patch", "reliability.center/patchplans", "status", APP),
    ("create", "reliability.center/patchplans", "", APP),
    ("patch", "reliability.center/patchplans", "", APP),  # drops the finalizer older versions put there
    ("watch", "apiextensions.k8s.io/customresourcedefinitions", "", None),
    ("watch", "/namespaces", "", None),
    ("create", "/events", "", APP),
    ("create", "/configmaps", "", APP),
    ("update", "/configmaps", "", APP),
    ("patch", "/configmaps", "", APP),
    ("delete", "/configmaps", "", APP),
    # Its own records (snapshots, audit logs, ledgers): the admission policy reliability-center-records asks this.
    ("create", "reliability.center/records", "", APP),
    ("update", "reliability.center/records", "", APP),
    ("delete", "reliability.center/records", "", APP),
    ("get", "/secrets", "", INSTALL_NS),  # credentials: the operator's own namespace only
    ("patch", "apps/deployments", "", APP),
    ("watch", "apps/deployments", "", APP),  # a step waiting on a rollout is woken by it
    ("patch", "apps/statefulsets", "", APP),
    ("patch", "batch/cronjobs", "", APP),
    ("create", "batch/jobs", "", APP),
    ("list", "autoscaling/horizontalpodautoscalers", "", APP),
    ("create", "networking.k8s.io/networkpolicies", "", APP),
    ("delete", "networking.k8s.io/networkpolicies", "", APP),
    ("patch", "core.openfeature.dev/featureflags", "", APP),
    ("watch", "argoproj.io/applications", "", "argocd"),
    ("get", "rbac.authorization.k8s.io/rolebindings", "", APP),  # revoke-access narrows one, restores it
    ("patch", "rbac.authorization.k8s.io/rolebindings", "", APP),
    ("bind", "rbac.authorization.k8s.io/roles", "", APP),  # the escalation check on that update
    ("bind", "rbac.authorization.k8s.io/clusterroles", "", APP),
    ("create", "coordination.k8s.io/leases", "", INSTALL_NS),
    ("update", "coordination.k8s.io/leases", "", INSTALL_NS),
]
#: What it must not be able to do.
REFUSED = [
    ("patch", "reliability.center/incidents", "", APP),  # spec writes are compare-and-swap updates only
    ("delete", "reliability.center/incidents", "", APP),
    ("update", "reliability.center/runbooks", "", None),
    ("delete", "reliability.center/patchplans", "", APP),
    ("get", "/secrets", "", APP),
    ("get", "/secrets", "", "kube-system"),
    ("list", "/secrets", "", APP),
    ("list", "/secrets", "", INSTALL_NS),
    ("watch", "/secrets", "", None),
    ("create", "/secrets", "", APP),
    ("update", "/secrets", "", APP),
    ("patch", "/secrets", "", APP),
    ("delete", "/secrets", "", APP),
    ("update", "coordination.k8s.io/leases", "", "kube-system"),  # other controllers' leader election
    ("create", "coordination.k8s.io/leases", "", APP),
    ("create", "apps/deployments", "", APP),
    ("delete", "apps/deployments", "", APP),
    ("delete", "batch/jobs", "", APP),
    ("patch", "autoscaling/horizontalpodautoscalers", "", APP),
    ("create", "/pods", "", APP),
    ("create", "/pods", "exec", APP),
    ("patch", "/nodes", "", None),
    ("create", "/serviceaccounts", "token", APP),
    ("create", "rbac.authorization.k8s.io/clusterrolebindings", "", None),
    ("patch", "rbac.authorization.k8s.io/clusterrolebindings", "", None),
    ("create", "rbac.authorization.k8s.io/rolebindings", "", APP),  # narrowed, never made
    ("delete", "rbac.authorization.k8s.io/rolebindings", "", APP),
    ("list", "rbac.authorization.k8s.io/rolebindings", "", None),
    ("patch", "rbac.authorization.k8s.io/roles", "", APP),
    ("create", "rbac.authorization.k8s.io/clusterroles", "", None),
    ("escalate", "rbac.authorization.k8s.io/roles", "", APP),
    ("escalate", "rbac.authorization.k8s.io/clusterroles", "", None),
    ("delete", "apiextensions.k8s.io/customresourcedefinitions", "", None),
]


def test_the_operator_may_do_what_it_needs_and_no_more(operator_rbac: None) -> None:
    answers = allowed(NEEDED + REFUSED)
    missing = [c for c, ok in zip(NEEDED, answers[:len(NEEDED)]) if not ok]
    excess = [c for c, ok in zip(REFUSED, answers[len(NEEDED):]) if ok]
    assert not missing, f"the operator's ServiceAccount lacks: {missing}"
    assert not excess, f"the operator's ServiceAccount may: {excess}"


def test_the_operator_may_narrow_a_rolebinding_whose_role_grants_more_than_it_holds(operator_rbac: None,
                                                                                     solo_namespace: str) -> None:
    """The apiserver's escalation check, for real: the operator's ServiceAccount (impersonated)
    removes a subject from a RoleBinding to a Role that may read Secrets and delete Pods, which the
    operator may not; an account with the same RoleBinding rights but no bind is refused."""
    ns = solo_namespace
    rbac = "rbac.authorization.k8s.io"
    apply_docs(ns, [
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": {"name": "powerful"},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]},
        {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": {"name": "leak"},
         "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "powerful"},
         "subjects": [{"apiGroup": rbac, "kind": "User", "name": "alice"},
                      {"apiGroup": rbac, "kind": "User", "name": "bob"}]},
        # The control: the rights on RoleBindings the operator has, without bind.
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-bind"}},
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": {"name": "no-bind"},
         "rules": [{"apiGroups": [rbac], "resources": ["rolebindings"], "verbs": ["get", "patch"]}]},
        {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": {"name": "no-bind"},
         "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "no-bind"},
         "subjects": [{"kind": "ServiceAccount", "name": "no-bind", "namespace": ns}]},
    ])
    remove_alice = json.dumps([{"op": "test", "path": "/subjects/0/name", "value": "alice"},
                               {"op": "remove", "path": "/subjects/0"}])
    assert kubectl("auth", "can-i", "list", "secrets", "-n", ns, f"--as={OPERATOR}", check=False).stdout.strip() == "no"
    refused = kubectl("patch", "rolebinding", "leak", "-n", ns, "--type=json", "-p", remove_alice,
                      f"--as=system:serviceaccount:{ns}:no-bind", check=False)
    assert refused.returncode != 0 and "not currently held" in refused.stderr, refused.stderr
    kubectl("patch", "rolebinding", "leak", "-n", ns, "--type=json", "-p", remove_alice, f"--as={OPERATOR}")
    assert [s["name"] for s in get_json("rolebinding", "leak", "-n", ns)["subjects"]] == ["bob"]


# ------------------------------------------------------------------------------ enough, for real


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def operator_kubeconfig(operator_rbac: None, tmp_path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig for the operator's ServiceAccount: its rights and nothing else."""
    token = kubectl("create", "token", "reliability-center", "-n", INSTALL_NS, "--duration=1h").stdout.strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "reliability-center", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "reliability-center"}}],
        "current-context": "operator",
    }
    path = tmp_path / "operator-kubeconfig.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def operator_as_its_service_account(operator_kubeconfig: pathlib.Path, solo_namespace: str, seed_runbooks: None,
                                    tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """The operator, as deployed but outside a Pod, under the ServiceAccount's token.

    It watches only this test's namespace (a solo-* one: the session operator leaves it
    alone) — given as a pattern, so that Kopf also needs its namespace watch — and yields
    the path of its log.
    """
    namespace = solo_namespace
    apply_docs(namespace, load_yaml("examples/protected-app/app.yaml"))
    log = tmp_path / "operator.log"
    health = f"http://127.0.0.1:{free_port()}/healthz"
    proc = start_operator(log, {"KUBECONFIG": str(operator_kubeconfig), "RC_NAMESPACES": f"{namespace}*",
                                "RC_HEALTH_URL": health, "RC_LOCK_NAMESPACE": INSTALL_NS,
                                "RC_CREDENTIALS_NAMESPACE": INSTALL_NS})
    try:
        wait_for(lambda: healthy(health) or proc.poll() is not None, timeout=60, what="the operator's liveness endpoint")
        assert proc.poll() is None, f"the operator exited:\n{log.read_text()[-4000:]}"
        yield log
    finally:
        stop_operator(proc)


def logged(log: pathlib.Path, message: str, kind: str, name: str, namespace: str) -> bool:
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        obj = entry.get("object") or {}
        if entry.get("message") == message and (obj.get("kind"), obj.get("name"), obj.get("namespace")) == (
                kind, name, namespace):
            return True
    return False


def test_the_operator_does_its_work_under_its_service_account(operator_as_its_service_account: pathlib.Path,
                                                             solo_namespace: str) -> None:
    log, ns = operator_as_its_service_account, solo_namespace
    apply_docs(ns, load_yaml("examples/incidents/perf.yaml"))
    apply_docs(ns, load_yaml(SAMPLES / "reliability.center_v1alpha1_patchplan.yaml"))
    try:
        # The Incident: matched, planned, its level 1 steps written (snapshots, audit Events, applies).
        incident = wait_for(lambda: (lambda i: i if any(s.get("state") == "Succeeded" for s in
                                                        i.get("status", {}).get("steps", [])) else None)(
            get_json("incident", "search-latency", "-n", ns)), timeout=90, what="a level 1 step to succeed")
        wait_for(lambda: logged(log, "Handler 'on_incident' succeeded.", "Incident", "search-latency", ns),
                 timeout=30, what="the operator to handle the Incident")
        # The PatchPlan: the credentials Secret read in the operator's namespace (absent here), the status written.
        plan = wait_for(lambda: (lambda p: p if any(c.get("reason") == "CredentialsMissing" for c in
                                                    p.get("status", {}).get("conditions", [])) else None)(
            get_json("patchplan", "patchplan-sample", "-n", ns)), timeout=60, what="the PatchPlan's status")
        assert f"Secret {INSTALL_NS}/gitops-credentials not found" in json.dumps(plan["status"]["conditions"])
        # No finalizer: a namespace can be deleted while the operator is down.
        assert not plan["metadata"].get("finalizers"), plan["metadata"]
        wait_for(lambda: logged(log, "Handler 'on_patchplan' succeeded.", "PatchPlan", "patchplan-sample", ns),
                 timeout=30, what="the operator's PatchPlan handler")
        # Posted with the step's writes (before its status); a list served from the apiserver's watch cache
        # may show them a moment later (seen once on a loaded machine: created 201, listed empty).
        wait_for(lambda: get_json("events", "-n", ns, "--field-selector", "reason=Audit")["items"], timeout=30,
                 what="the audit Events the operator posted")
        text = log.read_text()
        for where, content in (("log", text), ("Incident status", json.dumps(incident.get("status"))),
                               ("PatchPlan status", json.dumps(plan.get("status")))):
            assert "forbidden" not in content.lower(), f"a permission was missing ({where}):\n{content[-4000:]}"
        kubectl("delete", "patchplan", "patchplan-sample", "-n", ns, "--wait=false")
        wait_for(lambda: not exists("PatchPlan", ns, "patchplan-sample"),
                 timeout=30, what="the PatchPlan to be deleted")
    finally:
        kubectl("delete", "patchplan", "patchplan-sample", "-n", ns, "--wait=false", check=False)


# ------------------------------------------------------------------------------ effective rights, per namespace


def readme_rights() -> dict[str, dict[str, set[str]]]:
    """The README's table of the operator's rights: {where: {resource: verbs}}."""
    section = (ROOT / "README.md").read_text().split("### The operator's rights, namespace by namespace", 1)[1]
    table: dict[str, dict[str, set[str]]] = {}
    for line in section.split("\n\n| where | resource | verbs |\n|---|---|---|\n", 1)[1].splitlines():
        if not line.startswith("| "):
            break
        where, resource, verbs = (cell.strip() for cell in line.strip("|").split("|"))
        table.setdefault(where, {})[resource.strip("`")] = set(verbs.split())
    assert set(table) == {"cluster-wide", "each namespace served", "the operator's namespace"}, table.keys()
    return table


def expected_rights(namespace: str, *, served: bool, own: bool) -> dict[str, set[str]]:
    table, rights = readme_rights(), {}
    for where, wanted in (("cluster-wide", True), ("each namespace served", served), ("the operator's namespace", own)):
        for resource, verbs in table[where].items() if wanted else ():
            rights.setdefault(resource, set()).update(verbs)
    return rights


def can_i_list(user: str, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list` as the apiserver answers it (a SelfSubjectRulesReview, impersonated):
    {resource as kubectl prints it (deployments.apps, incidents.reliability.center/status): verbs};
    non-resource URLs left out."""
    out = kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    rights: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        cells = line.split()
        if not cells or cells[0].startswith("["):  # a non-resource URL row
            continue
        verbs = set(" ".join(cells[1:]).rsplit("[", 1)[1].rstrip("]").split())
        rights.setdefault(cells[0], set()).update(verbs)
    return rights


def effective_rights(account: str, bare_account: str, namespace: str) -> dict[str, set[str]]:
    """What ``account`` may do in ``namespace`` beyond what ``bare_account`` (a ServiceAccount of the same
    namespace with no binding of its own: the rights every ServiceAccount and authenticated user hold) may."""
    mine, everyone = can_i_list(account, namespace), can_i_list(bare_account, namespace)
    extra = {r: verbs - everyone.get(r, set()) for r, verbs in mine.items()}
    return {r: verbs for r, verbs in extra.items() if verbs}


def assert_rights_as_documented(account: str, bare_account: str, namespaces: dict[str, dict[str, bool]]) -> None:
    for namespace, where in namespaces.items():
        found, wanted = effective_rights(account, bare_account, namespace), expected_rights(namespace, **where)
        assert found == wanted, (
            f"{account} in {namespace} ({where}): beyond the README's table: "
            f"{ {r: v - wanted.get(r, set()) for r, v in found.items() if v - wanted.get(r, set())} }; "
            f"missing: { {r: v - found.get(r, set()) for r, v in wanted.items() if v - found.get(r, set())} }")


def test_the_kustomize_install_grants_what_the_readme_says_in_each_namespace(operator_rbac: None,
                                                                           solo_namespace: str) -> None:
    """manifests/default serves every namespace: the tenant rows hold everywhere, kube-system included
    (refused there by the gateway's policy, not by RBAC: the README's trade-off)."""
    apply_docs(INSTALL_NS, [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "rc-bare"}}])
    assert_rights_as_documented(OPERATOR, f"system:serviceaccount:{INSTALL_NS}:rc-bare", {
        solo_namespace: {"served": True, "own": False},
        "kube-system": {"served": True, "own": False},
        INSTALL_NS: {"served": True, "own": True},
    })


@pytest.fixture
def chart_serving_one_namespace(crds: None) -> Iterator[tuple[str, str, str, str]]:
    """The chart's RBAC, applied for real, for a release in its own namespace serving one namespace
    (namespaces: [served]); another namespace exists and is not served. Yields (install namespace,
    ServiceAccount user, served, not served)."""
    suffix = uuid.uuid4().hex[:6]
    install, served, other = (f"solo-rbac-{suffix}-{what}" for what in ("rc", "app", "other"))
    release = f"rc-{suffix}"
    for name in (install, served, other):
        apply_docs(None, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    rendered = docs(helm("template", release, str(CHART), "--namespace", install, "--set", f"namespaces={{{served}}}",
                         "--set", "rbac.userRoles=false"))
    rbac = [d for d in rendered if d["kind"] in RBAC_KINDS]
    for doc in rbac:
        if doc["kind"] in {"ServiceAccount", "Role", "RoleBinding"}:
            doc["metadata"].setdefault("namespace", install)
    apply_docs(None, rbac)
    apply_docs(install, [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "rc-bare"}}])
    try:
        yield install, f"system:serviceaccount:{install}:{release}-reliability-center", served, other
    finally:
        for doc in rbac:
            if doc["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
                kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--wait=false", check=False)
        for name in (install, served, other):
            kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_the_chart_with_namespaces_grants_writes_only_there(chart_serving_one_namespace: tuple[str, str, str, str]) -> None:
    install, account, served, other = chart_serving_one_namespace
    assert_rights_as_documented(account, f"system:serviceaccount:{install}:rc-bare", {
        served: {"served": True, "own": False},
        other: {"served": False, "own": False},
        "kube-system": {"served": False, "own": False},
        install: {"served": False, "own": True},
    })
    # The cluster's own word, for the writes the issue named: none outside the namespace served.
    for verb, resource, namespace in (("patch", "deployments.apps", "kube-system"), ("create", "jobs.batch", other),
                                      ("patch", "configmaps", "kube-system"), ("patch", "rolebindings", other),
                                      ("bind", "clusterroles", None), ("patch", "rolebindings", install)):
        where = ["-n", namespace] if namespace else []
        answer = kubectl("auth", "can-i", verb, resource, f"--as={account}", *where, check=False).stdout.strip()
        assert answer == "no", f"{account} may {verb} {resource} in {namespace or 'the cluster'}"
    assert kubectl("auth", "can-i", "patch", "deployments.apps", f"--as={account}", "-n", served).stdout.strip() == "yes"


def test_the_kustomize_namespaced_overlay_binds_as_the_chart_does(cluster: str) -> None:
    """manifests/namespaced: no tenant ClusterRoleBinding, one RoleBinding per namespace of RC_NAMESPACES,
    the same bindings the chart renders for that list."""
    overlay = docs(kubectl("kustomize", str(ROOT / "manifests" / "namespaced")).stdout)
    listed = env(overlay)["RC_NAMESPACES"].split(",")
    assert listed and all(listed)
    chart = helm_template("--set", f"namespaces={{{','.join(listed)}}}")
    for rendered in (overlay, chart):
        bindings = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): (d["roleRef"], d["subjects"])
                    for d in rendered if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}}
        assert ("ClusterRoleBinding", None, "reliability-center-tenant") not in bindings
        tenant = {k[1] for k in bindings if k[0] == "RoleBinding" and k[2] == "reliability-center-tenant"}
        assert tenant == set(listed), tenant
    assert by_key(overlay).keys() >= {k for k in by_key(chart) if k[0] in COMPARED}
    for k in (k for k in by_key(chart) if k[0] in {"RoleBinding", "ClusterRoleBinding"}):
        assert (by_key(overlay)[k]["roleRef"], by_key(overlay)[k]["subjects"]) == (
            by_key(chart)[k]["roleRef"], by_key(chart)[k]["subjects"]), k
