"""Where credentials may go: the Secret opts in, the cluster admin may bound the hosts. Pure.

Anyone allowed to create a PatchPlan could otherwise point ``spec.repository.url``
at a host of their choosing and have the operator send it the token of a Secret
they cannot read themselves (a confused deputy). As Argo CD does with repository
Secrets, a credentials Secret names where it may be sent:

- the label ``reliability.center/secret-type: repository``;
- ``url``: one repository URL, or a prefix ending in ``/`` for every repository
  under it (on a path-segment boundary: ``https://git.example.com/team/`` covers
  ``.../team/gitops.git``, not ``.../team-b/...``);
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
from urllib.parse import urlsplit

from reliability_center.gitops.workspace import sanitize

SECRET_TYPE_LABEL = "reliability.center/secret-type"
SECRET_TYPE = "repository"


@dataclass(frozen=True)
class Location:
    """A repository address reduced to what decides where bytes go."""

    scheme: str
    host: str
    port: int | None
    path: str  # no trailing slash, no .git

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def locate(url: str) -> Location | None:
    if "://" not in url:
        return None  # scp-like ssh addresses carry no HTTP credentials from a Secret
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    path = parts.path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return Location(parts.scheme.lower(), parts.hostname.lower(), None if port == default else port, path)


def url_allowed(pattern: str, url: str) -> bool:
    """``pattern`` names ``url`` exactly (``.git`` aside), or is a ``/``-ended prefix of it."""
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
    where = locate(url)
    if where is None:
        return "the repository URL must be http(s)://host/... when RC_GITOPS_ALLOWED_HOSTS is set"
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
    if not url_allowed(pattern, url):
        return f"{name} may be sent to {sanitize(pattern)} only, not to {sanitize(url)}"
    namespaces = [n.strip() for n in (data.get("namespaces") or secret_namespace).split(",") if n.strip()]
    if "*" not in namespaces and plan_namespace not in namespaces:
        return f"{name} may be used by PatchPlans of {', '.join(namespaces)} only, not of {plan_namespace}"
    return None
