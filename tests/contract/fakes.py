"""Scripted HTTP transports that stand in for GitHub, GitLab and Gitea and check every request.

Each test scripts the exchanges it expects, in order. A transport answers the
way the real API documents it (401 without the right credentials, the
recorded JSON shapes and headers otherwise) and fails the test on any request
that does not match the script: method, raw path (percent-encoding included),
query, auth header, the headers the exchange names and the JSON body fields.
``done()`` fails the test when an expected request never came; the contract
tests' ``scripted`` fixture calls it for every transport.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

RECORDINGS = Path(__file__).parent / "recordings"


def recording(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((RECORDINGS / name).read_text())
    data.pop("_source", None)
    for key, value in changes.items():
        target = data
        *parents, last = key.split("__")
        for parent in parents:
            target = target[parent]
        target[last] = value
    return data


@dataclass
class Exchange:
    method: str
    raw_path: str
    response: Any = None
    status: int = 200
    query: dict[str, str] | None = None
    #: Fields the JSON body must carry, with these exact values.
    body: dict[str, Any] | None = None
    #: Fields the JSON body must not carry.
    body_absent: tuple[str, ...] = ()
    #: Request headers the request must carry with these values (None: must not carry at all).
    request_headers: dict[str, str | None] = field(default_factory=dict)
    #: Headers of the answer (ETag, Link, rate limits...).
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeForgeTransport(httpx.BaseTransport):
    """Base of the Fake transports: the script, the checks, the record of what was sent."""

    script: list[Exchange]
    seen: list[httpx.Request] = field(default_factory=list)

    def authorized(self, request: httpx.Request) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def check_headers(self, request: httpx.Request) -> None:
        """Headers every request to this API must carry (besides auth)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Check the request against the next scripted exchange, then answer as the forge would."""
        self.seen.append(request)
        self.check_headers(request)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        want = self.script.pop(0)
        self.check_request(request, want)
        if not self.authorized(request):
            return httpx.Response(401, json={"message": "401 Unauthorized"})
        if want.status in (204, 304):  # no body, by definition
            return httpx.Response(want.status, headers=want.response_headers)
        return httpx.Response(want.status, headers=want.response_headers, json=copy.deepcopy(want.response))

    @staticmethod
    def check_request(request: httpx.Request, want: Exchange) -> None:
        raw_path = request.url.raw_path.decode().split("?", 1)[0]
        assert (request.method, raw_path) == (want.method, want.raw_path), \
            f"expected {want.method} {want.raw_path}, got {request.method} {raw_path}"
        if want.query is not None:
            assert dict(request.url.params) == want.query, f"query {dict(request.url.params)} != {want.query}"
        for name, value in want.request_headers.items():
            sent_value = request.headers.get(name)
            assert sent_value == value, f"header {name} is {sent_value!r}, expected {value!r}"
        if want.body is not None or want.body_absent:
            assert request.headers.get("content-type") == "application/json", "a JSON body is required"
            sent = json.loads(request.content)
            for key, value in (want.body or {}).items():
                assert key in sent, f"body lacks {key!r}: {sent}"
                assert sent[key] == value, f"body {key!r} is {sent[key]!r}, expected {value!r}"
            for key in want.body_absent:
                assert key not in sent, f"body must not carry {key!r}: {sent}"
        elif request.method in ("GET", "DELETE"):
            assert not request.content, f"{request.method} must not send a body"

    def done(self) -> None:
        assert not self.script, f"expected requests never came: {[(e.method, e.raw_path) for e in self.script]}"


@dataclass
class FakeGitHubTransport(FakeForgeTransport):
    token: str = ""

    def authorized(self, request: httpx.Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def check_headers(self, request: httpx.Request) -> None:
        assert request.headers.get("accept") == "application/vnd.github+json"
        assert request.headers.get("x-github-api-version") == "2022-11-28"
        assert request.url.host == "api.github.com" and request.url.scheme == "https"


@dataclass
class FakeGitLabTransport(FakeForgeTransport):
    token: str = ""

    def authorized(self, request: httpx.Request) -> bool:
        return request.headers.get("private-token") == self.token

    def check_headers(self, request: httpx.Request) -> None:
        assert "authorization" not in request.headers, "a personal token goes in PRIVATE-TOKEN only"
        assert request.url.host == "gitlab.example.com" and request.url.scheme == "https"


@dataclass
class FakeGiteaTransport(FakeForgeTransport):
    token: str = ""

    def authorized(self, request: httpx.Request) -> bool:
        return request.headers.get("authorization") == f"token {self.token}"

    def check_headers(self, request: httpx.Request) -> None:
        assert request.headers.get("accept") == "application/json"
        assert request.url.host == "gitea.example.com" and request.url.scheme == "https"
