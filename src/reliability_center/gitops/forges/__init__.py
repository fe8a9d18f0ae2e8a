"""Forges: where pull requests live. One small Protocol, neutral types, a registry.

Shaped after Kargo's ``pkg/gitprovider``: five operations, options objects in,
a neutral ``PullRequest`` out, so callers never see a forge's JSON. Each forge
module registers itself (name, URL predicate, constructor); ``new_forge``
tries the explicit name first, then the predicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from reliability_center.gitops.workspace import Credentials, sanitize

State = Literal["open", "closed", "all"]


@dataclass(frozen=True)
class PullRequest:
    """A pull (or merge) request as every forge can describe it."""

    number: int
    url: str
    open: bool
    merged: bool
    merge_commit: str | None
    head_sha: str | None
    head_branch: str
    base_branch: str
    merged_by: str | None = None
    merged_at: str | None = None

    @property
    def closed_unmerged(self) -> bool:
        return not self.open and not self.merged


@dataclass(frozen=True)
class CreatePullRequestOptions:
    head: str
    base: str
    title: str
    body: str = ""


@dataclass(frozen=True)
class ListPullRequestsOptions:
    state: State = "open"
    head_branch: str | None = None
    base_branch: str | None = None


@dataclass(frozen=True)
class MergePullRequestOptions:
    #: Merge only if the head is still this commit (nobody pushed after the review).
    expected_head: str | None = None
    message: str | None = None


class Forge(Protocol):
    def create_pull_request(self, opts: CreatePullRequestOptions) -> PullRequest: ...

    def get_pull_request(self, number: int) -> PullRequest | None: ...

    def list_pull_requests(self, opts: ListPullRequestsOptions) -> list[PullRequest]: ...

    def merge_pull_request(self, number: int, opts: MergePullRequestOptions | None = None) -> PullRequest: ...

    def commit_url(self, sha: str) -> str: ...

    def close(self) -> None: ...


class ForgeError(RuntimeError):
    """A forge call failed; ``retryable`` is False for errors a retry cannot fix (auth, validation)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class ForgeOptions:
    """What a constructor may need beyond the URL and credentials."""

    #: Overrides the API base URL derived from the repository URL.
    api_url: str | None = None
    #: An httpx transport: contract tests pass a validating Fake transport here.
    transport: httpx.BaseTransport | None = None
    timeout: float = 30.0
    #: Cache directory for forges that work through git itself (the plain git forge).
    cache_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Constructor = Callable[[str, Credentials | None, ForgeOptions], Forge]
Predicate = Callable[[str], bool]


@dataclass(frozen=True)
class Registration:
    name: str
    predicate: Predicate
    constructor: Constructor
    #: The user name git sends with a token over HTTP Basic.
    token_user: str = "git"


_REGISTRY: dict[str, Registration] = {}


def register(name: str, predicate: Predicate, constructor: Constructor, *, token_user: str = "git") -> None:
    if name in _REGISTRY:
        raise ValueError(f"forge {name!r} is already registered")
    _REGISTRY[name] = Registration(name, predicate, constructor, token_user)


def registered() -> list[str]:
    return list(_REGISTRY)


def lookup(url: str, name: str | None = None) -> Registration:
    """The explicit name wins; otherwise the first forge whose predicate claims the URL."""
    if name:
        if name not in _REGISTRY:
            raise ForgeError(f"unknown forge {name!r} (known: {', '.join(sorted(_REGISTRY))})", retryable=False)
        return _REGISTRY[name]
    for reg in _REGISTRY.values():
        if reg.predicate(url):
            return reg
    raise ForgeError(f"no forge claims {sanitize(url)}; set spec.repository.provider", retryable=False)


def new_forge(url: str, name: str | None = None, credentials: Credentials | None = None,
              options: ForgeOptions | None = None) -> Forge:
    return lookup(url, name).constructor(url, credentials, options or ForgeOptions())


# ---------------------------------------------------------------------------- URL parsing


@dataclass(frozen=True)
class RepoURL:
    """A forge repository address: ``scheme://host[:port]/prefix/owner/name``."""

    scheme: str
    host: str
    port: int | None
    #: Every path segment after the host, without ``.git`` (GitLab groups nest).
    segments: tuple[str, ...]

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    @property
    def web_scheme(self) -> str:
        return self.scheme if self.scheme in ("http", "https") else "https"

    @property
    def owner(self) -> str:
        return self.segments[-2]

    @property
    def name(self) -> str:
        return self.segments[-1]

    @property
    def prefix(self) -> str:
        """A sub-path the forge is served under (``/git`` in ``https://h/git/o/r``)."""
        return "".join(f"/{s}" for s in self.segments[:-2])


_SCP = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


def parse_repo_url(url: str) -> RepoURL:
    """https://h/o/r(.git), ssh://git@h:22/o/r.git and scp-like git@h:o/r.git."""
    if "://" not in url:
        m = _SCP.match(url)
        if not m:
            raise ForgeError(f"cannot parse repository URL {sanitize(url)!r}", retryable=False)
        scheme, host, port, path = "ssh", m.group("host"), None, m.group("path")
    else:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ForgeError(f"repository URL {sanitize(url)!r} has no host", retryable=False)
        scheme, host, path = parts.scheme, parts.hostname, parts.path
        try:
            port = parts.port
        except ValueError:
            raise ForgeError(f"repository URL {sanitize(url)!r} has a bad port", retryable=False) from None
        if scheme == "ssh":
            port = None  # the web/API port is not the SSH port
    segments = tuple(s for s in path.split("/") if s)
    if segments and segments[-1].endswith(".git"):
        segments = segments[:-1] + (segments[-1][:-4],)
    if len(segments) < 2 or any(s in (".", "..") for s in segments):
        raise ForgeError(f"repository URL {sanitize(url)!r} must name an owner and a repository", retryable=False)
    return RepoURL(scheme, host.lower(), port, segments)


def host_contains(word: str) -> Predicate:
    def predicate(url: str) -> bool:
        try:
            return word in parse_repo_url(url).host
        except ForgeError:
            return False

    return predicate


# ---------------------------------------------------------------------------- HTTP helpers


def http_client(base_url: str, headers: dict[str, str], options: ForgeOptions) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"User-Agent": "reliability-center", **headers},
                        timeout=options.timeout, transport=options.transport, follow_redirects=False)


def check(response: httpx.Response, what: str, secrets: list[str]) -> httpx.Response:
    """Raise a ForgeError with a short, sanitized message for any non-2xx answer."""
    if response.is_success:
        return response
    detail = response.text[:300].replace("\n", " ")
    status = response.status_code
    retryable = status >= 500 or status in (408, 409, 425, 429)
    hint = {401: "bad or missing credentials", 403: "the credentials lack permission", 404: "not found"}.get(status, "")
    message = f"{what}: HTTP {status}{' (' + hint + ')' if hint else ''}: {detail}"
    raise ForgeError(sanitize(message, secrets), status=status, retryable=retryable)


def request(client: httpx.Client, method: str, path: str, what: str, secrets: list[str],
            **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ForgeError(sanitize(f"{what}: {type(exc).__name__}: {exc}", secrets)) from None
    return check(response, what, secrets)


class RestForge:
    """What the REST forges share: one httpx client on the API base, sanitized errors, close()."""

    def __init__(self, api: str, headers: dict[str, str], base: str, secrets: list[str], options: ForgeOptions):
        self._http = http_client(api, headers, options)
        self._base = base
        self._secrets = secrets

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, what: str, **kw: Any) -> Any:
        response = request(self._http, method, self._base + path, what, self._secrets, **kw)
        return response.json() if response.content else None


def from_github_shape(data: dict[str, Any]) -> PullRequest:
    """A pull request as GitHub's REST API returns it; Gitea's API has the same shape."""
    head = data.get("head") or {}
    base = data.get("base") or {}
    # GitHub's list endpoint omits "merged"; merged_at is set on every endpoint of both.
    merged = bool(data.get("merged")) or bool(data.get("merged_at"))
    return PullRequest(
        number=int(data["number"]),
        url=data.get("html_url") or "",
        open=data.get("state") == "open",
        merged=merged,
        merge_commit=data.get("merge_commit_sha") if merged else None,
        head_sha=head.get("sha"),
        head_branch=head.get("ref") or "",
        base_branch=base.get("ref") or "",
        merged_by=(data.get("merged_by") or {}).get("login") if merged else None,
        merged_at=data.get("merged_at") if merged else None,
    )


# Self-registration: importing the package registers every built-in forge.
from reliability_center.gitops.forges import git, gitea, github, gitlab  # noqa: E402,F401
