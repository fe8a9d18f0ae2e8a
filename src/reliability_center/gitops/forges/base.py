"""Forges: where pull requests live. One small Protocol, neutral types, a registry (the package
``reliability_center.gitops.forges`` re-exports them and registers the built-in forges).

Shaped after Kargo's ``pkg/gitprovider``: a few operations, options objects in,
a neutral ``PullRequest`` out, so callers never see a forge's JSON. Each forge
module registers itself (name, URL predicate, constructor); ``new_forge``
tries the explicit name first, then the predicates.

The HTTP helpers at the bottom are what the REST forges share: statuses become
``ForgeError`` (rate limits retryable, with the wait the forge asked for), list
endpoints follow the next-page link, and a GET of one pull request is revalidated
with ``If-None-Match`` against a small in-memory HTTP cache.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
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

    def close_pull_request(self, number: int) -> PullRequest:
        """Close an open pull request without merging it; one already closed or merged comes back unchanged."""
        ...

    def comment_pull_request(self, number: int, body: str) -> None:
        """Add a comment. Not idempotent: a caller that retries should record that it already commented."""
        ...

    def commit_url(self, sha: str) -> str: ...

    def close(self) -> None:
        """Release the forge object's own resources (its HTTP client); says nothing about pull requests."""
        ...


class ForgeError(RuntimeError):
    """A forge call failed; ``retryable`` is False for errors a retry cannot fix (auth, validation).

    ``retry_after`` is how many seconds the forge asked us to wait before the next
    request (a rate limit's ``Retry-After`` or its reset time); None when it said nothing.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def close_once(number: int, read: Callable[[int], PullRequest | None],
               send_close: Callable[[PullRequest], PullRequest]) -> PullRequest:
    """Close a pull request only while it is open: closing is idempotent, and a merge is never undone.

    Reads first, so a retry or a pull request a human already closed costs no write (GitHub
    throttles writes harder than reads). A refused close is read again: a reviewer may have
    merged or closed it between our read and our write, and that is not a failure.
    """
    pr = read(number)
    if pr is None:
        raise ForgeError(f"pull request #{number} not found", status=404, retryable=False)
    if not pr.open:
        return pr
    try:
        return send_close(pr)
    except ForgeError as exc:
        if exc.retryable:
            raise
        again = read(number)
        if again is not None and not again.open:
            return again
        raise


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


def repository_path(url: str) -> str:
    """The repository's path on its forge, lower case (``owner/name``; GitLab: ``group/sub/name``): what a
    forge webhook and a PatchPlan both name. The host is left out: a forge's webhooks carry its own
    ROOT_URL, which a proxy or a cluster-internal address may spell differently from the plan's URL."""
    return "/".join(parse_repo_url(url).segments).lower()


def host_contains(word: str) -> Predicate:
    def predicate(url: str) -> bool:
        try:
            return word in parse_repo_url(url).host
        except ForgeError:
            return False

    return predicate


# ---------------------------------------------------------------------------- HTTP helpers

#: How many pages a list endpoint may span (100 items a page on GitHub and GitLab, 50 on Gitea).
MAX_PAGES = 20
#: A rate limit's wait is kept within these bounds (seconds): a reset already past (clock skew)
#: still waits a little, and a bogus far-away reset never parks a plan for more than an hour.
MIN_RATE_LIMIT_WAIT = 1.0
MAX_RATE_LIMIT_WAIT = 3600.0
#: GitHub's advice for a secondary rate limit that names no wait: "wait for at least one minute".
SECONDARY_RATE_LIMIT_WAIT = 60.0


def http_client(base_url: str, headers: dict[str, str], options: ForgeOptions,
                auth: tuple[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"User-Agent": "reliability-center", **headers},
                        timeout=options.timeout, transport=options.transport, follow_redirects=False, auth=auth)


def _server_now(response: httpx.Response) -> float:
    """The forge's own clock (its ``Date`` header), so a skewed local clock does not stretch a reset time."""
    date = response.headers.get("date")
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` is delta seconds (GitHub, GitLab) or, per RFC 9110, an HTTP date."""
    seconds = _number(value)
    if seconds is not None or not value:
        return seconds
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError):
        return None


def _reset_seconds(value: str | None, now: float) -> float | None:
    """A reset header as seconds from now: epoch seconds on GitHub and GitLab.

    The IETF RateLimit draft puts delta seconds in the same header name, so a value
    smaller than a day reads as a delay rather than as a date in 1970.
    """
    reset = _number(value)
    if reset is None:
        return None
    return reset if reset < 86400 else reset - now


def rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds a rate-limited answer asks us to wait, or None when the answer is not a rate limit.

    GitHub answers 403 or 429: ``retry-after`` for a secondary limit, ``x-ratelimit-remaining: 0``
    with the ``x-ratelimit-reset`` epoch for the primary one, and sometimes only a message naming a
    secondary rate limit. GitLab answers 429 with ``Retry-After`` or ``RateLimit-Reset``. A 403
    with none of these is a permission problem, not a rate limit.
    """
    status = response.status_code
    if status not in (403, 429):
        return None
    headers = response.headers
    now = _server_now(response)
    wait = _retry_after_seconds(headers.get("retry-after"), now)
    # GitHub's x-ratelimit-* always describe the primary limit: its reset matters only once it is spent.
    if wait is None and headers.get("x-ratelimit-remaining") == "0":
        wait = _reset_seconds(headers.get("x-ratelimit-reset"), now)
    # GitLab's RateLimit-* describe the limit that answered, so a 429 may leave "remaining" above 0.
    if wait is None and (status == 429 or headers.get("ratelimit-remaining") == "0"):
        wait = _reset_seconds(headers.get("ratelimit-reset"), now)
    if wait is None and "rate limit" in response.text[:1000].lower():
        wait = SECONDARY_RATE_LIMIT_WAIT
    if wait is None:
        return None
    return min(max(wait, MIN_RATE_LIMIT_WAIT), MAX_RATE_LIMIT_WAIT)


def check(response: httpx.Response, what: str, secrets: list[str]) -> httpx.Response:
    """Raise a ForgeError with a short, sanitized message for any non-2xx answer.

    A rate-limited answer is retryable and carries the forge's wait in ``retry_after``.
    """
    if response.is_success:
        return response
    detail = response.text[:300].replace("\n", " ")
    status = response.status_code
    wait = rate_limit_wait(response)
    retryable = status >= 500 or status in (408, 409, 425, 429) or wait is not None
    hint = {401: "bad or missing credentials", 403: "the credentials lack permission", 404: "not found"}.get(status, "")
    if wait is not None:
        hint = f"rate limited; retry in {wait:.0f}s"
    message = f"{what}: HTTP {status}{' (' + hint + ')' if hint else ''}: {detail}"
    raise ForgeError(sanitize(message, secrets), status=status, retryable=retryable, retry_after=wait)


def send(client: httpx.Client, method: str, url: str | httpx.URL, what: str, secrets: list[str],
         **kwargs: Any) -> httpx.Response:
    """One request; a transport failure (timeout, refused connection) becomes a retryable ForgeError."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ForgeError(sanitize(f"{what}: {type(exc).__name__}: {exc}", secrets)) from None


def request(client: httpx.Client, method: str, url: str | httpx.URL, what: str, secrets: list[str],
            **kwargs: Any) -> httpx.Response:
    return check(send(client, method, url, what, secrets, **kwargs), what, secrets)


def next_page(response: httpx.Response, api: httpx.URL, params: dict[str, Any] | None
              ) -> tuple[httpx.URL, dict[str, Any] | None] | None:
    """Where the next page is: the ``Link: <...>; rel="next"`` target, else GitLab's ``X-Next-Page``.

    Only the link's path and query are taken; the request still goes to our own API origin, so
    the credentials never travel to a host an answer names (and a forge whose configured root
    URL differs from the address we reach it by still pages).
    """
    link = response.links.get("next", {}).get("url")
    if link:
        target = httpx.URL(link)
        raw_path = target.raw_path.decode()
        if not raw_path.startswith(api.raw_path.decode().rstrip("/") + "/"):
            raise ForgeError(f"the next page link leaves the API ({target.path})", retryable=False)
        return httpx.URL(f"{api.scheme}://{api.netloc.decode()}{raw_path}"), None
    page = response.headers.get("x-next-page", "").strip()
    if page.isdigit():
        return response.request.url.copy_with(query=None), {**(params or {}), "page": page}
    return None


# ---------------------------------------------------------------------------- conditional GETs


@dataclass(frozen=True)
class CachedAnswer:
    etag: str
    body: bytes


CacheKey = tuple[str, str, str]


class ETagCache:
    """An HTTP cache for conditional GETs of one pull request: an ETag and the body it named.

    Only an HTTP cache, never a source of truth: every use sends ``If-None-Match`` and the
    forge decides; a 304 (which GitHub does not count against the rate limit) reuses the
    body, anything else replaces it. It lives at module level because forge objects are
    built anew on every poll; losing it (a restart, another replica) costs one full answer.
    Keys hold the API base URL, the path and a sha256 of the credentials, never the
    credentials: two tokens that may see different things never share an entry.
    Bounded (least recently used goes first) and safe to share between threads.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, CachedAnswer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> CachedAnswer | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
            return answer

    def put(self, key: CacheKey, etag: str, body: bytes) -> None:
        with self._lock:
            self._entries[key] = CachedAnswer(etag, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: The process's one ETag cache, shared by every REST forge object.
ETAGS = ETagCache()


def credentials_digest(headers: dict[str, str], auth: tuple[str, str] | None) -> str:
    """A sha256 over whatever carries the credentials (a header or HTTP Basic): a cache key part, not a secret."""
    parts = [headers.get("Authorization", ""), headers.get("PRIVATE-TOKEN", ""), ":".join(auth or ())]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class RestForge:
    """What the REST forges share: one httpx client on the API base, sanitized errors, paging,
    conditional GETs, close()."""

    def __init__(self, api: str, headers: dict[str, str], base: str, secrets: list[str], options: ForgeOptions,
                 auth: tuple[str, str] | None = None):
        self._http = http_client(api, headers, options, auth)
        self._base = base
        self._secrets = secrets
        self._credentials_digest = credentials_digest(headers, auth)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, what: str, **kw: Any) -> Any:
        response = request(self._http, method, self._base + path, what, self._secrets, **kw)
        return response.json() if response.content else None

    def _get_one(self, path: str, what: str) -> Any:
        """GET one object, revalidating the cached copy with ``If-None-Match`` (a 304 reuses it)."""
        key = (str(self._http.base_url), self._base + path, self._credentials_digest)
        cached = ETAGS.get(key)
        headers = {"If-None-Match": cached.etag} if cached else None
        response = send(self._http, "GET", self._base + path, what, self._secrets, headers=headers)
        if response.status_code == 304 and cached is not None:
            return json.loads(cached.body)
        check(response, what, self._secrets)
        etag = response.headers.get("etag")
        if etag and response.content:
            ETAGS.put(key, etag, response.content)
        return response.json() if response.content else None

    def _list(self, path: str, what: str, params: dict[str, Any]) -> list[Any]:
        """Every item of a list endpoint, page after page, up to MAX_PAGES pages."""
        items: list[Any] = []
        url: str | httpx.URL = self._base + path
        query: dict[str, Any] | None = params
        for _ in range(MAX_PAGES):
            response = request(self._http, "GET", url, what, self._secrets, params=query)
            items += (response.json() if response.content else None) or []
            following = next_page(response, self._http.base_url, query)
            if following is None:
                break
            url, query = following
        return items


class GitHubShapedForge(RestForge):
    """GitHub and Gitea: the same REST shapes for closing a pull request and commenting on it.

    Each subclass has its own ``get_pull_request``; closing reads through it first.
    """

    def close_pull_request(self, number: int) -> PullRequest:
        return close_once(number, self.get_pull_request, self._send_close)

    def _send_close(self, pr: PullRequest) -> PullRequest:
        data = self._call("PATCH", f"/pulls/{pr.number}", f"close pull request #{pr.number}",
                          json={"state": "closed"})
        return from_github_shape(data)

    def comment_pull_request(self, number: int, body: str) -> None:
        self._call("POST", f"/issues/{number}/comments", f"comment on pull request #{number}", json={"body": body})


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

