"""The intake trusts no more than it must (issue 19, item 6): over real HTTP, against the real apiserver.

Most posts go to the session operator's receiver (tests/conftest.py: INTAKE_URL, its token, its
config). A test that needs a setting of its own (a small queue) serves a receiver in this process,
built as ``intake.server.start`` builds it, on the same apiserver. The oracles are the apiserver's
objects and refusals, and the HTTP answers Alertmanager itself would act on (status, Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from reliability_center.intake.config import ConfigError, IntakeConfig
from reliability_center.intake.incidents import Incidents, Outcome
from reliability_center.intake.mapping import Plan
from reliability_center.intake.server import Receiver, TokenFile, start
from tests.conftest import ALERT_CATEGORY_PREFIX, INTAKE_TOKEN_FILE
from tests.e2e.test_intake import alert_category, am_alert, expected_name, incidents, payload, post  # noqa: F401
from tests.support.cluster import apply_runbook, create_object, get_json, kubectl, wait_for
from tests.support.incidents import incident
from tests.support.processes import free_port

pytestmark = pytest.mark.usefixtures("operator")


@contextlib.contextmanager
def serving(receiver: Receiver) -> Iterator[str]:
    """The receiver's aiohttp app on a free local port, its event loop on a thread of its own."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(receiver.app(), access_log=None)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/alerts"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def spread(body: dict[str, Any], *places: tuple[str, str]) -> dict[str, Any]:
    """The post's alerts, the i-th in places[i] = (namespace, tenant): a group whose group_by leaves both out."""
    for alert, (namespace, tenant) in zip(body["alerts"], places, strict=True):
        alert["labels"].update(namespace=namespace, tenant=tenant)
    for key in ("namespace", "tenant"):
        body["commonLabels"].pop(key, None)
        body["groupLabels"].pop(key, None)
    return body


class HeldIncidents(Incidents):
    """The real Incidents (the real apiserver), each post held until the test releases them: a slow apiserver."""

    def __init__(self, kube: Any):
        super().__init__(kube)
        self.release = threading.Event()
        self.holding = 0
        self._count = threading.Lock()

    def apply(self, plans: list[Plan]) -> Outcome:
        with self._count:
            self.holding += 1
        self.release.wait(60)
        return super().apply(plans)


# ------------------------------------------------------------------------------ a bounded queue


def test_a_full_queue_answers_429_with_retry_after_and_the_held_posts_still_land(kube, namespace, alert_category):
    config = IntakeConfig(namespaces=[namespace], categories=[alert_category], max_pending_posts=2)
    held = HeldIncidents(kube)
    bodies = [payload(namespace, alert_category, am_alert(f"ca{i}"), group=f"queue-{i}") for i in range(3)]
    answers: dict[int, httpx.Response] = {}
    with serving(Receiver(config, TokenFile(str(INTAKE_TOKEN_FILE)), held)) as url:
        def send(i: int) -> None:
            answers[i] = post(bodies[i], url=url)

        senders = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for sender in senders:
            sender.start()
        try:
            wait_for(lambda: held.holding == 2, timeout=30, what="two posts held in the intake executor")
            full = post(bodies[2], url=url)
        finally:
            held.release.set()
        for sender in senders:
            sender.join(60)
    assert full.status_code == 429, full.text
    assert int(full.headers["Retry-After"]) > 0
    assert full.json()["error"] == "TooManyPendingPosts" and "maxPendingPosts" in full.json()["message"]
    assert held.holding == 2  # the refused post never reached the executor
    assert [answers[i].status_code for i in range(2)] == [200, 200], [answers[i].text for i in range(2)]
    # The apiserver holds the two held posts' Incidents and not the refused one's (Alertmanager retries it).
    assert sorted(incidents(kube, namespace)) == sorted(expected_name(b, alert_category) for b in bodies[:2])


# ------------------------------------------------------------------------------ a name conflict drops nothing else


def test_a_name_taken_by_another_category_fails_only_its_own_partition(kube, namespace, second_namespace,
                                                                         alert_category):
    body = spread(payload(namespace, alert_category, am_alert("aa1"), am_alert("bb2"), am_alert("cc3"),
                          group="shared"),
                  (namespace, "acme"), (namespace, "globex"), (second_namespace, "acme"))
    squatted = expected_name(body, alert_category, "acme")
    # Someone made an Incident under the intake's predictable name for (namespace, acme), of another category.
    create_object(namespace, incident(squatted, category="not-" + alert_category, summary="squatter"))
    response = post(body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["failed"] == [{"incident": f"{namespace}/{squatted}", "error": "NameTaken",
                                 "message": answer["failed"][0]["message"]}]
    assert "is not this alert group's" in answer["failed"][0]["message"]
    # The other partitions of the same post were handled: the apiserver holds their Incidents.
    globex, elsewhere = expected_name(body, alert_category, "globex"), expected_name(body, alert_category, "acme")
    assert sorted(answer["created"]) == sorted([f"{namespace}/{globex}", f"{second_namespace}/{elsewhere}"])
    here = incidents(kube, namespace)
    assert sorted(here) == sorted([squatted, globex])
    assert [s["fingerprint"] for s in here[globex]["spec"]["signals"]] == ["bb2"]
    assert [s["fingerprint"] for s in incidents(kube, second_namespace)[elsewhere]["spec"]["signals"]] == ["cc3"]
    # And the squatter's Incident is untouched: no signal of the post was merged into it.
    assert here[squatted]["spec"]["category"] == "not-" + alert_category
    assert not here[squatted]["spec"].get("signals")
    # A post whose only partition is the squatted one: nothing is accepted, a 409 (Alertmanager does
    # not retry it: retrying cannot free the name).
    alone = spread(payload(namespace, alert_category, am_alert("aa1"), group="shared"), (namespace, "acme"))
    refused = post(alone)
    assert (refused.status_code, refused.json()["error"]) == (409, "NameTaken"), refused.text


# ------------------------------------------------------------------------------ tenants


def test_tenant_star_and_tenants_outside_the_allow_list_are_refused_and_open_nothing(kube, namespace,
                                                                                      alert_category):
    # The session operator's intake (no tenants: list): any one tenant name, never "*".
    star = post(payload(namespace, alert_category, am_alert("5a"), tenant="*"))
    assert (star.status_code, star.json()["error"]) == (422, "TenantNotAllowed"), star.text
    assert "'*'" in star.json()["message"] and "5a" in star.json()["message"]
    # An intake whose config lists the tenants, and lets one post open at most two incidents.
    config = IntakeConfig(namespaces=[namespace], categories=[alert_category], tenants=["acme", "team-*"],
                          max_incidents_per_post=2)
    with serving(Receiver(config, TokenFile(str(INTAKE_TOKEN_FILE)), Incidents(kube, config))) as url:
        outsider = post(payload(namespace, alert_category, am_alert("6b"), tenant="globex"), url=url)
        three = spread(payload(namespace, alert_category, am_alert("7a"), am_alert("7b"), am_alert("7c"),
                               group="three"), (namespace, "acme"), (namespace, "team-a"), (namespace, "team-b"))
        too_many = post(three, url=url)
        assert incidents(kube, namespace) == {}  # none of the three refusals opened anything
        two = spread(payload(namespace, alert_category, am_alert("8a"), am_alert("8b"), group="two"),
                     (namespace, "acme"), (namespace, "team-a"))
        accepted = post(two, url=url)
    assert (outsider.status_code, outsider.json()["error"]) == (422, "TenantNotAllowed"), outsider.text
    assert "'globex'" in outsider.json()["message"] and "6b" in outsider.json()["message"]
    assert (too_many.status_code, too_many.json()["error"]) == (422, "TooManyIncidents"), too_many.text
    assert accepted.status_code == 200, accepted.text
    assert sorted(incidents(kube, namespace)) == sorted(expected_name(two, alert_category, t)
                                                        for t in ("acme", "team-a"))


# ------------------------------------------------------------------------------ rate limits


@pytest.fixture
def other_category() -> Iterator[str]:
    """A second allowed category a Runbook handles (as test_intake.alert_category)."""
    category = f"{ALERT_CATEGORY_PREFIX}{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [{"name": "blast-radius", "level": 1, "action": "blast-radius"}]})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook status")
    yield category
    kubectl("delete", "runbook", f"rb-{category}", "--wait=false", check=False)


def test_rate_limits_count_per_namespace_and_category_so_new_tenant_strings_do_not_dodge_them(
        kube, namespace, alert_category, other_category):
    config = IntakeConfig(namespaces=[namespace], categories=[alert_category, other_category],
                          rate_limits={"perNamespace": 3, "perCategory": {alert_category: 2}})
    with serving(Receiver(config, TokenFile(str(INTAKE_TOKEN_FILE)), Incidents(kube, config))) as url:
        def opening(category: str, tenant: str, fingerprint: str) -> httpx.Response:
            return post(payload(namespace, category, am_alert(fingerprint), tenant=tenant, group=tenant), url=url)

        # Each post a fresh tenant string: the category's limit (2) holds all the same.
        answers = [opening(alert_category, f"tenant-{i}", f"a{i}") for i in range(3)]
        # Another category: the namespace's limit (3) counts every category.
        others = [opening(other_category, f"tenant-{i}", f"b{i}") for i in range(3, 5)]
        # A post that merges into an Incident already open is no new incident: no limit applies.
        merged = post(payload(namespace, alert_category, am_alert("a0"), am_alert("c0"), tenant="tenant-0",
                              group="tenant-0"), url=url)
    assert [a.status_code for a in answers + others] == [200, 200, 429, 200, 429], [a.text for a in answers + others]
    for refused, limit in ((answers[2], "perCategory"), (others[1], "perNamespace")):
        assert refused.json()["error"] == "RateLimited" and limit in refused.json()["message"], refused.text
        assert int(refused.headers["Retry-After"]) > 0
    assert merged.status_code == 200 and merged.json()["updated"], merged.text
    made = incidents(kube, namespace)
    assert sorted((i["spec"]["category"], i["spec"]["tenant"]) for i in made.values()) == sorted(
        [(alert_category, "tenant-0"), (alert_category, "tenant-1"), (other_category, "tenant-3")])


# ------------------------------------------------------------------------------ a resolve reaches its group's alone

MALLORY = ("--as=mallory", "--as-group=system:authenticated")
#: What the admission policy reliability-center-intake-incidents says when it refuses.
INTAKE_REFUSAL = "the intake's record of the alert group"


def as_mallory(*args: str, input: str | None = None) -> Any:
    return kubectl(*args, *MALLORY, input=input, check=False)


def test_an_editor_can_neither_forge_the_intakes_group_record_nor_have_its_alerts_merged_into_her_incident(
        kube, namespace, alert_category):
    """mallory holds the built-in edit in the namespace (so she may create and edit Incidents there)."""
    kubectl("create", "rolebinding", "mallory-edit", "--clusterrole=edit", "--user=mallory", "-n", namespace)
    victim = payload(namespace, alert_category, am_alert("d1"), group="victim")
    victim_name = expected_name(victim, alert_category)
    assert post(victim).json()["created"] == [f"{namespace}/{victim_name}"]
    record = incidents(kube, namespace)[victim_name]["metadata"]
    group_key_sha = record["annotations"]["reliability.center/alert-group-sha256"]
    assert group_key_sha == hashlib.sha256(victim["groupKey"].encode()).hexdigest()

    # 1. She cannot make an Incident that passes for one the intake opened, nor relabel or re-key the intake's.
    squat = payload(namespace, alert_category, am_alert("e1"), group="squatted")
    squat_name = expected_name(squat, alert_category)
    forged = incident(squat_name, category=alert_category, summary="mine",
                      labels={"reliability.center/source": "alertmanager",
                              "reliability.center/alert-group": squat_name.rsplit("-", 1)[1]})
    forged["metadata"]["annotations"] = {"reliability.center/alert-group-key": squat["groupKey"],
                                         "reliability.center/alert-group-sha256":
                                             hashlib.sha256(squat["groupKey"].encode()).hexdigest()}
    made = as_mallory("create", "-n", namespace, "-f", "-", input=json.dumps(forged))
    assert made.returncode != 0 and INTAKE_REFUSAL in made.stderr, made.stderr
    for change in (["annotate", "--overwrite", "incident", victim_name,
                    f"reliability.center/alert-group-sha256={'0' * 64}"],
                   ["label", "incident", victim_name, "reliability.center/source-"]):
        changed = as_mallory(*change, "-n", namespace)
        assert changed.returncode != 0 and INTAKE_REFUSAL in changed.stderr, (change, changed.stderr)
    assert incidents(kube, namespace)[victim_name]["metadata"]["annotations"][
        "reliability.center/alert-group-sha256"] == group_key_sha
    # Editing what an editor may edit on the intake's Incident stays allowed.
    assert as_mallory("annotate", "incident", victim_name, "note=looked-at", "-n", namespace).returncode == 0

    # 2. Her Incident under the intake's predictable name (all she may make): the group's firing and its
    # resolve do not reach it; they fail that partition (NameTaken), her Incident is as she made it.
    plain = incident(squat_name, category=alert_category, summary="mine")
    assert as_mallory("create", "-n", namespace, "-f", "-", input=json.dumps(plain)).returncode == 0
    resolved = payload(namespace, alert_category, am_alert("e1", status="resolved", ends="2026-11-28T15:44:00Z"),
                       group="squatted")
    for body in (squat, resolved):
        answer = post(body)
        assert answer.status_code == 409 and answer.json()["error"] == "NameTaken", answer.text
    assert not incidents(kube, namespace)[squat_name]["spec"].get("signals")

    # 3. An Incident the operator itself recorded for another group under the name (what a collision of the
    # name's 10-hex hash would give): a resolve of this group does not reach it either.
    other = payload(namespace, alert_category, am_alert("f1"), group="collides")
    other_name = expected_name(other, alert_category)
    recorded_elsewhere = incident(other_name, category=alert_category, summary="another group's",
                                  signals=[{"source": "alertmanager", "name": "x", "fingerprint": "f1",
                                            "time": "2026-11-28T15:39:32.248000Z", "resolved": False}],
                                  labels={"reliability.center/source": "alertmanager",
                                          "reliability.center/alert-group": other_name.rsplit("-", 1)[1]})
    recorded_elsewhere["metadata"]["annotations"] = {"reliability.center/alert-group-sha256": "0" * 64}
    create_object(namespace, recorded_elsewhere)  # the test's client holds records.reliability.center: it may
    answer = post(payload(namespace, alert_category, am_alert("f1", status="resolved", ends="2026-11-28T15:44:00Z"),
                          group="collides"))
    assert answer.status_code == 409 and answer.json()["error"] == "NameTaken", answer.text
    assert [s["resolved"] for s in incidents(kube, namespace)[other_name]["spec"]["signals"]] == [False]

    # And the group's own resolve reaches its own Incident.
    done = post(payload(namespace, alert_category, am_alert("d1", status="resolved", ends="2026-11-28T15:44:00Z"),
                        group="victim"))
    assert done.json()["updated"] == [f"{namespace}/{victim_name}"], done.text
    assert [s["resolved"] for s in incidents(kube, namespace)[victim_name]["spec"]["signals"]] == [True]


# ------------------------------------------------------------------------------ TLS


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl (the Secret's tls.crt, tls.key)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=intake",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_the_intake_serves_tls_from_the_secrets_files_and_plain_http_only_when_allowed(
        kube, namespace, alert_category, certificate, tmp_path):
    cert, key = certificate
    config_file = tmp_path / "intake.yaml"
    config_file.write_text(json.dumps({"namespaces": [namespace], "categories": [alert_category]}))
    port = free_port()

    async def serve(**tls: Any) -> web.AppRunner:
        return await start(kube, port, str(INTAKE_TOKEN_FILE), str(config_file), host="127.0.0.1", **tls)

    # Neither a certificate nor the explicit permission: it does not serve, and says why.
    for tls in ({}, {"tls_cert_file": str(cert)}, {"tls_cert_file": str(cert), "tls_key_file": str(tmp_path / "x")}):
        with pytest.raises(ConfigError, match="RC_INTAKE_TLS|RC_INTAKE_ALLOW_PLAIN_HTTP"):
            asyncio.run(serve(**tls))
    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(serve(tls_cert_file=str(cert), tls_key_file=str(key)))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        body = payload(namespace, alert_category, am_alert("71"), group="tls")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
            answer = post(body, url=f"https://127.0.0.1:{port}/alerts", client=client)
        assert answer.status_code == 200, answer.text
        with pytest.raises(httpx.HTTPError):  # the token never travels in clear to it
            post(body, url=f"http://127.0.0.1:{port}/alerts")
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert list(incidents(kube, namespace)) == [expected_name(body, alert_category)]
    # Plain HTTP when allowed explicitly (RC_INTAKE_ALLOW_PLAIN_HTTP=true, as the test session's operator).
    async def plain() -> None:
        await (await serve(allow_plain_http=True)).cleanup()

    asyncio.run(plain())
