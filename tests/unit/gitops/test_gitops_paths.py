"""Path guardrails: hostile paths are refused with the path and the reason."""

from __future__ import annotations

import os

import pytest

from reliability_center.gitops.paths import (
    PathPolicy,
    PathRefused,
    check_diff,
    check_path,
    check_paths,
    fs_lookup,
    glob_match,
)

POLICY = PathPolicy(allow=("apps/**", "tenants/*/values.yaml"), deny=PathPolicy().deny + ("apps/billing/**",))


@pytest.mark.parametrize("path, reason", [
    ("../etc/passwd", "'..' segment"),
    ("apps/../../etc/passwd", "'..' segment"),
    ("apps/web/..", "'..' segment"),
    ("/etc/passwd", "absolute path"),
    ("C:/Windows/system.ini", "absolute path"),
    ("apps\\web\\deployment.yaml", "backslash"),
    ("apps/web/\x00.yaml", "control character"),
    ("apps//web.yaml", "empty or '.' segment"),
    ("./apps/web.yaml", "empty or '.' segment"),
    ("apps/.git/config", "inside the .git directory"),
    (".GIT/hooks/pre-commit", "inside the .git directory"),
    ("apps/billing/ledger.yaml", "deny-list pattern 'apps/billing/**'"),
    (".github/workflows/ci.yml", "deny-list pattern"),
    ("apps/web/.gitattributes", "deny-list pattern '**/.gitattributes'"),
    ("infra/cluster.yaml", "not in the allow-list"),
    ("tenants/a/b/values.yaml", "not in the allow-list"),
    ("", "empty path"),
])
def test_hostile_paths_are_refused_with_path_and_reason(path, reason):
    with pytest.raises(PathRefused) as err:
        check_path(path, POLICY)
    assert reason in err.value.reason
    assert err.value.path == path
    assert repr(path) in str(err.value)


@pytest.mark.parametrize("path", ["apps/web/deployment.yaml", "tenants/acme/values.yaml", "apps/a/b/c/d.yml"])
def test_allowed_paths_pass(path):
    assert check_path(path, POLICY) == path


def test_symlink_resolving_outside_the_repo_is_refused(tmp_path):
    repo = tmp_path / "repo"
    (repo / "apps").mkdir(parents=True)
    os.symlink("/etc", repo / "apps" / "etc")
    os.symlink("../../outside", repo / "apps" / "up")
    with pytest.raises(PathRefused, match="apps/etc is a symlink to '/etc', which resolves outside the repository"):
        check_path("apps/etc/passwd", POLICY, fs_lookup(str(repo)))
    with pytest.raises(PathRefused, match="resolves outside the repository"):
        check_path("apps/up/x.yaml", POLICY, fs_lookup(str(repo)))


def test_symlink_inside_the_repo_is_refused_too(tmp_path):
    # An allowed name must not write a denied file through a link.
    repo = tmp_path / "repo"
    (repo / "apps" / "billing").mkdir(parents=True)
    (repo / "apps" / "billing" / "ledger.yaml").write_text("a: 1\n")
    os.symlink("billing/ledger.yaml", repo / "apps" / "innocent.yaml")
    with pytest.raises(PathRefused, match="apps/innocent.yaml is a symlink to 'billing/ledger.yaml'; edits never follow"):
        check_path("apps/innocent.yaml", POLICY, fs_lookup(str(repo)))


def test_directories_and_files_in_the_way(tmp_path):
    repo = tmp_path / "repo"
    (repo / "apps" / "web").mkdir(parents=True)
    (repo / "apps" / "file.yaml").write_text("a: 1\n")
    with pytest.raises(PathRefused, match="is a directory"):
        check_path("apps/web", POLICY, fs_lookup(str(repo)))
    with pytest.raises(PathRefused, match="apps/file.yaml is a file, not a directory"):
        check_path("apps/file.yaml/x.yaml", POLICY, fs_lookup(str(repo)))
    assert check_path("apps/new/dir/file.yaml", POLICY, fs_lookup(str(repo)))  # new paths are fine


def test_oversized_diff_is_refused_naming_the_biggest_file():
    policy = PathPolicy(max_diff_lines=10)
    check_diff({"a.yaml": 4, "b.yaml": 6}, policy)
    with pytest.raises(PathRefused) as err:
        check_diff({"a.yaml": 4, "b.yaml": 7}, policy)
    assert err.value.path == "b.yaml"
    assert "11 lines" in err.value.reason and "limit is 10" in err.value.reason


def test_too_many_files():
    with pytest.raises(PathRefused, match="touches 3 files; the limit is 2"):
        check_paths(["apps/a.yaml", "apps/b.yaml", "apps/c.yaml"], PathPolicy(max_files=2))


@pytest.mark.parametrize("pattern, path, matches", [
    ("**", "a/b/c", True),
    ("apps/**", "apps/x.yaml", True),
    ("apps/**", "apps", False),
    ("**/.git/**", "a/.git/config", True),
    ("**/.gitattributes", ".gitattributes", True),
    ("*.yaml", "a/b.yaml", False),
    ("*/values.yaml", "acme/values.yaml", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("a.b", "axb", False),
])
def test_glob_match(pattern, path, matches):
    assert glob_match(pattern, path) is matches


def test_policy_from_strings_keeps_the_default_deny_list():
    policy = PathPolicy.from_strings("apps/**, tenants/**", "secrets/**", 50)
    assert policy.allow == ("apps/**", "tenants/**")
    assert ".git/**" in policy.deny and "secrets/**" in policy.deny
    assert policy.max_diff_lines == 50
