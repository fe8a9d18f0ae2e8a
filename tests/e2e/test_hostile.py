"""Issue 19, reviewed as an attacker would: each test's attacker is a real user the apiserver
authenticates (kubectl impersonation) holding exactly the rights named, and its oracle is the
cluster (the objects the attack aims at, unchanged; the apiserver's own refusals), never the
operator's status alone.

The attacker of most tests holds exactly the built-in ``edit`` ClusterRole in one namespace
(``reliability-center-incident-editor`` aggregates into it), bound by a RoleBinding there.

Here: items 3 (votes bound to the incident's uid), 5 (a credential
kept to its URL prefix) and 7 (runbookRef and a job's environment). The other items' hostile cases sit beside
the fixtures they share:
- 2, no vote counts while admission is off: ``test_hostile_no_admission.py`` (a cluster of its own);
- 1, forged records and restores in another namespace: ``test_boundaries.py``;
- 4, least privilege: ``test_install_manifests.py`` (effective rights per namespace against the README's table,
  chart and kustomize) and ``test_revoke_access.py::test_a_rolebinding_not_opted_in_is_refused_and_left_as_it_is``;
- 6, the intake: ``test_intake_boundaries.py`` (and the refusals table of ``test_intake.py``);
- 8, plans reviewed whole: ``test_plan_review.py``;
- 9, PatchPlans and CI: ``test_patchplan_boundaries.py``.
"""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.support.cluster import ROOT, apply_docs, apply_runbook, get_json, kubectl, runbook_doc, wait_for
from tests.support.incidents import (APPROVERS, approval_schema_current, approve, incident, plan_digest, resolve,
                                     status, steps)

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

FLAG = "dunning-retries.tenant.acme"
CREATED_BY = "reliability.center/created-by"


def editor(namespace: str, user: str) -> str:
    """``user`` holds exactly the built-in ``edit`` ClusterRole in ``namespace``, nothing else."""
    kubectl("create", "rolebinding", f"edit-{user}", "--clusterrole=edit", f"--user={user}", "-n", namespace)
    wait_for(lambda: kubectl("auth", "can-i", "create", "incidents.reliability.center", "-n", namespace,
                             f"--as={user}", check=False).stdout.strip() == "yes",
             what=f"{user}'s edit to include incidents (aggregated)")
    return user


def as_user(user: str, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kubectl(*args, f"--as={user}", input=input, check=check)


def relctl(*args: str) -> str:
    result = subprocess.run([sys.executable, "-c", "from reliability_center.cli import main; main()", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def governed_runbook() -> str:
    """A runbook whose one level 2 step turns billing's dunning-retries off once one person approves."""
    category = f"h{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"limits": {"maxRunsPerHour": 100},
                             "steps": [{"name": "switch", "level": 2, "action": "feature-flags-off",
                                        "params": {"modules": ["billing"], "flags": ["dunning-retries"]},
                                        "approval": {"required": True}}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    return category


def flag(app: str) -> str | None:
    return get_json("configmap", "flags-billing", "-n", app)["data"].get(FLAG)


def switch(app: str, name: str) -> dict:
    return next((s for s in status(app, name).get("steps") or [] if s["name"] == "switch"), {})


# ---------------------------------------------------------------- item 5: a credential's URL prefix

TOKEN = "hostile-test-token-that-must-stay-home"


class Recorder(http.server.BaseHTTPRequestHandler):
    """The forge's host: records the path and the Authorization header of every request."""

    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Recorder.seen.append((self.path, self.headers.get("Authorization", "")))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="forge"')
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def forge_host() -> Iterator[str]:
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_editor_cannot_steer_a_teams_credential_out_of_its_url_prefix_with_dot_segments(namespace, forge_host):
    kubectl("apply", "--server-side", "--force-conflicts", "-f",
            str(ROOT / "manifests" / "rbac" / "patchplan_editor_role.yaml"))
    mallory = editor(namespace, "mallory")
    # The admin's Secret: the team's token, for the team's repositories only.
    apply_docs(namespace, [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": "team-token",
                                         "labels": {"reliability.center/secret-type": "repository"}},
                            "stringData": {"username": "rc", "token": TOKEN, "url": f"{forge_host}/team/"}}])

    def plan(name: str, url: str) -> None:
        as_user(mallory, "apply", "-n", namespace, "-f", "-", input=json.dumps({
            "apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": name},
            "spec": {"repository": {"url": url, "provider": "git", "baseBranch": "main",
                                    "credentialsSecret": "team-token"},
                     "title": "t", "changes": [{"path": "apps/x.yaml", "operation": "createFile", "content": "x: 1\n"}]}}))

    def ready(name: str) -> dict | None:
        status = get_json("patchplan", name, "-n", namespace).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)

    escapes = {"dots": f"{forge_host}/team/../platform/cluster.git",
               "encoded": f"{forge_host}/team/%2e%2e/platform/cluster.git",
               "merged-slashes": f"{forge_host}/team/x//../../platform/cluster.git"}
    for name, url in escapes.items():
        plan(name, url)
    decided = {name: wait_for(lambda: ready(name), what=f"the operator's verdict on {name}") for name in escapes}
    assert Recorder.seen == []  # the forge's host heard nothing, let alone the token
    for name, condition in decided.items():
        assert condition["reason"] == "CredentialsRefused" and "team-token" in condition["message"], condition

    # The control: a repository under the prefix gets the token, and the host records it.
    plan("inside", f"{forge_host}/team/cluster.git")
    wait_for(lambda: Recorder.seen, what="the operator to reach the team's repository")
    assert all(path.startswith("/team/") for path, _ in Recorder.seen), Recorder.seen
    assert any(auth.startswith("Basic") and base64.b64decode(auth.split()[-1]).decode().endswith(TOKEN)
               for _, auth in Recorder.seen)


# ---------------------------------------------------------------- item 3: approvals replayed


def test_approvals_of_a_deleted_incident_do_not_count_for_one_recreated_under_its_name(app):
    mallory = editor(app, "mallory")
    category = governed_runbook()
    as_user(mallory, "create", "-n", app, "-f", "-", input=json.dumps(incident("bill", category=category)))
    first = get_json("incident", "bill", "-n", app)["metadata"]["uid"]
    digest = plan_digest(app, "bill", "switch")
    approval_schema_current()
    relctl("approve", "bill", "switch", "-n", app, "--as", "alice", "--as-group", APPROVERS)
    made = get_json("approvals", "-n", app)["items"]
    assert [(a["spec"]["incidentUID"], a["metadata"]["ownerReferences"][0]["uid"]) for a in made] == [(first, first)]
    wait_for(lambda: flag(app) == "false", what="the approved step to turn the flag off")
    resolve(app, "bill")
    wait_for(lambda: flag(app) is None, what="resolution to restore the flag")  # the targets as they were

    # The editor deletes the closed incident, keeping its dependents (the Approval stays, its owner
    # reference taken off), and creates it again: the same name, the same plan.
    as_user(mallory, "delete", "incident", "bill", "-n", app, "--cascade=orphan")
    wait_for(lambda: not get_json("incidents", "-n", app)["items"], what="the incident gone")
    as_user(mallory, "create", "-n", app, "-f", "-", input=json.dumps(incident("bill", category=category)))
    second = get_json("incident", "bill", "-n", app)["metadata"]["uid"]
    assert second != first and plan_digest(app, "bill", "switch") == digest  # a replay would match the digest
    old = wait_for(lambda: next((v for v in (switch(app, "bill").get("approval") or {}).get("votes") or []
                                 if v["approval"] == made[0]["metadata"]["name"]), None),
                   what="the old approval weighed")
    assert not old["counted"] and "another incident of the same name" in old["reason"], old
    assert steps(status(app, "bill"))["switch"] == "AwaitingApproval"
    assert flag(app) is None  # the cluster: nothing written for the old vote

    # A vote for this incident is what runs it (so the step was ready to act on one).
    approve(app, "bill", "switch", user="alice")
    wait_for(lambda: flag(app) == "false", what="the step approved for this incident")


def test_an_approval_relctl_made_is_deleted_with_its_incident(app):
    category = governed_runbook()
    kubectl("create", "-n", app, "-f", "-", input=json.dumps(incident("bill", category=category)))
    plan_digest(app, "bill", "switch")
    approval_schema_current()
    relctl("reject", "bill", "switch", "-n", app, "--as", "alice", "--as-group", APPROVERS)
    assert len(get_json("approvals", "-n", app)["items"]) == 1
    kubectl("delete", "incident", "bill", "-n", app)
    wait_for(lambda: not get_json("approvals", "-n", app)["items"], what="the garbage collector to delete it")


def test_a_hand_made_approval_without_the_incident_uid_is_not_counted_and_says_why(app):
    category = governed_runbook()
    kubectl("create", "-n", app, "-f", "-", input=json.dumps(incident("bill", category=category)))
    approve(app, "bill", "switch", user="alice", bound=False)  # by name only, as an old kubectl manifest
    vote = wait_for(lambda: ((switch(app, "bill").get("approval") or {}).get("votes") or [None])[0],
                    what="the vote weighed")
    assert not vote["counted"] and vote["reason"].startswith("names no incident uid (spec.incidentUID)")
    assert flag(app) is None


# ---------------------------------------------------------------- item 7: runbookRef, run-job env

RBAC = "rbac.authorization.k8s.io"


def condition(app: str, name: str, kind: str) -> dict:
    return next((c for c in status(app, name).get("conditions") or [] if c["type"] == kind), {})


def test_an_editor_cannot_run_a_runbook_whose_match_their_incident_does_not_meet_by_naming_it(app):
    mallory = editor(app, "mallory")
    # bob reads the exports through a RoleBinding; a level 2 runbook of another category (no
    # approval: its match is what confines it) would take him out of it.
    apply_docs(app, [
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": "exports-reader"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
         "metadata": {"name": "exports-reader", "labels": {"reliability.center/tenant": "acme"}},
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "exports-reader"},
         "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "bob"}]}])
    security = f"sec{uuid.uuid4().hex[:8]}"
    apply_runbook(security, {"steps": [{"name": "revoke", "level": 2, "action": "revoke-access",
                                        "params": {"roleBinding": "exports-reader"}, "takeOwnership": True,
                                        "approval": {"required": False}}]})
    wait_for(lambda: get_json("runbook", f"rb-{security}").get("status", {}).get("conditions"), what="runbook")
    before = get_json("rolebinding", "exports-reader", "-n", app)
    # Her own rights do not reach the binding: the apiserver says so.
    own = as_user(mallory, "patch", "rolebinding", "exports-reader", "-n", app, "--type=json",
                  "-p", '[{"op":"remove","path":"/subjects/0"}]', check=False)
    assert own.returncode != 0 and "forbidden" in own.stderr

    mine = incident("steer", category=f"other{uuid.uuid4().hex[:6]}", runbookRef=f"rb-{security}")
    as_user(mallory, "create", "-n", app, "-f", "-", input=json.dumps(mine))
    matched = wait_for(lambda: condition(app, "steer", "Matched") or None, what="the Matched condition")
    assert (matched["status"], matched["reason"]) == ("False", "RunbookDoesNotMatch"), matched
    assert f"its match wants category '{security}'" in matched["message"]
    after = get_json("rolebinding", "exports-reader", "-n", app)
    assert after["subjects"] == before["subjects"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert kubectl("auth", "can-i", "list", "configmaps", "-n", app, "--as=bob").stdout.strip() == "yes"


@pytest.fixture
def runbook_owner() -> str:
    """pat holds exactly ClusterRole reliability-center-runbook-editor (writes Runbooks), no right in any namespace."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f",
            str(ROOT / "manifests" / "rbac" / "runbook_editor_role.yaml"))
    binding = f"rc-test-runbook-owner-{uuid.uuid4().hex[:8]}"
    user = f"pat-{binding[-8:]}"
    kubectl("create", "clusterrolebinding", binding, "--clusterrole=reliability-center-runbook-editor",
            f"--user={user}")
    yield user
    kubectl("delete", "clusterrolebinding", binding, check=False)


def test_a_runbook_owner_cannot_add_a_variable_to_a_cronjobs_job_and_run_code_as_its_service_account(
        app, runbook_owner):
    mallory = editor(app, "mallory")
    apply_docs(app, [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "batch"}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "compact"},
         "spec": {"schedule": "0 3 * * *", "suspend": True, "jobTemplate": {"spec": {"template": {"spec": {
             "serviceAccountName": "batch", "restartPolicy": "Never",
             "containers": [{"name": "job", "image": "registry.invalid/shop/compact:1.0",
                             "command": ["bash", "-c", "compact --batch $BATCH_SIZE"],
                             "env": [{"name": "BATCH_SIZE", "value": "100"}]}]}}}}}}])
    can = kubectl("auth", "can-i", "create", "jobs", "-n", app, f"--as={runbook_owner}", check=False)
    assert can.stdout.strip() == "no"

    def runbook(env: dict[str, str]) -> str:
        category = f"job{uuid.uuid4().hex[:8]}"
        doc = runbook_doc(category, {"steps": [{"name": "compact", "level": 2, "action": "run-job",
                                                "params": {"cronJob": "compact", "env": env},
                                                "dryRunFirst": True, "approval": {"required": True}}]})
        as_user(runbook_owner, "apply", "--server-side", "-f", "-", input=json.dumps(doc))
        wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
        return category

    # The dry-run Job runs before anyone approves: with BASH_ENV, bash would source the file first.
    hostile = runbook({"BATCH_SIZE": "5", "BASH_ENV": "/proc/self/environ"})
    as_user(mallory, "create", "-n", app, "-f", "-", input=json.dumps(incident("compact", category=hostile)))
    refused = wait_for(lambda: (s := switch_named(app, "compact", "compact")).get("state") == "Failed" and s,
                       what="the step refused")
    assert refused["reason"] == "EnvNotDeclared" and "env names BASH_ENV, which no container of CronJob " \
        "compact declares (it declares BATCH_SIZE)" in refused["message"]
    assert not [j for j in get_json("jobs", "-n", app)["items"]
                if j["metadata"].get("labels", {}).get("reliability.center/run-of") == "compact"]

    # A declared variable is what a step may set: that Job is made, with the value.
    declared = runbook({"BATCH_SIZE": "5"})
    as_user(mallory, "create", "-n", app, "-f", "-", input=json.dumps(incident("tuned", category=declared)))
    job = wait_for(lambda: next((j for j in get_json("jobs", "-n", app)["items"]
                                 if j["metadata"].get("labels", {}).get("reliability.center/run-of") == "compact"),
                                None), what="the dry-run Job with a declared variable")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BATCH_SIZE"] == "5" and env["DRY_RUN"] == "true" and "BASH_ENV" not in env


def switch_named(app: str, name: str, step: str) -> dict:
    return next((s for s in status(app, name).get("steps") or [] if s["name"] == step), {})
