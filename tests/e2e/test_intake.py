"""The Alertmanager receiver of the session operator (RC_INTAKE_PORT), over real HTTP, against the real apiserver.

Payloads are shaped like the ones the real Alertmanager 0.25 posts (tests/unit/fixtures). The
oracle for what was made is the apiserver's list of Incidents (and Events), never the receiver's
own answer; the metrics are read from the operator's /metrics endpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reliability_center.gateway import Ref
from tests.conftest import (ALERT_CATEGORY_PREFIX, INTAKE_PORT, INTAKE_TOKEN, INTAKE_TOKEN_FILE, INTAKE_URL,
                            METRICS_PORT)
from tests.gitea.conftest import create_repo
from tests.support.cluster import ROOT, apply_docs, apply_runbook, get_json, kubectl, repository_secret, wait_for

pytestmark = pytest.mark.usefixtures("operator")

RELCTL = str(Path(sys.executable).with_name("relctl"))
FIRING = json.loads((ROOT / "tests" / "unit" / "fixtures" / "alertmanager_firing.json").read_text())


def am_alert(fingerprint: str, status: str = "firing", starts: str = "2026-11-28T15:39:32.248Z",
             ends: str = "0001-01-01T00:00:00Z", **labels: str) -> dict[str, Any]:
    alert = copy.deepcopy(FIRING["alerts"][0])
    alert["labels"].update(labels)
    alert.update(status=status, startsAt=starts, endsAt=ends, fingerprint=fingerprint)
    return alert


def payload(namespace: str, category: str, *alerts: dict[str, Any], group: str = "g", tenant: str = "acme",
            **common: str) -> dict[str, Any]:
    """Alertmanager's post for one group: the real one's shape, with this test's labels."""
    labels = {"namespace": namespace, "category": category, "tenant": tenant, **common}
    alerts = tuple({**a, "labels": {**a["labels"], **labels}} for a in alerts) or (am_alert("a1", **labels),)
    body = copy.deepcopy(FIRING)
    body.update(alerts=list(alerts), groupKey=f'{{}}:{{namespace="{namespace}", group="{group}"}}',
                status="firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
                commonLabels={**body["commonLabels"], **labels}, groupLabels=labels)
    return body


def expected_name(body: dict[str, Any], category: str, tenant: str = "acme") -> str:
    return f"{category}-{tenant}-{hashlib.sha256(body['groupKey'].encode()).hexdigest()[:10]}"


def post(body: Any = None, *, raw: bytes | None = None, token: str | None = INTAKE_TOKEN,
         content_type: str = "application/json", method: str = "POST", url: str = INTAKE_URL,
         headers: dict[str, str | bytes] | None = None, client: httpx.Client | None = None) -> httpx.Response:
    sent = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    content = raw if raw is not None else json.dumps(body).encode()
    return (client or httpx).request(method, url, content=content, headers=sent, timeout=30)


def incidents(kube, namespace: str) -> dict[str, dict[str, Any]]:
    return {i["metadata"]["name"]: i for i in kube.list("Incident", namespace)}


def metric(name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
def alert_category() -> Iterator[str]:
    """An allowed category (alert-*) that a Runbook handles: one read-only level 1 step."""
    category = f"{ALERT_CATEGORY_PREFIX}{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [{"name": "blast-radius", "level": 1, "action": "blast-radius"}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook status")
    yield category
    kubectl("delete", "runbook", f"rb-{category}", "--wait=false", check=False)


# ------------------------------------------------------------------------------ refusals


def refusals(ns: str, category: str) -> list[tuple[str, dict[str, Any], int, str]]:
    good = payload(ns, category)
    chunks = iter([b'{"version": "4", "alerts": ["', b"x" * (300 * 1024), b'"]}'])
    return [
        ("no token", {"body": good, "token": None}, 401, "Unauthorized"),
        ("wrong token", {"body": good, "token": "not-" + INTAKE_TOKEN}, 401, "InvalidToken"),
        ("basic auth", {"body": good, "token": None, "headers": {"Authorization": "Basic YTpi"}}, 401, "InvalidToken"),
        ("non-ASCII bearer", {"body": good, "token": None, "headers": {"Authorization": b"Bearer \xff"}},
         401, "InvalidToken"),
        ("non-ASCII after the token", {"body": good, "token": None,
                                       "headers": {"Authorization": f"Bearer {INTAKE_TOKEN}\u00e9".encode()}},
         401, "InvalidToken"),
        ("no scheme", {"body": good, "token": None, "headers": {"Authorization": INTAKE_TOKEN}}, 401, "InvalidToken"),
        ("scheme alone", {"body": good, "token": None, "headers": {"Authorization": "Bearer"}}, 401, "InvalidToken"),
        ("oversized body", {"raw": b'{"pad": "' + b"x" * (300 * 1024) + b'"}'}, 413, "BodyTooLarge"),
        ("oversized chunked body", {"raw": chunks}, 413, "BodyTooLarge"),
        ("invalid JSON", {"raw": b'{"version": "4", "alerts": [,]'}, 400, "InvalidJSON"),
        ("invalid UTF-8", {"raw": b'{"version": "4\xff\xfe"}'}, 400, "InvalidJSON"),
        ("not an object", {"body": [good]}, 400, "InvalidPayload"),
        ("wrong version", {"body": {**good, "version": "3"}}, 400, "UnsupportedVersion"),
        ("bad fingerprint", {"body": {**good, "alerts": [{**good["alerts"][0], "fingerprint": "../x"}]}},
         400, "InvalidPayload"),
        ("missing tenant label", {"body": payload(ns, category, tenant="")}, 422, "MissingLabels"),
        ("unknown category", {"body": payload(ns, "nosuchcategory")}, 422, "CategoryNotAllowed"),
        ("deep nesting", {"raw": b"[" * 100_000}, 400, "NestingTooDeep"),
        ("deep nesting in an object", {"raw": b'{"version": "4", "x": ' + b'{"a": ' * 20_000}, 400, "NestingTooDeep"),
        ("wrong content type", {"body": good, "content_type": "text/plain"}, 415, "UnsupportedMediaType"),
        ("tenant not a name", {"body": payload(ns, category, tenant="Acme Corp; rm -rf")}, 422, "InvalidTenant"),
        ("namespace not allowed", {"body": payload("kube-system", category)}, 422, "NamespaceNotAllowed"),
        ("GET", {"body": good, "method": "GET"}, 405, "MethodNotAllowed"),
        ("PUT", {"body": good, "method": "PUT"}, 405, "MethodNotAllowed"),
        ("too many alerts", {"body": payload(ns, category, *(am_alert(f"{i:x}") for i in range(101)))},
         413, "TooManyAlerts"),
        ("another path", {"body": good, "url": f"http://127.0.0.1:{INTAKE_PORT}/api/v2/alerts"}, 404, "NotFound"),
    ]


def test_malformed_and_hostile_posts_are_refused_with_a_reason_and_nothing_is_made(kube, namespace, alert_category):
    cases = refusals(namespace, alert_category)
    before = {reason: metric("reliability_center_intake_requests_total", result=reason) for *_, reason in cases}
    wrong = {}
    for what, request, status, reason in cases:
        response = post(**request)
        body = response.json()
        if (response.status_code, body.get("error")) != (status, reason) or not body.get("message"):
            wrong[what] = (response.status_code, body)
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), what
        if status == 405:
            assert response.headers["Allow"] == "POST", what
    assert not wrong, wrong
    for reason in before:
        count = sum(1 for *_, r in cases if r == reason)
        assert metric("reliability_center_intake_requests_total", result=reason) - before[reason] == count, reason
    # Nothing was created by any of them: not here, not where a refused post pointed.
    assert incidents(kube, namespace) == {} and incidents(kube, "kube-system") == {}
    # And the server still answers a valid post.
    good = payload(namespace, alert_category)
    response = post(good)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == [f"{namespace}/{expected_name(good, alert_category)}"]
    assert list(incidents(kube, namespace)) == [expected_name(good, alert_category)]
    assert httpx.get(f"http://127.0.0.1:{INTAKE_PORT}/healthz", timeout=10).status_code == 200


def test_the_token_is_read_again_when_its_secret_rotates(namespace, alert_category):
    """A mounted Secret changes by an atomic swap (a new file); no token at all refuses everything."""
    original = INTAKE_TOKEN_FILE.read_text()
    rotated = uuid.uuid4().hex

    def swap(text: str | None) -> None:
        if text is None:
            INTAKE_TOKEN_FILE.unlink()
            return
        tmp = INTAKE_TOKEN_FILE.with_suffix(".new")
        tmp.write_text(text)
        os.replace(tmp, INTAKE_TOKEN_FILE)

    body = payload(namespace, alert_category, am_alert("c0ffee"), group="rotation")
    try:
        swap(rotated + "\n")
        assert post(body).status_code == 401
        assert post(body, token=rotated).status_code == 200
        swap(None)
        response = post(body, token=rotated)
        assert (response.status_code, response.json()["error"]) == (503, "NoToken")
    finally:
        swap(original)
    assert post(body).status_code == 200


# ------------------------------------------------------------------------------ duplicates, merges, resolves


def test_two_peers_posting_the_same_group_concurrently_make_exactly_one_incident(kube, namespace, alert_category):
    first = payload(namespace, alert_category, am_alert("a1"))
    name = expected_name(first, alert_category)
    start = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def peer() -> None:
        with httpx.Client() as client:  # one connection pool each: two Alertmanager replicas
            start.wait()
            for _ in range(3):  # and each retries its post
                answers.append(post(first, client=client))

    threads = [threading.Thread(target=peer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert sum(a.json()["created"] == [f"{namespace}/{name}"] for a in answers) == 1, [a.json() for a in answers]
    found = incidents(kube, namespace)
    assert list(found) == [name]
    incident = found[name]
    assert incident["metadata"]["labels"]["reliability.center/source"] == "alertmanager"
    assert incident["metadata"]["labels"]["reliability.center/alert-group"] == name.rsplit("-", 1)[1]
    assert (incident["spec"]["category"], incident["spec"]["tenant"], incident["spec"]["severity"]) == (
        alert_category, "acme", "critical")
    assert [(s["fingerprint"], s["resolved"]) for s in incident["spec"]["signals"]] == [("a1", False)]

    # A later post of the group with a second alert: a signal more on the same object.
    second = payload(namespace, alert_category, am_alert("a1"), am_alert("b2", pod="other"))
    assert post(second).json()["updated"] == [f"{namespace}/{name}"]
    found = incidents(kube, namespace)
    assert list(found) == [name]
    assert [s["fingerprint"] for s in found[name]["spec"]["signals"]] == ["a1", "b2"]

    # a1 resolves: its signal says so, b2 still fires.
    resolved = payload(namespace, alert_category, am_alert("a1", status="resolved", ends="2026-11-28T15:44:00Z"),
                       am_alert("b2", pod="other"))
    assert post(resolved).json()["updated"] == [f"{namespace}/{name}"]
    assert post(resolved).json()["unchanged"] == [f"{namespace}/{name}"]  # Alertmanager's re-send: no write
    signals = {s["fingerprint"]: s for s in incidents(kube, namespace)[name]["spec"]["signals"]}
    assert signals["a1"]["resolved"] and signals["a1"]["resolvedAt"] == "2026-11-28T15:44:00.000000Z"
    assert not signals["b2"]["resolved"]
    assert list(incidents(kube, namespace)) == [name]


def test_concurrent_posts_of_different_alerts_of_one_group_lose_none(kube, namespace, alert_category):
    """Each post merges into the object as read (a compare-and-swap): 12 writers at once, 12 signals."""
    posts = [payload(namespace, alert_category, am_alert(f"f{i:02x}", pod=f"p{i}"), group="cas") for i in range(12)]
    name = expected_name(posts[0], alert_category)
    start = threading.Barrier(len(posts))
    codes: list[int] = []

    def peer(body: dict[str, Any]) -> None:
        start.wait()
        codes.append(post(body).status_code)

    threads = [threading.Thread(target=peer, args=(body,)) for body in posts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert codes == [200] * len(posts)
    found = incidents(kube, namespace)
    assert list(found) == [name]
    assert sorted(s["fingerprint"] for s in found[name]["spec"]["signals"]) == [f"f{i:02x}" for i in range(12)]


@pytest.mark.gitea
def test_a_closed_incident_makes_the_next_firing_a_new_episode(kube, namespace, alert_category, gitea):
    # The first episode is closed by the operator, as in production: a person resolves it, its postmortem
    # pull request is merged in the real Gitea, its five gates pass (this test never writes its status).
    repo = create_repo(gitea, {"README.md": "GitOps repository (intake episodes)\n"})
    apply_docs(namespace, [
        repository_secret("gitops-credentials", repo.url, username=gitea.user, token=gitea.token),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reliability-center-settings"},
         "data": {"gitopsRepoURL": repo.url, "gitopsProvider": "gitea",
                  "gitopsCredentialsSecret": "gitops-credentials"}}])
    first = payload(namespace, alert_category, am_alert("e1"), group="episodes")
    base = expected_name(first, alert_category)
    assert post(first).status_code == 200
    wait_for(lambda: (incidents(kube, namespace)[base].get("status") or {}).get("phase") == "Mitigated",
             timeout=60, what="the first episode to be mitigated")
    resolved = subprocess.run([RELCTL, "resolve", base, "-n", namespace], capture_output=True, text=True, timeout=60)
    assert resolved.returncode == 0, resolved.stderr
    number = wait_for(lambda: ((kube.get(Ref("PatchPlan", namespace, f"{base}-postmortem")) or {}).get("status")
                               or {}).get("pullRequest", {}).get("number"), timeout=90,
                      what="the postmortem pull request")
    repo.merge(number)  # the reviewer
    wait_for(lambda: (incidents(kube, namespace)[base].get("status") or {}).get("phase") == "Closed",
             timeout=90, what="the operator to close the first episode")
    # Only resolves, and every episode closed: nothing is opened.
    late = payload(namespace, alert_category, am_alert("e1", status="resolved", ends="2026-11-28T15:45:00Z"),
                   group="episodes")
    assert post(late).json()["created"] == []
    assert list(incidents(kube, namespace)) == [base]
    # It fires again: a second episode, next to the closed one.
    again = payload(namespace, alert_category, am_alert("e1", starts="2026-11-28T16:00:00Z"), group="episodes")
    assert post(again).json()["created"] == [f"{namespace}/{base}-2"]
    found = incidents(kube, namespace)
    assert sorted(found) == [base, f"{base}-2"]
    assert found[base]["status"]["phase"] == "Closed"
    assert [s["time"] for s in found[f"{base}-2"]["spec"]["signals"]] == ["2026-11-28T16:00:00.000000Z"]
    # The next post of the group goes to the open episode.
    assert post(again).json()["unchanged"] == [f"{namespace}/{base}-2"]


# ------------------------------------------------------------------------------ allowed, but nobody handles it


def test_an_allowed_category_no_runbook_handles_opens_nothing_and_says_so(kube, namespace):
    category = f"{ALERT_CATEGORY_PREFIX}{uuid.uuid4().hex[:8]}"  # allowed by the intake; no Runbook
    before = metric("reliability_center_intake_alerts_total", outcome="unhandled")
    body = payload(namespace, category, am_alert("d1", pod="search-0"), am_alert("d2", pod="search-1"))
    for _ in range(2):  # and Alertmanager's re-send
        response = post(body)
        assert response.status_code == 200, response.text
        assert response.json()["unhandled"] == [f"{namespace}/{category}/acme"] and not response.json()["created"]
    assert incidents(kube, namespace) == {}
    events = get_json("events", "-n", namespace, "--field-selector", "reason=UnhandledAlert")["items"]
    assert len(events) == 1, events
    (event,) = events
    assert event["type"] == "Warning"
    assert (event["involvedObject"]["kind"], event["involvedObject"]["name"]) == ("Namespace", namespace)
    for text in (f"category={category}", "tenant=acme", "alertname=RcErrorRatioHigh", f"namespace={namespace}"):
        assert text in event["message"], event["message"]
    assert metric("reliability_center_intake_alerts_total", outcome="unhandled") - before == 4  # 2 posts × 2 alerts
