"""Where credentials may go: the Secret opts in, the cluster admin may bound the hosts. Pure.

Anyone allowed to create a PatchPlan could otherwise point ``spec.repository.url``
at a host of their choosing and have the operator send it the token of a Secret
they cannot read themselves (a confused deputy). As Argo CD does with repository
Secrets, a credentials Secret names where it may be sent:

- the label ``reliability.center/secret-type: repository``;
- ``url``: one repository URL, or a prefix ending in ``/`` for every repository
  under it (on a path-segment boundary: ``https://git.example.com/team/`` covers
  ``.../team/gitops.git``, not ``.../team-b/...``). Both URLs are normalised first
  (``parse``) the way git resolves them before sending, so ``.../team/../platform/``
  is ``.../platform/``; a URL that servers could read differently is refused;
- ``namespaces``: the namespaces whose PatchPlans may use it (comma-separated,
  ``*`` for all); absent, only plans in the Secret's own namespace.

``RC_GITOPS_ALLOWED_HOSTS`` (comma-separated ``host`` or ``host:port``, shell
globs allowed) bounds every repository URL, with or without credentials. A
refusal is decided here, before any network call, and its reason goes to the
plan's status.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from reliability_center.gitops.workspace import sanitize

SECRET_TYPE_LABEL = "reliability.center/secret-type"
SECRET_TYPE = "repository"


@dataclass(frozen=True)
class Location:
    """A repository address reduced to what decides where bytes go."""

    scheme: str
    host: str
    port: int | None
    path: str  # decoded, dot segments resolved; no trailing slash, no .git

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


class UnsafeURL(ValueError):
    """A URL whose destination the operator cannot tell for certain: no credentials go there."""


#: Characters that, decoded in a path, mean different places to different servers: an encoded
#: ``/`` or ``\`` may or may not split a segment, a ``%`` left after one decoding is decoded again
#: by some, and ``;`` starts path parameters (``..;`` is ``..`` to Tomcat).
_AMBIGUOUS_IN_PATH = {"/": "an encoded '/' (%2F)", "\\": "a backslash", "%": "a double-encoded '%' (%25)",
                      ";": "a ';'"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse(url: str) -> Location:
    """Where ``url`` leads, the way git (libcurl) resolves it; ``UnsafeURL`` when servers may disagree.

    Normalised: scheme and host case (the host also IDNA-encoded, a trailing dot dropped), the
    default port, userinfo (never part of where), percent-encoding (decoded once, so ``%2e%2e`` is
    ``..``), dot segments (RFC 3986 5.2.4, as libcurl resolves them before sending), a trailing
    ``/`` and ``.git``. Refused rather than guessed: an encoded ``/``, a backslash, ``%25``, ``;``,
    an empty segment (``//``: curl keeps it, a server that merges slashes does not, and a ``..``
    after it then climbs one level further there), a query or fragment, control characters.
    """
    if "://" not in url:
        raise UnsafeURL("it is not scheme://host/path (scp-like ssh addresses carry no HTTP credentials)")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeURL("it contains whitespace or control characters")
    if "\\" in url:
        raise UnsafeURL("it contains a backslash, which some URL parsers read as '/'")
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise UnsafeURL("it has a query or fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"its port is invalid ({exc})") from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL("it names no host")
    if "%" in host:
        raise UnsafeURL("its host is percent-encoded")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeURL("its host is not a valid domain name") from None
    scheme = parts.scheme.lower()
    return Location(scheme, host, None if port == _DEFAULT_PORTS.get(scheme) else port, _path(parts.path))


def _path(raw: str) -> str:
    segments = []
    for raw_segment in raw.split("/")[1:]:
        try:
            segment = unquote(raw_segment, errors="strict")
        except UnicodeDecodeError:
            raise UnsafeURL("its path has percent-encoded bytes that are not UTF-8") from None
        for char, what in _AMBIGUOUS_IN_PATH.items():
            if char in segment:
                raise UnsafeURL(f"its path contains {what}")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
            raise UnsafeURL("its path contains an encoded control character")
        segments.append(segment)
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash names the same repository
    if "" in segments:
        raise UnsafeURL("its path has an empty segment ('//')")
    resolved: list[str] = []
    for segment in segments:
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    path = "/" + "/".join(resolved) if resolved else ""
    return path[:-4] if path.endswith(".git") else path


def locate(url: str) -> Location | None:
    try:
        return parse(url)
    except UnsafeURL:
        return None


def url_allowed(pattern: str, url: str) -> bool:
    """``pattern`` names ``url`` exactly (``.git`` aside), or is a ``/``-ended prefix of it, once both
    are normalised (``parse``); a URL whose destination is ambiguous matches nothing."""
    target, allowed = locate(url), locate(pattern)
    if target is None or allowed is None:
        return False
    if (target.scheme, target.host, target.port) != (allowed.scheme, allowed.host, allowed.port):
        return False
    if pattern.endswith("/"):
        return target.path.startswith(allowed.path + "/")
    return target.path == allowed.path


def host_refusal(url: str, allowed_hosts: list[str]) -> str | None:
    """Why the repository's host is outside the admin's allow-list (None: allowed, or no list)."""
    if not allowed_hosts:
        return None
    try:
        where = parse(url)
    except UnsafeURL as exc:
        return f"the repository URL {sanitize(url)} cannot be checked against RC_GITOPS_ALLOWED_HOSTS: {exc}"
    if any(fnmatch.fnmatchcase(where.netloc, h) or fnmatch.fnmatchcase(where.host, h) for h in allowed_hosts):
        return None
    return f"host {where.netloc} is not in the operator's allowed repository hosts ({', '.join(allowed_hosts)})"


def credentials_refusal(url: str, plan_namespace: str, secret_namespace: str, secret_name: str,
                        labels: dict[str, str], data: dict[str, str]) -> str | None:
    """Why this Secret may not be sent to ``url`` for a plan of ``plan_namespace`` (None: it may)."""
    name = f"Secret {secret_namespace}/{secret_name}"
    if labels.get(SECRET_TYPE_LABEL) != SECRET_TYPE:
        return (f"{name} does not opt in to be sent to a repository: it needs the label "
                f"{SECRET_TYPE_LABEL}={SECRET_TYPE} and a 'url' naming the repository (or a prefix ending in /)")
    pattern = (data.get("url") or "").strip()
    if not pattern:
        return f"{name} names no 'url': it may be sent nowhere"
    try:
        parse(url)
    except UnsafeURL as exc:
        return f"{name} is sent to no URL whose destination is ambiguous, and {sanitize(url)} is: {exc}"
    if not url_allowed(pattern, url):
        return f"{name} may be sent to {sanitize(pattern)} only, not to {sanitize(url)}"
    namespaces = [n.strip() for n in (data.get("namespaces") or secret_namespace).split(",") if n.strip()]
    if "*" not in namespaces and plan_namespace not in namespaces:
        return f"{name} may be used by PatchPlans of {', '.join(namespaces)} only, not of {plan_namespace}"
    return None
