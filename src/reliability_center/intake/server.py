"""The HTTP receiver: ``POST /alerts`` (Alertmanager's webhook, version 4) and ``GET /healthz``.

Checks run cheapest first and nothing is written unless every one passes: method, bearer
token, content type, size, bracket depth (on the raw bytes), JSON, version, alert count,
shape, then the mapping's rules. Every refusal is JSON ``{"error", "message"}``; a failure
on the apiserver's side is a 503, which Alertmanager retries; never a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import pathlib
import ssl
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from reliability_center.gateway.kube import Conflict, Fenced, Forbidden, Invalid, Kube, describe, transient
from reliability_center.intake.config import ConfigError, IntakeConfig, load
from reliability_center.intake.incidents import Incidents
from reliability_center.intake.mapping import Refused, plans
from reliability_center.intake.metrics import ALERTS, REQUESTS
from reliability_center.intake.payload import Webhook, too_deep

log = logging.getLogger("reliability_center.intake")

#: What a 429 asks Alertmanager to wait (it retries with its own backoff; other clients may honour this).
RETRY_AFTER_SECONDS = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def refuse(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    REQUESTS.labels(reason).inc()
    log.info("alertmanager post refused: %s %s: %s", status, reason, message)
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


class TokenFile:
    """The bearer token, read again whenever its file changes (a mounted Secret rotates by a symlink swap)."""

    def __init__(self, path: str):
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._token: str | None = None

    def current(self) -> str | None:
        try:
            st = os.stat(self.path) if self.path else None
        except OSError:
            st = None
        if st is None:
            self._seen = self._token = None
            return None
        if (st.st_ino, st.st_mtime_ns, st.st_size) != self._seen:
            try:
                self._token = pathlib.Path(self.path).read_text().strip() or None
            except OSError:
                return None
            self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        return self._token


def bearer_matches(header: str, token: str) -> bool:
    """Whether ``Authorization`` is ``Bearer <token>``. Any other header, however malformed (no scheme,
    non-ASCII bytes, which aiohttp hands over as surrogate escapes), is just not the token: a 401, never a 503."""
    scheme, _, presented = header.partition(" ")
    try:
        presented_bytes = presented.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return scheme.lower() == "bearer" and hmac.compare_digest(presented_bytes, token.encode())


def _unavailable(exc: Exception) -> web.Response:
    """The apiserver's side failed: 503 with why, so Alertmanager retries (422 if it refused our object)."""
    if isinstance(exc, Invalid):
        return refuse(422, "IncidentInvalid", describe(exc))
    reason = ("NotLeader" if isinstance(exc, Fenced) else "Contention" if isinstance(exc, Conflict)
              else "ApiserverUnavailable" if transient(exc)
              else "Forbidden" if isinstance(exc, Forbidden) or getattr(exc, "status", None) == 403  # RBAC
              else "InternalError")
    if reason == "InternalError":
        log.exception("alertmanager post failed")
    return refuse(503, reason, describe(exc))


class Receiver:
    def __init__(self, config: IntakeConfig, tokens: TokenFile, incidents: Incidents, workers: int = 16):
        self.config, self.tokens, self.incidents = config, tokens, incidents
        # Its own threads: a storm of posts does not take the ones incident reconciles run on. 16, beside
        # the reconciles' 16 (RC_WORKERS), fill the kube client's 32 pooled connections and no more
        # (bench/bench_intake.py: 8 threads took 9 s for the storm, 16 take 5.5 s, 32 overflow the pool).
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="rc-intake")
        self._pending = 0  # posts submitted to the executor and not done: bounded by max_pending_posts
        self._pending_lock = threading.Lock()

    def _admit(self) -> bool:
        with self._pending_lock:
            if self._pending >= self.config.max_pending_posts:
                return False
            self._pending += 1
            return True

    def _done(self, _: Future[Any]) -> None:
        with self._pending_lock:
            self._pending -= 1

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._errors])
        app.router.add_route("*", "/alerts", self.alerts)
        app.router.add_get("/healthz", self.healthz)

        async def shutdown(_: web.Application) -> None:
            self.executor.shutdown(wait=False, cancel_futures=True)

        app.on_cleanup.append(shutdown)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no route (404), a body over client_max_size (413)
            reason = {404: "NotFound", 405: "MethodNotAllowed", 413: "BodyTooLarge"}.get(exc.status, "BadRequest")
            return refuse(exc.status, reason, exc.text or exc.reason, {"Allow": "POST"} if exc.status == 405 else None)
        except Exception as exc:  # never a 500
            return _unavailable(exc)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def alerts(self, request: web.Request) -> web.Response:
        limits = self.config
        if request.method != "POST":
            return refuse(405, "MethodNotAllowed", f"{request.method} is not allowed here: POST alerts",
                          {"Allow": "POST"})
        token = self.tokens.current()
        if token is None:
            return refuse(503, "NoToken", "the receiver has no token (RC_INTAKE_TOKEN_FILE): it accepts nothing")
        header = request.headers.get("Authorization")
        if not header:
            return refuse(401, "Unauthorized", "an Authorization: Bearer <token> header is required",
                          {"WWW-Authenticate": 'Bearer realm="reliability-center"'})
        if not bearer_matches(header, token):
            return refuse(401, "InvalidToken", "the bearer token is not the receiver's",
                          {"WWW-Authenticate": 'Bearer realm="reliability-center", error="invalid_token"'})
        if request.content_type != "application/json":
            return refuse(415, "UnsupportedMediaType", f"Content-Type {request.content_type!r}: send application/json")
        if (request.content_length or 0) > limits.max_body_bytes:
            return refuse(413, "BodyTooLarge", f"{request.content_length} bytes; at most {limits.max_body_bytes}")
        body = await request.read()  # over client_max_size (a chunked body): 413 from the middleware
        if too_deep(body, limits.max_depth):
            return refuse(400, "NestingTooDeep", f"JSON nested deeper than {limits.max_depth} levels")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return refuse(400, "InvalidJSON", str(exc)[:200])
        if not isinstance(data, dict):
            return refuse(400, "InvalidPayload", f"a JSON object is expected, not {type(data).__name__}")
        if data.get("version") != "4":
            return refuse(400, "UnsupportedVersion", f"payload version {str(data.get('version'))[:20]!r}: only 4")
        if isinstance(data.get("alerts"), list) and len(data["alerts"]) > limits.max_alerts:
            return refuse(413, "TooManyAlerts", f"{len(data['alerts'])} alerts; at most {limits.max_alerts} "
                                                "(set max_alerts in the Alertmanager receiver)")
        try:
            webhook = Webhook.model_validate(data)
            wanted = plans(webhook, limits)
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(map(str, e['loc']))[:80]}: {e['msg']}" for e in exc.errors()[:3])
            return refuse(400, "InvalidPayload", where)
        except Refused as exc:
            return refuse(exc.status, exc.reason, exc.message)
        if not self._admit():
            return refuse(429, "TooManyPendingPosts",
                          f"{limits.max_pending_posts} posts are already being handled (maxPendingPosts): retry later",
                          {"Retry-After": str(RETRY_AFTER_SECONDS)})
        try:
            job = self.executor.submit(self.incidents.apply, wanted)
            job.add_done_callback(self._done)  # when the thread is done, even if the client hung up before
            outcome = await asyncio.wrap_future(job)
        except Refused as exc:
            return refuse(exc.status, exc.reason, exc.message)
        except Exception as exc:
            return _unavailable(exc)
        for what, count in outcome.alerts.items():
            ALERTS.labels(what).inc(count)
        if outcome.dropped:
            ALERTS.labels("dropped").inc(outcome.dropped)
        limited = [why for _, why in outcome.failed if why.status == 429]
        if outcome.failed and (limited or not outcome.accepted):
            # Every partition refused (a 4xx, not retried: retrying cannot help); or one rate-limited,
            # which a later retry may pass: a 429 that Alertmanager retries (the handled ones merge, no write).
            first = (limited or [why for _, why in outcome.failed])[0]
            return refuse(first.status, first.reason, "; ".join(why.message for _, why in outcome.failed),
                          {"Retry-After": str(RETRY_AFTER_SECONDS)} if first.status == 429 else None)
        REQUESTS.labels("accepted").inc()
        summary = outcome.summary()
        if webhook.truncated_alerts:
            summary["truncatedAlerts"] = webhook.truncated_alerts
        return web.json_response(summary)


def tls_context(cert_file: str, key_file: str, allow_plain_http: bool,
                settings: str = "RC_INTAKE") -> ssl.SSLContext | None:
    """The server's TLS (a mounted Secret's tls.crt and tls.key); None, plain HTTP, only when allowed outright:
    the bearer token must not travel in clear by default. The installs always name the files and mount the
    Secret as optional: files that are not there are no certificate."""
    if not any(f and os.path.exists(f) for f in (cert_file, key_file)):
        if allow_plain_http:
            return None
        raise ConfigError(f"no TLS certificate ({settings}_TLS_CERT_FILE={cert_file!r}, {settings}_TLS_KEY_FILE="
                          f"{key_file!r}): the token or secret would travel in clear; set {settings}_ALLOW_PLAIN_HTTP=true to "
                          "serve plain HTTP anyway")
    if not (cert_file and key_file):
        raise ConfigError(f"{settings}_TLS_CERT_FILE and {settings}_TLS_KEY_FILE go together: one is missing")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate ({settings}_TLS_CERT_FILE={cert_file!r}, "
                          f"{settings}_TLS_KEY_FILE={key_file!r}): {exc}") from exc
    return context


async def serve(app: web.Application, host: str, port: int, tls: ssl.SSLContext | None) -> web.AppRunner:
    """Serve an app on a port (TLS when given); OSError, nothing left running, if the port cannot be had."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


async def start(kube: Kube, port: int, token_file: str, config_file: str, host: str = "0.0.0.0",
                tls_cert_file: str = "", tls_key_file: str = "", allow_plain_http: bool = False) -> web.AppRunner:
    """Serve the receiver; ConfigError (the config or TLS is missing or invalid) or OSError (the port) if it cannot."""
    config = load(config_file)
    tls = tls_context(tls_cert_file, tls_key_file, allow_plain_http)
    receiver = Receiver(config, TokenFile(token_file), Incidents(kube, config))
    runner = await serve(receiver.app(), host, port, tls)
    if receiver.tokens.current() is None:
        log.warning("the Alertmanager receiver has no token (RC_INTAKE_TOKEN_FILE=%r): it refuses every post",
                    token_file)
    log.info("Alertmanager receiver serving", extra={"port": port, "tls": tls is not None,
                                                     "namespaces": config.namespaces,
                                                     "categories": config.categories})
    return runner
