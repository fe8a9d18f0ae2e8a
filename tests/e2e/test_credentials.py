"""Credentials go only where their Secret says: a PatchPlan cannot send a token to a host of its choosing.

A listener on loopback plays the attacker's host and records every request it
receives. A PatchPlan names it as its repository and names a Secret that was
meant for another repository, or that never opted in: the plan is refused with
the reason, and the listener receives nothing at all. A Secret that does name the
listener's URL is sent to it, which shows the listener would have caught a leak.
"""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator

import pytest
import yaml

from tests.conftest import CACHE, start_operator, stop_operator
from tests.support.cluster import apply_docs, get_json, kubectl, wait_for

TOKEN = "s3cr3t-token-that-must-not-leave"


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def _record(self) -> None:
        Recorder.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="trap"')
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = _record

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[str]:
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def secret(name: str, **data: str) -> dict:
    labels = {"reliability.center/secret-type": "repository"} if data.pop("opt_in", "yes") == "yes" else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels}, "type": "Opaque",
            "stringData": {"username": "rc", "token": TOKEN, **data}}


def plan(namespace: str, name: str, url: str, credentials: str | None) -> None:
    repository = {"url": url, "provider": "gitea", "baseBranch": "main",
                  **({"credentialsSecret": credentials} if credentials else {})}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": name},
        "spec": {"repository": repository, "title": "exfiltrate",
                 "changes": [{"path": "apps/x.yaml", "operation": "createFile", "content": "x: 1\n"}]}}))


def ready(namespace: str, name: str) -> dict | None:
    status = get_json("patchplan", name, "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def test_a_secret_is_never_sent_to_a_repository_it_does_not_name(namespace, operator, listener):
    evil = f"{listener}/team/gitops.git"
    apply_docs(namespace, [
        secret("for-another-repo", url="https://git.example.invalid/team/gitops.git", namespaces="*"),
        secret("never-opted-in", opt_in="no", url=evil, namespaces="*"),
        secret("other-namespaces", url=f"{listener}/team/", namespaces="billing,shop"),
        secret("prefix-of-a-sibling", url=f"{listener}/tea/", namespaces="*"),
    ])
    refusals = {
        "for-another-repo": "may be sent to https://git.example.invalid/team/gitops.git only",
        "never-opted-in": "does not opt in",
        "other-namespaces": "may be used by PatchPlans of billing, shop only",
        "prefix-of-a-sibling": f"may be sent to {listener}/tea/ only",
    }
    for name in refusals:
        plan(namespace, name, evil, name)
    for name, why in refusals.items():
        condition = wait_for(lambda: (c := ready(namespace, name)) and c["reason"] == "CredentialsRefused" and c,
                             what=f"{name} refused")
        assert why in condition["message"], condition
        assert TOKEN not in str(get_json("patchplan", name, "-n", namespace))
    # Each refusal is decided before any network call of that tick: nothing arrived.
    assert Recorder.seen == [], Recorder.seen
    assert {get_json("patchplan", n, "-n", namespace)["status"]["phase"] for n in refusals} == {"Pending"}

    # The control: a Secret that names the listener's URL is sent there. The listener can see a leak.
    apply_docs(namespace, [secret("names-the-listener", url=evil, namespaces=namespace)])
    plan(namespace, "allowed", evil, "names-the-listener")
    wait_for(lambda: Recorder.seen, timeout=30, what="the operator to reach the repository it was allowed to")
    sent = [r["headers"].get("Authorization", "") for r in Recorder.seen]
    assert any(base64.b64decode(h.split()[-1]).decode().endswith(TOKEN) for h in sent if h.startswith("Basic"))


def test_the_admins_host_allow_list_refuses_any_other_repository_before_connecting(solo_namespace, seed_runbooks,
                                                                                    listener):
    proc = start_operator(CACHE / "operator-credentials-test.log",
                          {"RC_NAMESPACES": solo_namespace, "RC_GITOPS_ALLOWED_HOSTS": "git.example.com,*.corp.invalid"})
    try:
        plan(solo_namespace, "anywhere", f"{listener}/team/gitops.git", None)
        condition = wait_for(lambda: (c := ready(solo_namespace, "anywhere")) and c["reason"] == "RepositoryNotAllowed"
                             and c, what="the host refused")
        assert "not in the operator's allowed repository hosts" in condition["message"]
        assert Recorder.seen == []
    finally:
        stop_operator(proc)
