"""Issue 19, reviewed as an attacker would: each test's attacker is a real user the apiserver
authenticates (kubectl impersonation) holding exactly the rights named, and its oracle is the
cluster (the objects the attack aims at, unchanged; the apiserver's own refusals), never the
operator's status alone.

The attacker of most tests holds exactly the built-in ``edit`` ClusterRole in one namespace
(``reliability-center-incident-editor`` aggregates into it), bound by a RoleBinding there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.support.cluster import apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import APPROVERS, approve, incident, plan_digest, status, steps

pytestmark = pytest.mark.usefixtures("operator")

FLAG = "dunning-retries.tenant.acme"


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


# ---------------------------------------------------------------- item 3: approvals replayed


def test_approvals_of_a_deleted_incident_do_not_count_for_one_recreated_under_its_name(app):
    mallory = editor(app, "mallory")
    category = governed_runbook()
    as_user(mallory, "create", "-n", app, "-f", "-", input=json.dumps(incident("bill", category=category)))
    first = get_json("incident", "bill", "-n", app)["metadata"]["uid"]
    digest = plan_digest(app, "bill", "switch")
    relctl("approve", "bill", "switch", "-n", app, "--as", "alice", "--as-group", APPROVERS)
    made = get_json("approvals", "-n", app)["items"]
    assert [(a["spec"]["incidentUID"], a["metadata"]["ownerReferences"][0]["uid"]) for a in made] == [(first, first)]
    wait_for(lambda: flag(app) == "false", what="the approved step to turn the flag off")
    kubectl("patch", "incident", "bill", "-n", app, "--type=merge", "-p", '{"spec":{"resolved":true}}')
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
