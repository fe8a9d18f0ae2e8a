"""The forge registry, URL parsing, neutral conversions, secrets hygiene."""

from __future__ import annotations

import pytest

from reliability_center.gitops import forges
from reliability_center.gitops.forges import ForgeError, ForgeOptions, lookup, new_forge, parse_repo_url, register
from reliability_center.gitops.forges.fake import FakeForge
from reliability_center.gitops.forges.gitea import GiteaForge
from reliability_center.gitops.forges.github import GitHubForge, api_base
from reliability_center.gitops.forges.gitlab import GitLabForge
from reliability_center.gitops.workspace import Credentials, GitError, Workspace, sanitize, strip_userinfo


def test_builtin_forges_register_themselves():
    assert set(forges.registered()) >= {"git", "gitea", "github", "gitlab"}


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
