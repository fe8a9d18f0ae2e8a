"""Forges: where pull requests live (Kargo's ``pkg/gitprovider`` shape).

The Protocol, the neutral types, the registry and the HTTP helpers the REST forges share are in
``base.py``, re-exported here; each forge module imports ``base`` and registers itself, and
importing this package registers every built-in one (git, gitea, github, gitlab).
"""

from __future__ import annotations

from reliability_center.gitops.forges.base import (
    State, PullRequest, CreatePullRequestOptions, ListPullRequestsOptions, MergePullRequestOptions, Forge, ForgeError,
    close_once, ForgeOptions, Constructor, Predicate, Registration, register, registered, lookup, new_forge, RepoURL,
    parse_repo_url, repository_path, host_contains, MAX_PAGES, MIN_RATE_LIMIT_WAIT, MAX_RATE_LIMIT_WAIT,
    SECONDARY_RATE_LIMIT_WAIT, http_client, rate_limit_wait, check, send, request, next_page, CachedAnswer, CacheKey,
    ETagCache, ETAGS, credentials_digest, RestForge, GitHubShapedForge, from_github_shape,
)

# Self-registration: importing the package registers every built-in forge.
from reliability_center.gitops.forges import git, gitea, github, gitlab  # noqa: F401

__all__ = [
    "State", "PullRequest", "CreatePullRequestOptions", "ListPullRequestsOptions", "MergePullRequestOptions", "Forge",
    "ForgeError", "close_once", "ForgeOptions", "Constructor", "Predicate", "Registration", "register", "registered",
    "lookup", "new_forge", "RepoURL", "parse_repo_url", "repository_path", "host_contains", "MAX_PAGES",
    "MIN_RATE_LIMIT_WAIT", "MAX_RATE_LIMIT_WAIT", "SECONDARY_RATE_LIMIT_WAIT", "http_client", "rate_limit_wait",
    "check", "send", "request", "next_page", "CachedAnswer", "CacheKey", "ETagCache", "ETAGS", "credentials_digest",
    "RestForge", "GitHubShapedForge", "from_github_shape", "git", "gitea", "github", "gitlab",
]
