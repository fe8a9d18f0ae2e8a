"""Path guardrails: hostile paths are refused with the path and the reason."""

from __future__ import annotations

import os

import pytest

from reliability_center.gitops.edits import changed_lines, unified_diff
from reliability_center.gitops.paths import (
    DEFAULT_DENY,
    RECORD_PATHS,
    DiffSize,
    PathPolicy,
    PathRefused,
    check_diff,
    check_path,
    check_paths,
    fs_lookup,
    glob_match,
    runbook_allow,
    template_glob,
)

POLICY = PathPolicy(allow=("apps/**", "tenants/*/values.yaml"), deny=PathPolicy().deny + ("apps/billing/**",))


@pytest.mark.parametrize("path, reason", [
    ("../etc/passwd", "'..' segment escapes the repository"),
    ("apps/../../etc/passwd", "'..' segment"),
    ("apps/web/..", "'..' segment"),
    ("/etc/passwd", "absolute path (starts with '/' or a drive letter)"),
    ("C:/Windows/system.ini", "absolute path"),
    ("apps\\web\\deployment.yaml", "backslash in path"),
    ("apps/web/\x00.yaml", "control character U+0000 in path"),
    ("apps//web.yaml", "empty or '.' segment"),
    ("./apps/web.yaml", "empty or '.' segment"),
    ("apps/web/", "empty or '.' segment"),
    ("apps/.git/config", "inside the .git directory (git internals"),
    (".GIT/hooks/pre-commit", "inside the .git directory"),
    ("apps/billing/ledger.yaml",
     "deny-list pattern 'apps/billing/**' (an entry added to the deny-list by the operator's configuration)"),
    (".github/workflows/ci.yml", "deny-list pattern '.github/workflows/**' (CI definitions:"),
    ("apps/web/.gitattributes", "deny-list pattern '**/.gitattributes' (git attributes:"),
    (".argocd-source-web.yaml", "hidden path: '.argocd-source-web.yaml' starts with a dot"),
    ("apps/web/.argocd-source-web.yaml", "hidden path: '.argocd-source-web.yaml' starts with a dot"),
    ("apps/.config/web.yaml", "hidden path: '.config' starts with a dot"),
    ("infra/cluster.yaml", "not in the allow-list (configured): it matches none of its patterns (apps/**, tenants/*/values.yaml)"),
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
    with pytest.raises(PathRefused, match="apps/web is a directory, not a file"):
        check_path("apps/web", POLICY, fs_lookup(str(repo)))
    with pytest.raises(PathRefused, match="apps/file.yaml is a file, not a directory"):
        check_path("apps/file.yaml/x.yaml", POLICY, fs_lookup(str(repo)))
    assert check_path("apps/new/dir/file.yaml", POLICY, fs_lookup(str(repo)))  # new paths are fine


def test_a_hidden_path_says_why_in_words_not_with_a_pattern():
    # The Argo CD override file sits next to the app's manifests; the reason must be readable as is.
    with pytest.raises(PathRefused) as err:
        check_path("apps/web/.argocd-source-web.yaml", PathPolicy())
    assert str(err.value) == (
        "refused 'apps/web/.argocd-source-web.yaml': hidden path: '.argocd-source-web.yaml' starts with a dot "
        "(tools keep their settings in hidden files: Argo CD parameter overrides such as "
        ".argocd-source-<app>.yaml, CI configuration, git settings)")


@pytest.mark.parametrize("path", [
    ".forgejo/workflows/ci.yml",
    ".gitea/workflows/ci.yaml",
    ".github/workflows/ci.yml",
    ".github/actions/setup/action.yml",
    ".gitlab-ci.yml",
    ".gitlab/ci/deploy.yml",
    ".circleci/config.yml",
    "Jenkinsfile",
    ".woodpecker.yml",
    ".woodpecker/deploy.yaml",
    ".drone.yml",
])
def test_ci_definitions_of_every_supported_forge_are_denied(path):
    with pytest.raises(PathRefused, match=r"deny-list pattern '[^']+' \(CI definitions: the forge or a CI server"):
        check_path(path, PathPolicy())


@pytest.mark.parametrize("path", [
    "CODEOWNERS", "docs/CODEOWNERS", ".github/CODEOWNERS", ".gitlab/CODEOWNERS", ".gitea/CODEOWNERS",
])
def test_code_owner_files_are_denied(path):
    with pytest.raises(PathRefused, match=r"\(code ownership: it decides who must approve a pull request\)"):
        check_path(path, PathPolicy())


@pytest.mark.parametrize("path, words", [
    (".github/dependabot.yml", "dependency-update automation"),
    (".gitmodules", "git submodules"),
])
def test_other_denied_files_say_what_they_are(path, words):
    with pytest.raises(PathRefused, match=words):
        check_path(path, PathPolicy())


@pytest.mark.parametrize("path", ["docs/README.md", "apps/codeowners.yaml", "apps/jenkinsfile-notes.md",
                                  "apps/ci-values.yaml", "apps/makefile-notes.yaml", "apps/scripts.yaml"])
def test_deny_entries_do_not_catch_look_alikes(path):
    assert check_path(path, PathPolicy(allow=("**",))) == path


def test_every_default_deny_entry_has_words():
    for pattern in DEFAULT_DENY:
        with pytest.raises(PathRefused) as err:
            check_path(pattern.replace("**/", "x/").replace("**", "x").replace("*", "x"), PathPolicy())
        assert f"deny-list pattern {pattern!r} (" in err.value.reason or "inside the .git directory" in err.value.reason


def test_oversized_diff_is_refused_naming_the_biggest_file():
    policy = PathPolicy(max_diff_lines=10)
    check_diff({"a.yaml": 4, "b.yaml": 6}, policy)
    with pytest.raises(PathRefused) as err:
        check_diff({"a.yaml": 4, "b.yaml": 7}, policy)
    assert err.value.path == "b.yaml"
    assert "11 lines" in err.value.reason and "limit is 10" in err.value.reason
    assert err.value.reason.startswith("diff line limit: ")


def test_one_huge_line_is_refused_by_the_byte_limit():
    # 200 KB on one line passes a 2000-line limit; the bytes do not pass 64 KiB.
    before, after = "a: 1\n", "a: " + "x" * 200_000 + "\n"
    size = changed_lines(unified_diff("apps/big.yaml", before, after))
    assert size == 2 and size.changed_bytes == 4 + 200_003
    with pytest.raises(PathRefused) as err:
        check_diff({"apps/small.yaml": changed_lines(unified_diff("apps/small.yaml", "b: 1\n", "b: 2\n")),
                    "apps/big.yaml": size}, PathPolicy())
    assert err.value.path == "apps/big.yaml"
    assert err.value.reason == ("diff byte limit: the diff changes 200015 bytes (200007 in this file); "
                                "the limit is 65536 bytes")


def test_byte_limit_counts_the_whole_plan_and_is_configurable():
    policy = PathPolicy(max_diff_bytes=100)
    check_diff({"a.yaml": DiffSize(1, 60), "b.yaml": DiffSize(1, 40)}, policy)  # at the limit: fine
    with pytest.raises(PathRefused, match="changes 101 bytes .60 in this file.; the limit is 100 bytes"):
        check_diff({"a.yaml": DiffSize(1, 60), "b.yaml": DiffSize(1, 41)}, policy)
    check_diff({"a.yaml": 5}, PathPolicy(max_diff_bytes=1))  # a plain count carries no bytes: lines only


def test_byte_limit_defaults_to_64_kib():
    assert PathPolicy().max_diff_bytes == 64 * 1024
    assert PathPolicy.from_strings().max_diff_bytes == 64 * 1024
    assert PathPolicy.from_strings(max_diff_bytes=1000).max_diff_bytes == 1000


def test_too_many_files():
    with pytest.raises(PathRefused, match="file-count limit: the plan touches 3 files; the limit is 2"):
        check_paths(["apps/a.yaml", "apps/b.yaml", "apps/c.yaml"], PathPolicy(allow=("apps/**",), max_files=2))


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
    policy = PathPolicy.from_strings("apps/**, tenants/**", "secrets/**", 50, 4096)
    assert policy.allow == ("apps/**", "tenants/**")
    assert ".git/**" in policy.deny and "secrets/**" in policy.deny and "CODEOWNERS" in policy.deny
    assert policy.max_diff_lines == 50 and policy.max_diff_bytes == 4096


# --- issue 19, item 9: what CI runs is denied wherever it sits; the allow-list is the runbooks' paths


@pytest.mark.parametrize("path", [
    "apps/shop/Jenkinsfile", "deploy/Jenkinsfile.release", "azure-pipelines.yml", "apps/azure-pipelines.yaml",
    "apps/shop/bitbucket-pipelines.yml", "apps/cloudbuild.yaml", "apps/buildspec.yml",
])
def test_ci_definitions_below_the_root_are_denied(path):
    with pytest.raises(PathRefused, match=r"\(CI definitions: the forge or a CI server"):
        check_path(path, PathPolicy(allow=("**",)))


@pytest.mark.parametrize("path", [
    "Makefile", "apps/shop/Makefile", "apps/shop/makefile", "GNUmakefile", "rules.mk", "apps/Dockerfile",
    "scripts/deploy.yaml", "apps/shop/hack/values.yaml", "ci/values.yaml", "apps/bin/tool",
    "apps/run.sh", "tools/migrate.py", "apps/shop/package.json", "apps/conftest.py", "apps/RUN.SH",
])
def test_what_ci_jobs_execute_is_denied_by_name_and_by_place(path):
    with pytest.raises(PathRefused, match=r"\(build and script files: CI jobs run them"):
        check_path(path, PathPolicy(allow=("**",)))


PERF = {"spec": {"steps": [
    {"name": "restart", "action": "restart-one-by-one", "params": {"changes": [{"path": "never/used.yaml"}]}},
    {"name": "fix", "action": "patch-plan", "params": {"changes": [
        {"path": "{appPath}/deployment-{module}.yaml"}, {"path": "tenants/{tenant}/values.yaml"},
        {"path": "{appPath}"}, {"path": "{a}/{b}"}, {"path": "apps/*"}]}},
]}}


def test_the_default_allow_list_is_the_runbooks_change_paths_and_the_records():
    allow = runbook_allow([PERF, {"spec": {}}])
    assert allow == ("incidents/*/*.md", "postmortems/*/*.md", "**/deployment-*.yaml", "tenants/*/values.yaml")
    policy = PathPolicy.from_strings(runbooks=[PERF])
    for ok in ["apps/shop/deployment-search.yaml", "deployment-search.yaml", "tenants/acme/values.yaml",
               "incidents/shop/inc-1.md", "postmortems/shop/inc-1.md"]:
        assert check_path(ok, policy) == ok
    for refused in ["apps/shop/service.yaml", "tenants/acme/extra/values.yaml", "never/used.yaml",
                    "incidents/shop/inc-1.yaml", "README.md"]:
        with pytest.raises(PathRefused, match=r"not in the allow-list \(the paths the installed Runbooks'"):
            check_path(refused, policy)


def test_no_runbook_allows_only_the_records_and_an_explicit_allow_list_replaces_the_default():
    assert PathPolicy.from_strings().allow == RECORD_PATHS
    explicit = PathPolicy.from_strings(allow="apps/**", runbooks=[PERF])
    assert explicit.allow == ("apps/**",)
    with pytest.raises(PathRefused, match=r"not in the allow-list \(RC_GITOPS_ALLOW\)"):
        check_path("tenants/acme/values.yaml", explicit)


def test_a_template_of_placeholders_only_bounds_nothing_and_is_left_out():
    for template in ["{appPath}", "{appPath}/{file}", "{x}.*", "", None, "apps/*.yaml"]:
        assert template_glob(template) is None  # type: ignore[arg-type]
    assert template_glob("{appPath}/networkpolicy-isolate-{tenant}.yaml") == "**/networkpolicy-isolate-*.yaml"
