"""The forge registry, URL parsing, neutral conversions, rate limit headers, secrets hygiene."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from reliability_center.gitops import forges
from reliability_center.gitops.forges import (
    CreatePullRequestOptions,
    ETagCache,
    ForgeError,
    ForgeOptions,
    credentials_digest,
    lookup,
    new_forge,
    parse_repo_url,
    rate_limit_wait,
    register,
)
from reliability_center.gitops.forges.fake import FakeForge
from reliability_center.gitops.forges.git import GitForge
from reliability_center.gitops.forges.gitea import GiteaForge
from reliability_center.gitops.forges.github import GitHubForge, api_base
from reliability_center.gitops.forges.gitlab import GitLabForge
from reliability_center.gitops.workspace import Credentials, GitError, Workspace, sanitize, strip_userinfo


def test_builtin_forges_register_themselves():
    assert set(forges.registered()) >= {"git", "gitea", "github", "gitlab"}


def test_the_package_re_exports_every_public_name_of_base():
    """forges/base.py holds the shared code (no forge imports the package back); callers import the package."""
    from reliability_center.gitops.forges import base

    defined = {name for name, value in vars(base).items() if not name.startswith("_")
               and getattr(value, "__module__", base.__name__) == base.__name__ and not isinstance(value, type(base))}
    assert defined - set(forges.__all__) == set()
    assert all(getattr(forges, name) is getattr(base, name) for name in defined)


@pytest.mark.parametrize("url, name", [
    ("https://github.com/acme/gitops.git", "github"),
    ("git@github.com:acme/gitops.git", "github"),
    ("https://gitlab.example.com/group/sub/gitops", "gitlab"),
    ("https://gitea.internal:3000/acme/gitops.git", "gitea"),
    ("file:///srv/git/gitops.git", "git"),
    ("/srv/git/gitops.git", "git"),
])
def test_lookup_by_url_predicate(url, name):
    assert lookup(url).name == name


@pytest.mark.parametrize("forge_class", [GitForge, GiteaForge, GitHubForge, GitLabForge, FakeForge])
def test_every_forge_implements_the_whole_protocol(forge_class):
    operations = {name for name in vars(forges.Forge) if not name.startswith("_")}
    assert {"close_pull_request", "comment_pull_request", "close"} <= operations
    assert {name for name in operations if not callable(getattr(forge_class, name, None))} == set()


def test_the_fake_forge_closes_once_and_keeps_comments():
    fake = FakeForge()
    fake.push("topic", "a" * 40)
    pr = fake.create_pull_request(CreatePullRequestOptions(head="topic", base="main", title="t"))
    fake.comment_pull_request(pr.number, "why")
    closed = fake.close_pull_request(pr.number)
    assert closed.closed_unmerged and fake.close_pull_request(pr.number) == closed
    assert fake.comments == [(pr.number, "why")]
    merged = fake.merge(fake.create_pull_request(CreatePullRequestOptions(head="topic", base="main", title="u"))
                        .number, merge_commit="b" * 40)
    assert fake.close_pull_request(merged.number) == merged
    with pytest.raises(ForgeError) as err:
        fake.comment_pull_request(99, "nobody")
    assert err.value.status == 404 and not err.value.retryable


NOW = 1895598000
DATE = email.utils.formatdate(NOW, usegmt=True)


@pytest.mark.parametrize("status, headers, body, wait", [
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW + 90)}, "", 90),
    (429, {"retry-after": "12"}, "", 12),
    (429, {"retry-after": email.utils.formatdate(NOW + 40, usegmt=True)}, "", 40),  # RFC 9110: a date
    (429, {"ratelimit-reset": "30"}, "", 30),                      # the IETF draft: delta seconds
    (429, {"ratelimit-remaining": "0", "ratelimit-reset": str(NOW + 5)}, "", 5),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW - 30)}, "", 1),    # past: skewed clock
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW + 86400)}, "", 3600),  # capped
    (403, {"x-ratelimit-remaining": "12"}, "You have exceeded a secondary rate limit.", 60),
    (403, {"x-ratelimit-remaining": "12", "x-ratelimit-reset": str(NOW + 90)}, "Must have admin rights", None),
    (403, {}, "", None),
    (429, {}, "", None),                       # still retryable (a 429), but no wait was named
    (404, {"retry-after": "5"}, "", None),     # only 403 and 429 are rate limits
])
def test_rate_limit_wait(status, headers, body, wait):
    response = httpx.Response(status, headers={"date": DATE, **headers}, text=body)
    assert rate_limit_wait(response) == wait


def test_without_a_date_header_the_local_clock_measures_the_reset():
    response = httpx.Response(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(time.time() + 600)})
    assert 590 <= rate_limit_wait(response) <= 600


def test_etag_cache_is_bounded_and_forgets_the_least_recently_used():
    cache = ETagCache(max_entries=2)
    cache.put(("api", "/a", "k"), '"1"', b"{}")
    cache.put(("api", "/b", "k"), '"2"', b"{}")
    assert cache.get(("api", "/a", "k")) is not None  # /a is now the most recently used
    cache.put(("api", "/c", "k"), '"3"', b"{}")
    assert [key[1] for key in cache.keys()] == ["/a", "/c"]


def test_credentials_digest_tells_credentials_apart_without_holding_them():
    token = credentials_digest({"Authorization": "Bearer s3cr3t-token"}, None)
    assert token != credentials_digest({"Authorization": "Bearer another"}, None)
    assert token != credentials_digest({}, ("bob", "s3cr3t-token"))
    assert "s3cr3t" not in token and len(token) == 64


def test_explicit_name_wins_over_the_url():
    assert lookup("https://github.com/acme/gitops.git", "gitea").name == "gitea"
    forge = new_forge("http://127.0.0.1:3000/acme/gitops.git", "gitea", Credentials(token="t0ken"))
    assert isinstance(forge, GiteaForge)
    forge.close()


def test_unknown_name_and_unclaimed_url_fail_clearly():
    with pytest.raises(ForgeError, match="unknown forge 'bitbucket'"):
        lookup("https://x/a/b", "bitbucket")
    with pytest.raises(ForgeError, match="no forge claims https://\\*\\*\\*@forge.example/a/b"):
        lookup("https://user:secret@forge.example/a/b")


def test_duplicate_registration_fails_loudly():
    with pytest.raises(ValueError, match="'github' is already registered"):
        register("github", lambda url: False, lambda *a: FakeForge())


@pytest.mark.parametrize("url, host, port, segments, scheme", [
    ("https://github.com/acme/gitops.git", "github.com", None, ("acme", "gitops"), "https"),
    ("http://127.0.0.1:3000/acme/gitops", "127.0.0.1", 3000, ("acme", "gitops"), "http"),
    ("git@github.com:acme/gitops.git", "github.com", None, ("acme", "gitops"), "ssh"),
    ("ssh://git@gitlab.com:2222/g/s/p.git", "gitlab.com", None, ("g", "s", "p"), "ssh"),
    ("https://Git.Example.com/prefix/acme/gitops", "git.example.com", None, ("prefix", "acme", "gitops"), "https"),
])
def test_parse_repo_url(url, host, port, segments, scheme):
    repo = parse_repo_url(url)
    assert (repo.host, repo.port, repo.segments, repo.scheme) == (host, port, segments, scheme)


@pytest.mark.parametrize("url", ["https://github.com/only-owner", "not a url", "https:///a/b", "https://h/a/../b"])
def test_parse_repo_url_rejects(url):
    with pytest.raises(ForgeError):
        parse_repo_url(url)


def test_api_bases():
    assert api_base(parse_repo_url("https://github.com/a/b")) == "https://api.github.com"
    assert api_base(parse_repo_url("https://ghe.corp/a/b")) == "https://ghe.corp/api/v3"
    lab = GitLabForge("https://gitlab.com/g/sub/proj.git", None, ForgeOptions())
    assert lab.project_path == "g/sub/proj"
    assert lab.commit_url("abc") == "https://gitlab.com/g/sub/proj/-/commit/abc"
    lab.close()
    hub = GitHubForge("git@github.com:a/b.git", None, ForgeOptions())
    assert hub.commit_url("abc") == "https://github.com/a/b/commit/abc"
    hub.close()
    tea = GiteaForge("http://127.0.0.1:3000/sub/a/b.git", None, ForgeOptions())
    assert tea.commit_url("abc") == "http://127.0.0.1:3000/sub/a/b/commit/abc"
    tea.close()


def test_sanitize_strips_userinfo_and_secrets():
    text = "fatal: https://bob:hunter22@git.example/a.git failed; token=abcd1234; Authorization: Basic Ym9iOmh1bnRlcg=="
    out = sanitize(text, ["abcd1234"])
    assert "hunter22" not in out and "abcd1234" not in out and "Ym9iOmh1bnRlcg==" not in out
    assert "https://***@git.example/a.git" in out
    assert strip_userinfo("https://u:p@h/a.git") == "https://h/a.git"


def test_workspace_refuses_a_password_in_the_url(tmp_path):
    with pytest.raises(GitError, match="carries a password") as err:
        Workspace("https://bob:hunter22@git.example/a.git", tmp_path)
    assert "hunter22" not in str(err.value)


def test_credentials_never_reach_argv_or_repo_config(tmp_path):
    creds = Credentials(username="bob", token="s3cr3t-token")
    ws = Workspace("https://git.example/a/b.git", tmp_path, creds)
    env = ws._env()
    assert "s3cr3t-token" not in repr(creds)
    values = [v for k, v in env.items() if k.startswith("GIT_CONFIG_VALUE_")]
    assert any(v.startswith("Authorization: Basic ") for v in values)
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    ws.ensure()
    assert "s3cr3t" not in (ws.path / "config").read_text()
