"""Merges seen at once (issue 23, item 4): a real Gitea's webhook moves a PatchPlan to Merged without a poll.

An operator of this test's own serves one solo namespace with its pull-request poll (RC_PATCHPLAN_POLL,
and its ceiling) an hour long, far above the test's deadline: a plan that reaches Merged within the
deadline was woken by the webhook. The webhook is the real one Gitea sends, created on the repository
through Gitea's API with a secret (Gitea signs each delivery with ``X-Gitea-Signature``).

Oracles: Gitea's own pull request (open, merged, its merge commit), the PatchPlan as the apiserver
holds it, and the operator's work-queue metric of passes made (``workqueue_work_duration_seconds``,
counted by the queue, not by the receiver). Posts that are unsigned or signed with another secret get
401 and queue no pass; a post signed with the right secret that claims a merge Gitea has not seen
wakes the plan, whose pass asks Gitea and leaves it Proposed.

The receiver's limits (413, 429, 415, 404, 405, 503) are checked on a receiver served in this process,
as ``intake.forge_hooks.start`` builds it, with a recorder in place of the work queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from reliability_center.gateway import Ref
from reliability_center.intake.forge_hooks import MAX_BODY_BYTES, ForgeHooks, NotLeader, PullRequestEvent
from reliability_center.intake.server import TokenFile
from tests.conftest import CACHE, start_operator, stop_operator
from tests.gitea.conftest import DEPLOYMENT, create_repo
from tests.support.cluster import apply_docs, kubectl, repository_secret, wait_for
from tests.support.processes import free_port

pytestmark = pytest.mark.gitea

#: The operator's pull-request poll, and its ceiling: an hour. Nothing in this test waits that long.
POLL = 3600
#: How long a merge may take to be seen: far below POLL.
DEADLINE = 30
SECRET = uuid.uuid4().hex


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def hooked(kube, solo_namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An operator serving ``solo_namespace`` with forge webhooks on and an hour-long pull-request poll."""
    secret_file = tmp_path / "forge-secret"
    secret_file.write_text(SECRET + "\n")
    port, metrics_port = free_port(), free_port()
    proc = start_operator(CACHE / f"operator-forge-hooks-{solo_namespace}.log", {
        "RC_NAMESPACES": solo_namespace, "RC_METRICS_PORT": str(metrics_port),
        "RC_PATCHPLAN_POLL": str(POLL), "RC_PATCHPLAN_POLL_MAX": str(POLL),
        "RC_FORGE_HOOKS_PORT": str(port), "RC_FORGE_HOOKS_SECRET_FILE": str(secret_file),
        "RC_FORGE_HOOKS_ALLOW_PLAIN_HTTP": "true",  # Gitea posts on loopback; the HMAC key never travels
        "RC_GITOPS_ALLOW": "apps/**"})
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        assert proc.poll() is None, "the operator exited"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        return False

    try:
        wait_for(serving, 60, "the forge webhook receiver to serve")
        yield {"namespace": solo_namespace, "url": f"{base}/forge/gitea", "metrics": f"http://127.0.0.1:{metrics_port}"}
    finally:
        stop_operator(proc)


def passes(metrics_url: str) -> float:
    """PatchPlan passes the operator's work queue has made (its own metric)."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "workqueue_work_duration_seconds_count" and s.labels.get("name") == "patchplans")


def status(kube, namespace: str, name: str) -> dict[str, Any]:
    return (kube.get(Ref("PatchPlan", namespace, name)) or {}).get("status") or {}


def gitea_post(url: str, payload: dict[str, Any], signature: str | None) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Gitea-Event": "pull_request",
               **({"X-Gitea-Signature": signature} if signature is not None else {})}
    return httpx.post(url, content=body, headers=headers, timeout=10)


def test_a_gitea_webhook_moves_a_patchplan_to_merged_without_a_poll(kube, gitea, hooked):
    namespace = hooked["namespace"]
    repo = create_repo(gitea, {"apps/shop/deployment.yaml": DEPLOYMENT})
    apply_docs(namespace, [repository_secret("gitops-credentials", repo.url, username=gitea.user,
                                             token=gitea.token)])
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan", "metadata": {"name": "scale-web"},
        "spec": {"repository": {"url": repo.url, "provider": "gitea", "credentialsSecret": "gitops-credentials"},
                 "title": "Scale web to 5", "changes": [{"path": "apps/shop/deployment.yaml",
                                                         "operation": "setValue", "yamlPath": "spec.replicas",
                                                         "value": 5}]}}))
    proposed = wait_for(lambda: (s := status(kube, namespace, "scale-web")).get("phase") == "Proposed" and s,
                        DEADLINE, "the PatchPlan to be Proposed")
    number = proposed["pullRequest"]["number"]
    assert repo.pull(number)["state"] == "open"
    # The webhook, made now: Gitea's delivery of the opening would wake the plan once more, uncounted.
    hook = gitea.api("POST", f"{repo.path}/hooks", json={
        "type": "gitea", "active": True, "events": ["pull_request"], "branch_filter": "*",
        "config": {"url": hooked["url"], "content_type": "json", "secret": SECRET}})
    assert hook.status_code == 201, hook.text

    # A payload that claims the merge, as Gitea would shape it, without Gitea's signature or with another key.
    lie = {"action": "closed", "number": number, "pull_request": {"number": number, "merged": True,
                                                                  "merge_commit_sha": "0" * 40},
           "repository": {"full_name": f"{gitea.user}/{repo.name}",
                          "html_url": f"{gitea.url}/{gitea.user}/{repo.name}"}}
    before = passes(hooked["metrics"])
    unsigned = gitea_post(hooked["url"], lie, None)
    forged = gitea_post(hooked["url"], lie, sign(json.dumps(lie).encode(), "not-the-secret"))
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "Unauthorized"), unsigned.text
    assert (forged.status_code, forged.json()["error"]) == (401, "InvalidSignature"), forged.text

    # Signed with the secret, it wakes the plan: the pass asks Gitea, which says open, and nothing moves.
    signed = gitea_post(hooked["url"], lie, sign(json.dumps(lie).encode()))
    assert signed.status_code == 202, signed.text
    assert signed.json()["woken"] == [f"{namespace}/scale-web"]
    wait_for(lambda: passes(hooked["metrics"]) > before, DEADLINE, "the woken plan's pass")
    assert passes(hooked["metrics"]) == before + 1  # the one the signed post queued; the refused ones, none
    assert status(kube, namespace, "scale-web")["phase"] == "Proposed"
    assert repo.pull(number)["state"] == "open"

    # The reviewer merges in Gitea; Gitea's own webhook brings the plan to Merged long before any poll.
    merged_pr = repo.merge(number)
    merged = wait_for(lambda: (s := status(kube, namespace, "scale-web")).get("phase") == "Merged" and s,
                      DEADLINE, "the PatchPlan to be Merged (the poll is an hour away)")
    assert merged["pullRequest"]["mergeCommit"] == merged_pr["merge_commit_sha"] == repo.head("main")


# ------------------------------------------------------------------------------ the receiver's limits


@contextlib.contextmanager
def serving(hooks: ForgeHooks) -> Iterator[str]:
    """The receiver's aiohttp app on a free local port, its event loop on a thread of its own."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(hooks.app(), access_log=None)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class Recorder:
    def __init__(self) -> None:
        self.events: list[PullRequestEvent] = []

    def __call__(self, event: PullRequestEvent) -> list[str]:
        self.events.append(event)
        return ["shop/scale-web"]


GITHUB_EVENT = {"action": "closed", "number": 7, "repository": {"html_url": "https://github.com/acme/gitops"}}


def github_post(base: str, body: bytes, content_type: str = "application/json", secret: str = SECRET,
                **headers: str) -> httpx.Response:
    return httpx.post(f"{base}/forge/github", content=body, timeout=10, headers={
        "Content-Type": content_type, "X-GitHub-Event": "pull_request",
        "X-Hub-Signature-256": f"sha256={sign(body, secret)}", **headers})


def test_the_receiver_refuses_what_it_must_and_wakes_only_for_an_authentic_pull_request_event(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    woken = Recorder()
    body = json.dumps(GITHUB_EVENT).encode()
    with serving(ForgeHooks(TokenFile(str(secret_file)), woken, rate=0.001, burst=20)) as base:
        big = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
        too_big = github_post(base, big)
        form = github_post(base, b"payload=" + body, content_type="application/x-www-form-urlencoded")
        push = httpx.post(f"{base}/forge/github", content=body, timeout=10, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-Hub-Signature-256": f"sha256={sign(body)}"})
        elsewhere = httpx.post(f"{base}/forge/bitbucket", content=body, timeout=10)
        get = httpx.get(f"{base}/forge/gitea", timeout=10)
        gitlab_with_github_signature = httpx.post(f"{base}/forge/gitlab", content=body, timeout=10, headers={
            "Content-Type": "application/json", "X-Gitlab-Event": "Merge Request Hook",
            "X-Hub-Signature-256": f"sha256={sign(body)}"})
        assert woken.events == []
        accepted = github_post(base, body)
        assert [e.number for e in woken.events] == [7]
        # The bucket (20, refilled once in 1000 s) is spent by now: the rest is refused before any HMAC.
        flood = [github_post(base, body, secret="wrong") for _ in range(20)]
    assert (too_big.status_code, too_big.json()["error"]) == (413, "BodyTooLarge")
    assert (form.status_code, form.json()["error"]) == (415, "UnsupportedMediaType")
    assert push.status_code == 200 and "ignored" in push.json()
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (404, "UnknownForge")
    assert (get.status_code, get.headers["Allow"]) == (405, "POST")
    assert (gitlab_with_github_signature.status_code, gitlab_with_github_signature.json()["error"]) == \
        (401, "Unauthorized")
    assert accepted.status_code == 202 and accepted.json() == {"repository": "acme/gitops", "number": 7,
                                                               "woken": ["shop/scale-web"]}
    statuses = [r.status_code for r in flood]
    assert 429 in statuses and set(statuses) <= {401, 429}, statuses
    assert int(flood[-1].headers["Retry-After"]) > 0
    assert len(woken.events) == 1


def test_a_standby_says_it_is_not_the_leader(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)

    def standby(event: PullRequestEvent) -> list[str]:
        raise NotLeader()

    with serving(ForgeHooks(TokenFile(str(secret_file)), standby)) as base:
        answer = github_post(base, json.dumps(GITHUB_EVENT).encode())
    assert (answer.status_code, answer.json()["error"]) == (503, "NotLeader")
    assert int(answer.headers["Retry-After"]) > 0


def test_without_a_secret_the_receiver_accepts_nothing(tmp_path):
    woken = Recorder()
    with serving(ForgeHooks(TokenFile(str(tmp_path / "absent")), woken)) as base:
        body = json.dumps(GITHUB_EVENT).encode()
        answer = github_post(base, body)
    assert (answer.status_code, answer.json()["error"]) == (503, "NoSecret")
    assert woken.events == []

