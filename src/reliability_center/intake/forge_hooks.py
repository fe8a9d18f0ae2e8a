"""Forge webhooks: a pull request merged or closed wakes the PatchPlan that proposed it, at once.

``POST /forge/gitea``, ``/forge/github``, ``/forge/gitlab`` (and ``GET /healthz``). The route says which
forge posts, so each is held to its own authentication, never to whichever a poster picks:

- Gitea: ``X-Gitea-Signature``, the hex HMAC-SHA256 of the raw body keyed with the secret;
- GitHub: ``X-Hub-Signature-256``, ``sha256=`` and the same hex HMAC;
- GitLab: ``X-Gitlab-Token``, the secret itself (GitLab signs nothing): compared in constant time.

The payload is never believed. It only names a repository and a pull request number; the PatchPlans
waiting on that pull request are queued, and their pass reads the pull request from the forge's own
API as every poll does. A payload that says "merged" of a pull request still open, signed or not,
moves no plan. A delivery that is lost or refused is caught by the poll (``RC_PATCHPLAN_POLL``).

Refusals are the Alertmanager receiver's (``intake/server.py``): JSON ``{"error", "message"}``,
401 without the forge's authentication, 413 past the body limit, 429 past the rate limit (checked
before any HMAC is computed), never a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from reliability_center.gitops.forges import ForgeError, repository_path
from reliability_center.intake.metrics import FORGE_HOOKS
from reliability_center.intake.server import Handler, TokenFile, serve, tls_context

log = logging.getLogger("reliability_center.forge_hooks")

#: A pull request's payload is tens of kilobytes (the repository and users are embedded); this is room to spare.
MAX_BODY_BYTES = 1024 * 1024
#: Posts per second over all forges (a token bucket: RATE a second, BURST at once): a flood is refused
#: before an HMAC is computed. Forges do not retry every refusal: the poll catches what is dropped.
RATE, BURST = 20.0, 100
RETRY_AFTER_SECONDS = 1

#: Each forge's event header, and the value it gives pull (merge) request events.
EVENT_HEADERS = {"gitea": ("X-Gitea-Event", "pull_request"),
                 "github": ("X-GitHub-Event", "pull_request"),
                 "gitlab": ("X-Gitlab-Event", "Merge Request Hook")}
#: Each forge's authentication header.
AUTH_HEADERS = {"gitea": "X-Gitea-Signature", "github": "X-Hub-Signature-256", "gitlab": "X-Gitlab-Token"}


class NotLeader(Exception):
    """Raised by a wake on a standby replica: its work queue takes no pass, so the webhook would be lost."""


class Refusal(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True)
class PullRequestEvent:
    """What a webhook may tell: which pull request of which repository changed. Nothing about its state."""

    forge: str
    repository: str  # gitops.forges.repository_path: "owner/name", lower case
    number: int
    action: str  # the forge's word (closed, merge, synchronize...): logged, never acted on


def _ascii(value: str) -> bytes | None:
    """A header as bytes; None if it is not ASCII (aiohttp hands other bytes over as surrogate escapes)."""
    try:
        return value.strip().encode("ascii")
    except UnicodeEncodeError:
        return None


def authenticate(forge: str, headers: Any, body: bytes, secret: str) -> None:
    """Raise a 401 Refusal unless ``headers`` carry ``forge``'s own proof that it sent ``body``."""
    header = AUTH_HEADERS[forge]
    presented = headers.get(header)
    if not presented:
        raise Refusal(401, "Unauthorized", f"a {header} header is required")
    presented_bytes = _ascii(presented)
    if forge == "gitlab":
        if presented_bytes is None or not hmac.compare_digest(presented_bytes, secret.encode()):
            raise Refusal(401, "InvalidToken", f"{header} is not the receiver's secret")
        return
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    if forge == "github":
        expected = b"sha256=" + expected
    if presented_bytes is None or not hmac.compare_digest(presented_bytes.lower(), expected):
        raise Refusal(401, "InvalidSignature", f"{header} is not the HMAC-SHA256 of the body with the receiver's "
                                               "secret")


def _field(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def pull_request_event(forge: str, event: str | None, data: Any) -> PullRequestEvent | None:
    """The pull request an authenticated payload names; None for another kind of event (a push, a ping).

    The repository is the pull request's base (Gitea's and GitHub's ``repository``, GitLab's
    ``project``): the one a PatchPlan proposes to.
    """
    if event != EVENT_HEADERS[forge][1]:
        return None
    if forge == "gitlab":
        url, number, action = (_field(data, "project", "web_url"), _field(data, "object_attributes", "iid"),
                               _field(data, "object_attributes", "action"))
    else:
        url, number, action = (_field(data, "repository", "html_url"),
                               _field(data, "number") or _field(data, "pull_request", "number"),
                               _field(data, "action"))
    if not isinstance(url, str) or not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise Refusal(400, "InvalidPayload", "a pull request event must name its repository's URL and the pull "
                                             "request's number")
    try:
        return PullRequestEvent(forge, repository_path(url), number, str(action or "")[:40])
    except ForgeError as exc:
        raise Refusal(400, "InvalidPayload", str(exc)) from None


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._tokens, self._at = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


def refuse(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    FORGE_HOOKS.labels(reason).inc()
    log.info("forge webhook refused: %s %s: %s", status, reason, message)
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


#: Wakes the plans waiting on a pull request; their keys ("namespace/name"). Runs on the event loop.
Wake = Callable[[PullRequestEvent], list[str]]


class ForgeHooks:
    def __init__(self, secret: TokenFile, wake: Wake, rate: float = RATE, burst: int = BURST):
        self.secret, self.wake = secret, wake
        self.bucket = TokenBucket(rate, burst)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._errors])
        app.router.add_route("*", "/forge/{forge}", self.post)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refusal as exc:
            return refuse(exc.status, exc.reason, exc.message)
        except web.HTTPException as exc:  # aiohttp's own: no route (404), a body over client_max_size (413)
            reason = {404: "NotFound", 413: "BodyTooLarge"}.get(exc.status, "BadRequest")
            return refuse(exc.status, reason, exc.text or exc.reason)
        except Exception:  # never a 500: the poll still sees the merge
            log.exception("forge webhook failed")
            return refuse(503, "InternalError", "the webhook could not be handled; the poll will see the change")

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def post(self, request: web.Request) -> web.Response:
        forge = request.match_info["forge"]
        if forge not in AUTH_HEADERS:
            return refuse(404, "UnknownForge", f"no forge {forge[:40]!r} here: POST /forge/gitea, /forge/github "
                                               "or /forge/gitlab")
        if request.method != "POST":
            return refuse(405, "MethodNotAllowed", f"{request.method} is not allowed here: POST a webhook",
                          {"Allow": "POST"})
        if not self.bucket.take():
            return refuse(429, "TooManyRequests", f"more than {RATE:g} webhooks a second: retry later",
                          {"Retry-After": str(RETRY_AFTER_SECONDS)})
        secret = self.secret.current()
        if secret is None:
            return refuse(503, "NoSecret", "the receiver has no secret (RC_FORGE_HOOKS_SECRET_FILE): it accepts "
                                           "nothing")
        if not request.headers.get(AUTH_HEADERS[forge]):  # refused before the body is read
            return refuse(401, "Unauthorized", f"a {AUTH_HEADERS[forge]} header is required")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return refuse(413, "BodyTooLarge", f"{request.content_length} bytes; at most {MAX_BODY_BYTES}")
        body = await request.read()  # over client_max_size (a chunked body): 413 from the middleware
        authenticate(forge, request.headers, body, secret)
        if request.content_type != "application/json":
            return refuse(415, "UnsupportedMediaType", f"Content-Type {request.content_type!r}: configure the "
                                                       "webhook to send application/json")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return refuse(400, "InvalidJSON", str(exc)[:200])
        event = pull_request_event(forge, request.headers.get(EVENT_HEADERS[forge][0]), data)
        if event is None:
            FORGE_HOOKS.labels("ignored").inc()
            return web.json_response({"ignored": f"not a pull request event: "
                                                 f"{str(request.headers.get(EVENT_HEADERS[forge][0]))[:60]}"})
        try:
            woken = self.wake(event)
        except NotLeader:
            # The Service sends posts to the leader's pod (operator/leadership.py), but one may land here in a
            # failover; a standby's queue takes no pass. The forge may redeliver (GitHub and Gitea on
            # request, GitLab not): the leader's poll sees the change either way.
            return refuse(503, "NotLeader", "this replica is a standby; the leader takes the webhooks, and its poll "
                                            "sees the change", {"Retry-After": str(RETRY_AFTER_SECONDS)})
        FORGE_HOOKS.labels("woke" if woken else "no_plan").inc()
        log.info("forge webhook: %s %s#%s %s woke %s", forge, event.repository, event.number, event.action,
                 woken or "no plan")
        return web.json_response({"repository": event.repository, "number": event.number, "woken": woken},
                                 status=202 if woken else 200)


async def start(port: int, secret_file: str, wake: Wake, host: str = "0.0.0.0", tls_cert_file: str = "",
                tls_key_file: str = "", allow_plain_http: bool = False) -> web.AppRunner:
    """Serve the forge webhooks; ConfigError (TLS) or OSError (the port) if it cannot."""
    tls = tls_context(tls_cert_file, tls_key_file, allow_plain_http, "RC_FORGE_HOOKS")
    hooks = ForgeHooks(TokenFile(secret_file), wake)
    runner = await serve(hooks.app(), host, port, tls)
    if hooks.secret.current() is None:
        log.warning("the forge webhook receiver has no secret (RC_FORGE_HOOKS_SECRET_FILE=%r): it refuses every "
                    "post", secret_file)
    log.info("forge webhook receiver serving", extra={"port": port, "tls": tls is not None})
    return runner

