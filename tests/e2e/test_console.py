"""The web console in a real browser (Debian's chromium, driven by Playwright), always acting as the person.

Each console runs as ``relctl console --as USER --as-group GROUP`` (impersonation, as kubectl does it): the
apiserver authenticates every request as that user, so RBAC and the admission policies decide, and admission
stamps who approved. The oracles are the cluster's own objects (Approvals as stored, the flag ConfigMap the step
writes, the Incident's spec and annotations) and the apiserver's own refusals.

Screenshots of the list and of an incident page are written to $RC_SCREENSHOTS (docs/ for the README's).
"""

from __future__ import annotations

import datetime
import http.server
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.cluster import CACHE, get_json, kubectl, wait_for
from tests.support.incidents import APPROVERS, create, incident, plan_digest, status, steps, wait_phase

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

RELCTL = str(pathlib.Path(sys.executable).with_name("relctl"))
CHROMIUM = "/usr/bin/chromium"
SHOTS = pathlib.Path(os.environ.get("RC_SCREENSHOTS") or CACHE / "screenshots")
#: The seed billing runbook (runbooks/): level 1 turns auto-invoicing off, level 2 (approved) dunning-retries.
LEVEL1_FLAG, LEVEL2_FLAG = "auto-invoicing.tenant.acme", "dunning-retries.tenant.acme"


class Console:
    """One ``relctl console`` process acting as one user; ``url`` is the one-time sign-in link it printed."""

    def __init__(self, user: str, groups: tuple[str, ...] = (), namespaces: tuple[str, ...] = ()):
        args = [RELCTL, "console", "--as", user, *(f"--as-group={g}" for g in groups),
                *(f"--watch-namespace={ns}" for ns in namespaces)]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stderr.readline() if self.proc.stderr else ""
        found = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=\S+)", line)
        assert found, f"relctl console printed no URL: {line!r}"
        self.url, self.base = found.group(1), f"http://127.0.0.1:{found.group(2)}"

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def open_console(browser) -> Iterator[Any]:
    """Start a console as a user and sign a fresh browser context in with its one-time link; returns (console,
    page)."""
    started: list[tuple[Console, Any]] = []

    def start(user: str, groups: tuple[str, ...] = (), namespaces: tuple[str, ...] = (),
              timezone_id: str | None = None) -> tuple[Console, Any]:
        console = Console(user, groups, namespaces)
        context = browser.new_context(**({"timezone_id": timezone_id} if timezone_id else {}))
        started.append((console, context))
        page = context.new_page()
        page.goto(console.url)
        assert page.url == console.base + "/", "the one-time token stays out of the URL once exchanged"
        return console, page

    yield start
    for console, context in started:
        context.close()
        console.close()


def flags(namespace: str) -> dict[str, str]:
    return get_json("configmap", "flags-billing", "-n", namespace)["data"]


def reader(namespace: str, user: str, *verbs: str, resources: str = "incidents.reliability.center") -> None:
    kubectl("create", "role", f"console-{user}", f"--verb={','.join(verbs)}", f"--resource={resources}",
            "-n", namespace)
    kubectl("create", "rolebinding", f"console-{user}", f"--role=console-{user}", f"--user={user}", "-n", namespace)


def test_an_incident_created_with_kubectl_appears_in_the_list_without_reload(namespace, open_console):
    console, page = open_console("alice", (APPROVERS,))  # the approvers may list incidents cluster-wide
    page.goto(f"{console.base}/?namespace={namespace}&sort=name")
    page.wait_for_selector("#live >> text=Live:")
    page.evaluate("window.notReloaded = true")
    create(namespace, incident("slow", category="perf", module="search"))
    row = page.wait_for_selector(f'tr[data-name="{namespace}/slow"]', timeout=15000)
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded"
    assert "perf" in row.inner_text() and "acme" in row.inner_text()
    create(namespace, incident("newer", category="perf", module="search"))
    page.wait_for_selector(f'tr[data-name="{namespace}/newer"]', timeout=15000)
    order = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.name)")
    assert order == [f"{namespace}/newer", f"{namespace}/slow"], "a live row lands where the URL's sort (by name) puts it"
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded"
    settled = wait_phase(namespace, "slow", {"Mitigated", "Escalated", "Failed"})["phase"]
    wait_for(lambda: page.inner_text(f'tr[data-name="{namespace}/slow"] td.phase') == settled, timeout=15,
             what=f"the row to follow the incident to {settled}, live")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1200, "height": 500})
    page.screenshot(path=str(SHOTS / "console-list.png"))


def test_an_approvers_click_creates_an_approval_stamped_by_the_apiserver_and_the_step_runs(app, open_console):
    create(app, incident("bill", category="billing", module="billing"))
    plan_digest(app, "bill", "disable-dunning")
    assert LEVEL2_FLAG not in flags(app)
    console, page = open_console("alice", (APPROVERS,))
    page.goto(f"{console.base}/incidents/{app}/bill")
    assert "The apiserver refused to show what this incident changed (its snapshots): ApiError 403" \
        in page.inner_text("main")  # alice may approve, not read ConfigMaps
    page.set_viewport_size({"width": 1200, "height": 1400})
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "console-incident.png"), full_page=True)
    page.fill("#step-disable-dunning input[name=comment]", "checked the dunning dashboard")
    page.click("#step-disable-dunning button[value=Approve]")
    assert "stamped by the apiserver as alice" in page.inner_text(".notice.ok")
    made = get_json("approvals", "-n", app)["items"]
    assert [(a["spec"]["approver"], a["spec"]["decision"], a["spec"]["step"]) for a in made] == \
        [("alice", "Approve", "disable-dunning")]
    wait_for(lambda: steps(status(app, "bill"))["disable-dunning"] == "Succeeded", timeout=60,
             what="the approved step to run")
    assert flags(app)[LEVEL2_FLAG] == "false"


def test_a_user_without_the_approve_verb_sees_the_apiservers_refusal_and_nothing_changes(app, open_console):
    create(app, incident("bill", category="billing", module="billing"))
    plan_digest(app, "bill", "disable-dunning")
    # May read incidents and create Approval objects, but lacks the approve verb: admission refuses.
    reader(app, "mallory", "get", "list", "watch", "create",
           resources="incidents.reliability.center,approvals.reliability.center")
    console, page = open_console("mallory", namespaces=(app,))
    page.goto(f"{console.base}/incidents/{app}/bill")
    page.click("#step-disable-dunning button[value=Approve]")
    refusal = page.inner_text(".notice.error")
    assert refusal.startswith("Not approved: ApiError 403:")
    assert f"user mallory may not approve incident bill in namespace {app}: approving needs the approve verb" \
        in refusal
    assert get_json("approvals", "-n", app)["items"] == []
    assert steps(status(app, "bill"))["disable-dunning"] == "AwaitingApproval"
    assert LEVEL2_FLAG not in flags(app)


def test_a_user_who_may_not_list_a_namespace_never_sees_its_incidents(namespace, second_namespace, open_console):
    create(namespace, incident("visible", category="perf", module="search"))
    create(second_namespace, incident("hidden", category="perf", module="search"))
    reader(namespace, "vera", "get", "list", "watch")  # nothing in second_namespace
    console, page = open_console("vera", namespaces=(namespace, second_namespace))
    page.goto(f"{console.base}/")
    page.wait_for_selector("#live >> text=Live")
    assert page.query_selector(f'tr[data-name="{namespace}/visible"]')
    text = page.inner_text("main")
    assert "hidden" not in text
    assert f"Namespace {second_namespace}: the apiserver refused to list its incidents:" in text
    assert f'cannot list resource "incidents" in API group "reliability.center" in the namespace ' \
           f'"{second_namespace}"' in text
    # Live: a new incident in each; the readable one arriving proves the feed ran past the other's.
    create(second_namespace, incident("hidden-later", category="perf", module="search"))
    create(namespace, incident("visible-later", category="perf", module="search"))
    page.wait_for_selector(f'tr[data-name="{namespace}/visible-later"]', timeout=15000)
    assert "hidden" not in page.inner_text("#rows")
    direct = page.goto(f"{console.base}/incidents/{second_namespace}/hidden")
    assert direct is not None and direct.status == 403
    assert f'User "vera" cannot get resource "incidents"' in page.inner_text("main")


def test_resolve_from_the_page_restores_level_1(app, open_console):
    create(app, incident("bill", category="billing", module="billing"))
    wait_phase(app, "bill", "Mitigated")
    assert flags(app)[LEVEL1_FLAG] == "false"
    kubectl("create", "rolebinding", "editor-rita", "--clusterrole=reliability-center-incident-editor",
            "--user=rita", "-n", app)
    reader(app, "rita", "get", "list", resources="configmaps")  # to see what changed (the snapshots, the flags)
    console, page = open_console("rita", namespaces=(app,))
    page.goto(f"{console.base}/incidents/{app}/bill")
    held = page.inner_text(f'table.changes tr[data-field="ConfigMap/{app}/flags-billing/data/{LEVEL1_FLAG}"]')
    assert held.split("\t") == ["acme", f"ConfigMap/{app}/flags-billing", f"/data/{LEVEL1_FLAG}", "absent",
                                 f'"{flags(app)[LEVEL1_FLAG]}"', f'"{flags(app)[LEVEL1_FLAG]}"'], held
    watching = page.context.new_page()  # a second tab, opened while Mitigated: it follows the incident live
    watching.goto(f"{console.base}/incidents/{app}/bill")
    watching.wait_for_selector("#incident-live >> text=Live:")
    assert watching.inner_text("dd.fact-phase") == "Mitigated"
    watching.evaluate("window.notReloaded = true")
    page.click("form.resolve button")
    assert "You resolved this incident" in page.inner_text("main"), page.inner_text("main")[:600]
    body = get_json("incident", "bill", "-n", app)
    assert body["spec"]["resolved"] is True
    assert body["metadata"]["annotations"]["reliability.center/resolved-by"] == "rita"  # stamped at admission
    st = wait_phase(app, "bill", "Verifying")
    assert steps(st)["stop-auto-invoicing"] == "Restored"
    wait_for(lambda: watching.inner_text("dd.fact-phase") == status(app, "bill")["phase"] != "Mitigated", timeout=15,
             what="the other tab to show the operator's new phase, live")
    assert watching.evaluate("window.notReloaded === true"), "the page was reloaded"
    assert LEVEL1_FLAG not in flags(app)


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another site (localhost is not 127.0.0.1 to a browser): a page that posts to the console on load."""

    target = ""
    html = ('<form id="f" method="post" action="{target}"><input name="csrf" value="guessed"></form>'
            '<script>document.getElementById("f").submit()</script>')

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        page = self.html.format(target=self.target).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_forged_cross_site_post_is_refused(namespace, open_console):
    create(namespace, incident("slow", category="perf", module="search"))
    kubectl("create", "rolebinding", "editor-rita", "--clusterrole=reliability-center-incident-editor",
            "--user=rita", "-n", namespace)
    console, page = open_console("rita", namespaces=(namespace,))
    target = f"{console.base}/incidents/{namespace}/slow/resolve"
    page.goto(f"{console.base}/incidents/{namespace}/slow")  # signed in: the session cookie is set
    csrf = page.get_attribute("form.resolve input[name=csrf]", "value")

    handler = type("Attacker", (_Attacker,), {"target": target})
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        forged = page.context.new_page()
        with forged.expect_navigation(url=target):
            forged.goto(f"http://localhost:{attacker.server_address[1]}/")
        assert "nothing was changed" in forged.inner_text("main") or "not signed in" in forged.inner_text("main")
    finally:
        attacker.shutdown()
    # The browser's own cookie and the page's real CSRF token, from a foreign Origin: still refused.
    foreign = page.request.post(target, form={"csrf": csrf or ""}, headers={"Origin": "http://evil.example"})
    assert foreign.status == 403 and "came from http://evil.example" in foreign.text()
    # Same origin and the cookie, without the session's CSRF token: refused.
    tokenless = page.request.post(target, form={"csrf": "guessed"}, headers={"Origin": console.base})
    assert tokenless.status == 403 and "CSRF token" in tokenless.text()
    assert not get_json("incident", "slow", "-n", namespace)["spec"].get("resolved")


def test_the_in_cluster_mode_acts_with_each_requests_bearer_token_and_nothing_else(namespace, second_namespace,
                                                                                    browser, tmp_path):
    """relctl console --bearer, as the chart runs it: each apiserver request carries the token its page request
    brought (from the proxy in front), and nothing else: not even the admin kubeconfig its environment names."""
    import base64

    import yaml

    config = yaml.safe_load(pathlib.Path(os.environ["KUBECONFIG"]).read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    create(namespace, incident("seen", category="perf", module="search"))
    create(second_namespace, incident("unseen", category="perf", module="search"))
    kubectl("create", "serviceaccount", "oncall", "-n", namespace)
    reader(namespace, f"system:serviceaccount:{namespace}:oncall", "get", "list", "watch")
    token = kubectl("create", "token", "oncall", "-n", namespace).stdout.strip()

    proc = subprocess.Popen([RELCTL, "console", "--bearer", "--apiserver", cluster["server"], "--ca-file", str(ca),
                             f"--watch-namespace={namespace}", f"--watch-namespace={second_namespace}"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        found = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", line)
        assert found, line
        base = found.group(1)
        anonymous = browser.new_context()
        answer = anonymous.new_page().goto(base + "/")
        assert answer is not None and answer.status == 401 and "carries no bearer token" in answer.text()
        anonymous.close()

        proxied = browser.new_context(extra_http_headers={"Authorization": f"Bearer {token}"})
        page = proxied.new_page()
        page.goto(base + "/")
        assert f"system:serviceaccount:{namespace}:oncall" in page.inner_text("header")
        assert page.query_selector(f'tr[data-name="{namespace}/seen"]')
        assert "unseen" not in page.inner_text("#rows")
        assert f'User "system:serviceaccount:{namespace}:oncall" cannot list resource "incidents"' \
            in page.inner_text("main")
        proxied.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def test_the_runbooks_page_shows_steps_by_level_guards_and_the_incidents_that_followed_each(app, open_console):
    """As a person who may read Runbooks (the install's runbook-viewer role) and this namespace's incidents."""
    from tests.support.cluster import SESSION

    create(app, incident("bill", category="billing", module="billing"))
    wait_phase(app, "bill", {"Mitigated", "Escalated", "Failed"})
    kubectl("apply", "-f", "manifests/rbac/runbook_viewer_role.yaml")
    binding = f"console-runbooks-{SESSION}"
    kubectl("create", "clusterrolebinding", binding, "--clusterrole=reliability-center-runbook-viewer",
            "--user=rhea")
    try:
        reader(app, "rhea", "get", "list", "watch")
        console, page = open_console("rhea", namespaces=(app,), timezone_id="Asia/Tokyo")
        page.goto(f"{console.base}/runbooks")
        # perf's rebuild-index window (01:00-05:00 Europe/Paris, mon-fri): its next opening, in both zones
        instant = datetime.datetime.fromisoformat(page.get_attribute("#rb-perf time.window-opens", "datetime"))
        in_paris = instant.astimezone(ZoneInfo("Europe/Paris"))
        assert in_paris.weekday() < 5 and (in_paris.hour, in_paris.minute) == (1, 0) or \
            abs((instant - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 120  # open now
        perf = page.inner_text("#rb-perf")
        assert f"next opens {in_paris:%Y-%m-%d %H:%M} Europe/Paris (your time: " \
               f"{instant.astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m-%d %H:%M} Asia/Tokyo)" in perf, perf
        section = page.inner_text("#rb-billing")
        runbook = get_json("runbook", "billing")
        ready = next(c for c in runbook["status"]["conditions"] if c["type"] == "Ready")
        assert f"ready: {ready['reason']} — {ready['message']}" in section
        for step in runbook["spec"]["steps"]:
            assert f"{step['name']}: {step['action']}" in section
        assert "disable-dunning: feature-flags-off; approval by 1 of anyone with the approve verb" in section
        assert "never-touch-billing-entries" in section
        page.click("#rb-billing >> text=incident(s) you may read followed it")
        assert page.query_selector(f'tr[data-name="{app}/bill"]'), "the link lists the incidents that followed it"
    finally:
        kubectl("delete", "clusterrolebinding", binding, check=False)


def test_a_person_who_may_not_read_runbooks_is_told_so(open_console):
    console, page = open_console("nobody-in-particular")
    answer = page.goto(f"{console.base}/runbooks")
    assert answer is not None and answer.status == 403
    assert 'The apiserver refused to list Runbooks: ApiError 403: runbooks.reliability.center is forbidden: ' \
           'User "nobody-in-particular" cannot list resource "runbooks"' in page.inner_text("main")


def test_a_link_followed_from_another_site_opens_the_page_signed_in(namespace, open_console):
    """A link pasted into a chat: the browser withholds the SameSite=Strict cookie on a cross-site navigation,
    and the console loads the same URL again from its own origin, where it is sent."""
    create(namespace, incident("slow", category="perf", module="search"))
    console, page = open_console("alice", (APPROVERS,))
    target = f"{console.base}/incidents/{namespace}/slow"
    handler = type("Chat", (_Attacker,), {"target": target, "html": '<a id="link" href="{target}">slow</a>'})
    chat = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://localhost:{chat.server_address[1]}/")
        page.click("#link")
        page.wait_for_url(target)
        assert page.inner_text("h1") == "slow" and "acting as alice" in page.inner_text("header")
    finally:
        chat.shutdown()
