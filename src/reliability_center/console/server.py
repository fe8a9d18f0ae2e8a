"""The console's web server (aiohttp, which Kopf already depends on).

Two ways in, one server:

* local (``relctl console``): the person's kubeconfig (and ``--as``) is the only identity; the server listens on
  loopback and prints a URL with a one-time token, which the first visit exchanges for an HttpOnly,
  SameSite=Strict session cookie (then redirects to the URL without it), as Jupyter does;
* bearer (the chart's opt-in Deployment): each request's ``Authorization: Bearer`` token (set by an OIDC-aware
  proxy in front) is the identity for every apiserver request it causes; the Pod holds no token of its own.

Every write carries a CSRF token bound to the session (an HMAC of it) and must come from this origin.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from reliability_center import acts
from reliability_center.console import feed, render
from reliability_center.gateway import Kube, Ref
from reliability_center.gateway.kube import Conflict, Invalid, NotFound, describe
from reliability_center.gateway.writes import INCIDENT_UID_LABEL

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
SESSION_COOKIE = "rc_console"
#: Seconds between keep-alive comments on an idle event stream: how soon a closed page's watches stop.
HEARTBEAT = 15
#: Clients kept for the bearer tokens seen last (one per person signed in through the proxy, as a rule).
BEARER_CLIENTS = 256
STATIC = {"console.js": "application/javascript", "console.css": "text/css"}
#: Fixed sentences for what a write did (the URL carries the code, never free text).
DONE = {"approved": "You approved step {step}", "rejected": "You rejected step {step}",
        "resolved": "You resolved this incident: the operator restores what Levels 1 and 2 changed.",
        "rollback": "You asked for the rollback of PatchPlan {plan}: a revert pull request of its merge is opened."}

Identity = Callable[[web.Request], tuple[Kube, str] | None]
"""(the client acting as the request's person, a key naming their session), or None: not signed in."""


class Console:
    def __init__(self, *, local_kube: Kube | None = None, bearer: Callable[[str], Kube] | None = None,
                 namespaces: list[str] | None = None, token: str | None = None, origin: str | None = None):
        if (local_kube is None) == (bearer is None):
            raise ValueError("a console runs either with the local kubeconfig or with each request's bearer token")
        self.local_kube, self.bearer = local_kube, bearer
        self.namespaces = namespaces or []
        self.token = token  # local mode: the one-time token in the printed URL; None once used
        self.origin = origin
        self.secret = secrets.token_bytes(32)
        self.sessions: set[str] = set()
        self._bearer_kubes: dict[str, Kube] = {}
        self._who: dict[str, str] = {}

    # -- identity -----------------------------------------------------------------
    def identity(self, request: web.Request) -> tuple[Kube, str] | None:
        if self.local_kube is not None:
            session = request.cookies.get(SESSION_COOKIE)
            return (self.local_kube, session) if session in self.sessions else None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return None
        key = hashlib.sha256(header[7:].strip().encode()).hexdigest()
        if key not in self._bearer_kubes:
            assert self.bearer is not None
            if len(self._bearer_kubes) >= BEARER_CLIENTS:  # tokens expire and are replaced: forget the oldest
                oldest = next(iter(self._bearer_kubes))
                del self._bearer_kubes[oldest]
                self._who.pop(oldest, None)
            self._bearer_kubes[key] = self.bearer(header[7:].strip())
        return self._bearer_kubes[key], key

    def csrf(self, session_key: str) -> str:
        return hmac.new(self.secret, session_key.encode(), hashlib.sha256).hexdigest()

    async def who(self, kube: Kube, key: str) -> str:
        """The user the apiserver authenticates (a SelfSubjectReview), for the header: whom the console acts as."""
        if key not in self._who:
            try:
                self._who[key] = (await asyncio.to_thread(kube.whoami)).get("username") or "?"
            except Exception:  # noqa: BLE001 - the header only: the pages' own requests report their errors
                return "?"
        return self._who[key]

    # -- middleware -----------------------------------------------------------------
    @web.middleware
    async def guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.text and not exc.text.startswith("<!doctype"):
                exc.text = render.error_page(exc.status, exc.text)
                exc.content_type = "text/html"
            response = exc
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - a sentence (the apiserver's, if it refused), never a stack trace
            status = _status(exc) if 400 <= _status(exc) <= 599 else 500
            response = web.Response(status=status, content_type="text/html",
                                    text=render.error_page(status, f"The console could not answer: {_said(exc)}"))
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"  # no-referrer would make the browser send Origin: null
        response.headers["X-Frame-Options"] = "DENY"
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    async def _guarded(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        if self.local_kube is not None and not loopback_host(request.host):
            # DNS rebinding: a page elsewhere naming this port under its own host name
            raise web.HTTPMisdirectedRequest(text=f"This console answers on 127.0.0.1 only, not as {request.host}.")
        if request.path.startswith("/static/"):
            return await handler(request)
        if self.local_kube is not None and self.token and "token" in request.query:
            if not hmac.compare_digest(request.query["token"].encode(), self.token.encode()):
                raise web.HTTPUnauthorized(text="This link's token is not the one relctl console printed.")
            self.token = None  # one-time: the cookie is the session from now on
            session = secrets.token_urlsafe(32)
            self.sessions.add(session)
            rest = {k: v for k, v in request.query.items() if k != "token"}
            response = web.HTTPSeeOther(request.path + (f"?{urlencode(rest)}" if rest else ""))
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Strict", path="/")
            return response
        found = self.identity(request)
        if found is None and self.local_kube is not None and request.method == "GET" \
                and request.headers.get("Sec-Fetch-Site") == "cross-site":
            # A link followed from elsewhere (a chat): the browser withholds the SameSite=Strict cookie on that
            # navigation only. Loading the same URL again from here sends it; a GET changes nothing.
            return web.Response(content_type="text/html", text=render.same_site_again(request.path_qs))
        if found is None:
            raise web.HTTPUnauthorized(text=(
                "You are not signed in to this console: open the link relctl console printed (its token works "
                "once; run relctl console again for a new one)." if self.local_kube is not None else
                "This request carries no bearer token: the console is meant to sit behind a proxy that signs you "
                "in and passes your token in the Authorization header."))
        request["kube"], request["session"] = found
        if request.method not in ("GET", "HEAD"):
            self._check_write(request, await request.post())
        return await handler(request)

    def _check_write(self, request: web.Request, form: Any) -> None:
        """A write must come from one of this console's own pages: same origin, and the session's CSRF token."""
        origin = request.headers.get("Origin")
        allowed = {self.origin} if self.origin else {f"http://{request.host}", f"https://{request.host}"}
        if origin is None and request.headers.get("Sec-Fetch-Site") not in ("same-origin", None):
            origin = "another site"
        # Neither header (curl with the cookie, say): the CSRF token below still has to be this session's.
        if origin is not None and origin not in allowed:
            raise web.HTTPForbidden(text=f"Refused: this request came from {origin}, not from this console's own "
                                         "pages; nothing was changed.")
        if not hmac.compare_digest(str(form.get("csrf", "")), self.csrf(request["session"])):
            raise web.HTTPForbidden(text="Refused: the form did not carry this session's CSRF token (reload the page "
                                         "and try again); nothing was changed.")

    # -- pages ------------------------------------------------------------------------
    async def list_page(self, request: web.Request) -> web.Response:
        kube, query = request["kube"], _query(request)
        rows, refused = await asyncio.to_thread(self._rows, kube, query)
        selected = render.select(rows, query)
        html = render.list_page(selected, query, refused, await self.who(kube, request["session"]),
                                shown=render.digest(selected))
        return web.Response(text=html, content_type="text/html")

    def _rows(self, kube: Kube, query: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        where = feed.scope(kube, _namespaces(query), self.namespaces)
        rows: list[dict[str, Any]] = []
        for namespace in where.namespaces if where.namespaces is not None else [None]:
            try:
                rows += [render.row(item) for item in feed.list_incidents(kube, namespace)[0]]
            except feed.Refused as exc:
                where.refused[namespace or "(all)"] = str(exc)
        return rows, where.refused

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events fed by watches: ``rows`` (the whole table, when it differs from what the page
        showed, or after a relist) or ``row`` (one incident that changed: its new row and the row it now
        precedes in the page's order, or no html when it left the page)."""
        kube, query = request["kube"], _query(request)
        where = await asyncio.to_thread(feed.scope, kube, _namespaces(query), self.namespaces)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        changes: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        watches = [feed.Watch(kube, namespace, lambda *event: loop.call_soon_threadsafe(changes.put_nowait, event))
                   for namespace in (where.namespaces if where.namespaces is not None else [None])]
        incidents: dict[tuple[str, str], dict[str, Any]] = {}
        refused = dict(where.refused)
        ready: set[str | None] = set()
        shown = request.query.get("shown", "")  # the digest of the rows the page was rendered with
        for watch in watches:
            watch.start()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(changes.get(), HEARTBEAT)
                except asyncio.TimeoutError:
                    await response.write(b": still here\n\n")  # a page that left is noticed: its watches stop
                    continue
                touched: set[tuple[str, str]] = set()
                whole = False
                while True:  # a burst of changes is one message
                    whole |= self._apply(event, incidents, refused, ready, touched)
                    if changes.empty():
                        break
                    event = changes.get_nowait()
                if len(ready) < len(watches):
                    continue  # every namespace listed once before the first message
                selected = render.select(list(incidents.values()), query)
                if whole and render.digest(selected) == shown:
                    whole, touched = False, set()  # the page shows just this already
                shown = ""
                out = b""
                if whole or (touched and not selected):
                    out += _sse("rows", render.rows_html(selected))
                elif touched:
                    order = [(r["namespace"], r["name"]) for r in selected]
                    position = {key: i for i, key in enumerate(order)}
                    for key in sorted(touched, key=lambda k: position.get(k, -1)):
                        at = position.get(key)
                        following = next((k for k in order[at + 1:] if k not in touched), None) \
                            if at is not None else None
                        out += _sse("row", json.dumps({
                            "key": "/".join(key), "next": "/".join(following) if following else "",
                            "html": render.row_html(incidents[key]) if at is not None else ""}))
                notes = "; ".join(f"namespace {ns}: {message}" for ns, message in sorted(refused.items()))
                await response.write(out + (_sse("refused", notes) if notes else b"") or b": nothing shown changed\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for watch in watches:
                await asyncio.to_thread(watch.stop)
        return response

    @staticmethod
    def _apply(event: tuple[Any, ...], incidents: dict[tuple[str, str], dict[str, Any]], refused: dict[str, str],
               ready: set[str | None], touched: set[tuple[str, str]]) -> bool:
        """Apply one watch message; True when the whole table is to be sent again (a namespace was listed)."""
        kind, namespace = event[0], event[1]
        ready.add(namespace)
        if kind == "reset":
            for key in [k for k in incidents if namespace is None or k[0] == namespace]:
                del incidents[key]
            for item in event[2]:
                r = render.row(item)
                incidents[(r["namespace"], r["name"])] = r
            return True
        if kind == "event":
            r = render.row(event[3])
            key = (r["namespace"], r["name"])
            touched.add(key)
            if event[2] == "DELETED":
                incidents.pop(key, None)
            else:
                incidents[key] = r
            return False
        refused[namespace or "(all)"] = event[2]
        return False

    async def incident_page(self, request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
        kube, namespace, name = request["kube"], request.match_info["namespace"], request.match_info["name"]
        try:
            body = await asyncio.to_thread(acts.incident, kube, namespace, name)
        except acts.ActError as exc:
            raise web.HTTPNotFound(text=f"{str(exc)[0].upper()}{str(exc)[1:]} (or you may not read it).") from None
        except Exception as exc:  # noqa: BLE001 - the apiserver's refusal, verbatim
            raise web.HTTPForbidden(text=f"The apiserver refused to show incident {namespace}/{name}: "
                                         f"{_said(exc)}") from None
        flash = await asyncio.to_thread(self._flash, kube, namespace, request.query) if not error else ""
        postmortem = await asyncio.to_thread(_postmortem, kube, body)
        windows = await asyncio.to_thread(_windows, kube, body)
        changes = render.changes_html(*await asyncio.to_thread(_held, kube, body))
        html = render.incident_page(body, self.csrf(request["session"]), await self.who(kube, request["session"]),
                                    flash=flash, error=error, postmortem=postmortem, windows=windows, changes=changes)
        return web.Response(text=html, content_type="text/html", status=status)

    async def incident_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events fed by a watch of this one incident: ``incident`` (the page's body rendered again,
        as the person, when the Incident's version differs from the one shown), ``gone`` or ``refused``."""
        kube, namespace, name = request["kube"], request.match_info["namespace"], request.match_info["name"]
        csrf = self.csrf(request["session"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        changes: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        watch = feed.Watch(kube, namespace, lambda *event: loop.call_soon_threadsafe(changes.put_nowait, event),
                           name=name)
        shown = request.query.get("shown", "")  # the resourceVersion the page was rendered from
        watch.start()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(changes.get(), HEARTBEAT)
                except asyncio.TimeoutError:
                    await response.write(b": still here\n\n")
                    continue
                latest: dict[str, Any] | None = None
                gone, out = False, b""
                while True:  # a burst of changes: only the latest version is rendered
                    if event[0] == "refused":
                        out += _sse("refused", event[2])
                    elif event[0] == "reset":
                        latest, gone = (event[2][0], False) if event[2] else (None, True)
                    else:
                        latest, gone = (None, True) if event[2] == "DELETED" else (event[3], False)
                    if changes.empty():
                        break
                    event = changes.get_nowait()
                if gone:
                    out += _sse("gone", f"Incident {namespace}/{name} is gone (deleted, or you may no longer read it).")
                elif latest is not None and latest["metadata"].get("resourceVersion") != shown:
                    shown = latest["metadata"].get("resourceVersion", "")
                    out += _sse("incident", await asyncio.to_thread(self._incident_body, kube, latest, csrf))
                await response.write(out or b": nothing shown changed\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            await asyncio.to_thread(watch.stop)
        return response

    @staticmethod
    def _incident_body(kube: Kube, body: dict[str, Any], csrf: str) -> str:
        return render.incident_body(body, csrf, _postmortem(kube, body), _windows(kube, body),
                                    render.changes_html(*_held(kube, body)))

    async def runbooks_page(self, request: web.Request) -> web.Response:
        kube = request["kube"]

        def read() -> tuple[list[dict[str, Any]], dict[str, int], str]:
            try:
                runbooks = kube.list("Runbook")
            except Exception as exc:  # noqa: BLE001 - the apiserver's refusal, verbatim
                return [], {}, f"The apiserver refused to list Runbooks: {_said(exc)}"
            rows, _ = self._rows(kube, {})
            used: dict[str, int] = {}
            for r in rows:
                used[r["runbook"]] = used.get(r["runbook"], 0) + 1
            return runbooks, used, ""

        runbooks, used, error = await asyncio.to_thread(read)
        html = render.runbooks_page(runbooks, used, await self.who(kube, request["session"]), error)
        return web.Response(text=html, content_type="text/html", status=403 if error else 200)

    @staticmethod
    def _flash(kube: Kube, namespace: str, query: Any) -> str:
        done = query.get("done")
        if done not in DONE:
            return ""
        text = DONE[done].format(step=query.get("step", ""), plan=query.get("plan", ""))
        if done not in ("approved", "rejected"):
            return text
        name = query.get("approval", "")
        try:  # read back, so the page says what the apiserver stored, not what the URL claims
            made = kube.get(Ref("Approval", namespace, name)) if name else None
        except Exception as exc:  # noqa: BLE001
            return f"{text}: Approval {name} (the apiserver refused to show it: {_said(exc)})."
        if made is None:
            return f"There is no Approval {name!r} in namespace {namespace}: nothing to confirm."
        return f"{text}: Approval {name}, stamped by the apiserver as {(made.get('spec') or {}).get('approver') or '?'}."

    # -- writes (as the person) ----------------------------------------------------------
    async def decide(self, request: web.Request) -> web.StreamResponse:
        kube, namespace, name = request["kube"], request.match_info["namespace"], request.match_info["name"]
        form = await request.post()
        decision, step = str(form.get("decision", "")), str(form.get("step", ""))
        if decision not in ("Approve", "Reject") or not step:
            return await self.incident_page(request, error="The form named no step or no decision: nothing was "
                                                           "done.", status=400)

        def act() -> dict[str, Any]:
            body = acts.incident(kube, namespace, name)
            return acts.decide(kube, body, step, decision, str(form.get("comment", "")).strip(),
                               str(form.get("digest", "")) or None)[1]

        try:
            made = await asyncio.to_thread(act)
        except Exception as exc:  # noqa: BLE001 - shown as the apiserver (or acts) said it
            return await self.incident_page(request, error=f"Not {decision.lower()}d: {_said(exc)}",
                                            status=_status(exc))
        done = "approved" if decision == "Approve" else "rejected"
        raise web.HTTPSeeOther(f"{render.incident_href(namespace, name)}?"
                               + urlencode({"done": done, "step": step, "approval": made["metadata"]["name"]}))

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        kube, namespace, name = request["kube"], request.match_info["namespace"], request.match_info["name"]
        try:
            await asyncio.to_thread(acts.resolve, kube, namespace, name)
        except Exception as exc:  # noqa: BLE001
            return await self.incident_page(request, error=f"Not resolved: {_said(exc)}", status=_status(exc))
        raise web.HTTPSeeOther(f"{render.incident_href(namespace, name)}?done=resolved")

    async def rollback(self, request: web.Request) -> web.StreamResponse:
        kube, namespace, name = request["kube"], request.match_info["namespace"], request.match_info["name"]
        plan = await asyncio.to_thread(kube.get, Ref("PatchPlan", namespace, name))
        incident = ((plan or {}).get("metadata") or {}).get("labels", {}).get("reliability.center/incident")
        back = render.incident_href(namespace, incident) if incident else "/"
        try:
            await asyncio.to_thread(acts.rollback, namespace, name, kube)
        except Exception as exc:  # noqa: BLE001
            raise web.HTTPForbidden(text=f"Not rolled back: {_said(exc)}") from None
        raise web.HTTPSeeOther(f"{back}?{urlencode({'done': 'rollback', 'plan': name})}")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound(text=f"There is no static file {name}.")
        data = resources.files("reliability_center.console").joinpath("static", name).read_bytes()
        return web.Response(body=data, content_type=STATIC[name])

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.add_routes([web.get("/", self.list_page), web.get("/events", self.events),
                        web.get("/runbooks", self.runbooks_page),
                        web.get("/static/{name}", self.static),
                        web.get("/incidents/{namespace}/{name}", self.incident_page),
                        web.get("/incidents/{namespace}/{name}/events", self.incident_events),
                        web.post("/incidents/{namespace}/{name}/decide", self.decide),
                        web.post("/incidents/{namespace}/{name}/resolve", self.resolve),
                        web.post("/patchplans/{namespace}/{name}/rollback", self.rollback)])
        return app


def loopback_host(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _query(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.query.items() if k in (*render.FILTERS, "q", "sort") and v}


def _namespaces(query: dict[str, str]) -> list[str]:
    return [query["namespace"]] if query.get("namespace") else []


def _sse(event: str, data: str) -> bytes:
    return (f"event: {event}\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()


def _said(exc: BaseException) -> str:
    """The apiserver's (or the act's) own sentence."""
    if isinstance(exc, (acts.ActError, Conflict, Invalid, NotFound)):
        return str(exc)
    return describe(exc, limit=2000)


def _status(exc: BaseException) -> int:
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, (Invalid, acts.ActError)):
        return 422
    return getattr(exc, "status", None) or 500


def _postmortem(kube: Kube, body: dict[str, Any]) -> str:
    """The postmortem draft relctl postmortem prints, from what the person may read ("" if they may not)."""
    from reliability_center.engine.postmortem import render as draft

    try:
        plans = kube.list("PatchPlan", body["metadata"]["namespace"],
                          f"reliability.center/incident={body['metadata']['name'][:63]}")
        return draft(body, plans, [])
    except Exception:  # noqa: BLE001 - a page without the draft rather than no page
        return ""


def _held(kube: Kube, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Each held field's before, written and current value, read as the person; or the apiserver's refusal."""
    namespace = body["metadata"]["namespace"]
    try:
        snapshots = kube.list("ConfigMap", namespace, f"{INCIDENT_UID_LABEL}={body['metadata']['uid']}")
    except Exception as exc:  # noqa: BLE001 - the refusal, as a sentence on the page
        return [], f"The apiserver refused to show what this incident changed (its snapshots): {_said(exc)}"
    current: dict[str, dict[str, Any] | str | None] = {}
    for cm in snapshots:
        target = json.loads((cm.get("data") or {}).get("target") or "{}")
        ref = Ref(target.get("kind", ""), target.get("namespace"), target.get("name", ""))
        name = f"{ref.kind}/{ref.namespace}/{ref.name}"
        if name not in current:
            try:
                current[name] = kube.get(ref)
            except Exception as exc:  # noqa: BLE001
                current[name] = f"the apiserver refused to show it: {_said(exc)}"
    return render.held_changes(snapshots, current), ""


def _windows(kube: Kube, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each step's Level 2 window, from the incident's Runbook as the person may read it ({} if they may not)."""
    name = (body.get("status") or {}).get("runbook")
    try:
        runbook = kube.get(Ref("Runbook", None, name)) if name else None
    except Exception:  # noqa: BLE001 - a page without the windows rather than no page (the Runbooks page says why)
        return {}
    return {st["name"]: (st.get("approval") or {})["window"] for st in ((runbook or {}).get("spec") or {}).get("steps") or []
            if (st.get("approval") or {}).get("window")}


def serve(console: Console, host: str, port: int, ready: Callable[[int], None]) -> None:
    """Run until interrupted; ``ready`` gets the port bound (0 asks the OS for one)."""

    async def main() -> None:
        # handler_cancellation: a closed page's event stream ends at once (its watches with it)
        runner = web.AppRunner(console.app(), handle_signals=True, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        ready(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
