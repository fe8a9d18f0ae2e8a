"""Guardrails on what a PatchPlan may touch in the GitOps repository.

Every check runs before anything is committed or pushed, and every refusal is
a ``PathRefused`` naming the path and the reason. The CRD's CEL rules already
reject some of these; they are checked again here because the operator must not
trust that admission ran (for example objects restored from a backup).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

_GIT = "git internals"
_SUBMODULES = "git submodules: they make every clone fetch other repositories"
_ATTRIBUTES = "git attributes: filters and merge drivers change what a checkout contains"
_CI = "CI definitions: the forge or a CI server runs their code"
_OWNERS = "code ownership: it decides who must approve a pull request"
_BOTS = "dependency-update automation: it opens pull requests of its own"
_BUILD = "build and script files: CI jobs run them with the pipeline's secrets"

#: Never edited by a PatchPlan, each with the words a refusal gives: git internals,
#: CI definitions and what CI runs (build files, scripts: code execution with the
#: pipeline's secrets), code ownership (who must review), and git attributes/modules
#: (filters and fetches of other repos). The forges supported are Gitea (Forgejo reads
#: the same files), GitHub, GitLab and plain git. Matched without regard to case (a
#: checkout on a case-insensitive file system reads ``makefile`` as ``Makefile``). A
#: belt, not the wall: the allow-list (by default the paths the runbooks use) is.
DENY_REASONS: dict[str, str] = {
    ".git/**": _GIT,
    "**/.git/**": _GIT,
    # GitHub
    ".github/workflows/**": _CI,
    ".github/actions/**": _CI,
    ".github/CODEOWNERS": _OWNERS,
    ".github/dependabot.yml": _BOTS,
    ".github/dependabot.yaml": _BOTS,
    # GitLab
    ".gitlab-ci.yml": _CI,
    ".gitlab/ci/**": _CI,
    ".gitlab/CODEOWNERS": _OWNERS,
    # Gitea and Forgejo
    ".gitea/workflows/**": _CI,
    ".gitea/CODEOWNERS": _OWNERS,
    ".forgejo/workflows/**": _CI,
    # CODEOWNERS locations GitHub, GitLab and Gitea all read
    "CODEOWNERS": _OWNERS,
    "docs/CODEOWNERS": _OWNERS,
    # CI servers next to any forge (a pipeline file may sit in any directory: its path is configurable)
    ".circleci/**": _CI,
    "**/Jenkinsfile": _CI,
    "**/Jenkinsfile.*": _CI,
    "**/*.Jenkinsfile": _CI,
    "**/*.groovy": _CI,
    "**/azure-pipelines.yml": _CI,
    "**/azure-pipelines.yaml": _CI,
    "**/azure-pipelines/**": _CI,
    "**/bitbucket-pipelines.yml": _CI,
    "**/bitbucket-pipelines.yaml": _CI,
    "**/.gitlab-ci.yml": _CI,
    "**/.gitlab-ci.yaml": _CI,
    "**/.travis.yml": _CI,
    "**/appveyor.yml": _CI,
    "**/cloudbuild.yaml": _CI,
    "**/cloudbuild.yml": _CI,
    "**/buildspec.yml": _CI,
    "**/buildspec.yaml": _CI,
    "**/codefresh.yml": _CI,
    "**/.buildkite/**": _CI,
    "**/tekton/**": _CI,
    ".woodpecker.yml": _CI,
    ".woodpecker.yaml": _CI,
    ".woodpecker/**": _CI,
    ".drone.yml": _CI,
    # What CI jobs execute: build files, task runners, container builds, scripts by name and by place
    "**/Makefile": _BUILD,
    "**/GNUmakefile": _BUILD,
    "**/Makefile.*": _BUILD,
    "**/*.mk": _BUILD,
    "**/*.make": _BUILD,
    "**/Taskfile.yml": _BUILD,
    "**/Taskfile.yaml": _BUILD,
    "**/justfile": _BUILD,
    "**/Rakefile": _BUILD,
    "**/Tiltfile": _BUILD,
    "**/Dockerfile": _BUILD,
    "**/Dockerfile.*": _BUILD,
    "**/*.Dockerfile": _BUILD,
    "**/Containerfile": _BUILD,
    "**/package.json": _BUILD,
    "**/pyproject.toml": _BUILD,
    "**/setup.py": _BUILD,
    "**/setup.cfg": _BUILD,
    "**/tox.ini": _BUILD,
    "**/noxfile.py": _BUILD,
    "**/conftest.py": _BUILD,
    "**/build.gradle": _BUILD,
    "**/build.gradle.kts": _BUILD,
    "**/pom.xml": _BUILD,
    "**/*.sh": _BUILD,
    "**/*.bash": _BUILD,
    "**/*.zsh": _BUILD,
    "**/*.ps1": _BUILD,
    "**/*.psm1": _BUILD,
    "**/*.bat": _BUILD,
    "**/*.cmd": _BUILD,
    "**/*.py": _BUILD,
    "**/*.rb": _BUILD,
    "**/*.pl": _BUILD,
    "**/*.js": _BUILD,
    "**/*.mjs": _BUILD,
    "**/*.cjs": _BUILD,
    "**/*.ts": _BUILD,
    "**/scripts/**": _BUILD,
    "**/script/**": _BUILD,
    "**/hack/**": _BUILD,
    "**/ci/**": _BUILD,
    "**/bin/**": _BUILD,
    # git itself
    ".gitmodules": _SUBMODULES,
    "**/.gitattributes": _ATTRIBUTES,
}

DEFAULT_DENY: tuple[str, ...] = tuple(DENY_REASONS)

#: Why a hidden path is refused even when no deny-list entry names it.
HIDDEN_REASON = ("hidden path: {segment!r} starts with a dot (tools keep their settings in hidden files: "
                 "Argo CD parameter overrides such as .argocd-source-<app>.yaml, CI configuration, git settings)")


#: Records the operator itself adds to every plan: the incident's (actions/patch_plan.py) and the
#: postmortem's (operator/closing.py).
RECORD_PATHS: tuple[str, ...] = ("incidents/*/*.md", "postmortems/*/*.md")

#: Where the default allow-list comes from, in the words a refusal gives.
RUNBOOK_ALLOW = ("the paths the installed Runbooks' patch-plan steps use, with the incidents/ and postmortems/ "
                 "records; RC_GITOPS_ALLOW replaces it")

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def template_glob(template: str) -> str | None:
    """The glob a runbook's change path (a template) renders into: ``{appPath}`` (the Argo CD
    Application's source path) spans directories, every other placeholder stays in one segment.
    None when the template would match anything (only placeholders) or is not a path."""
    if not isinstance(template, str) or not template or "*" in template or "?" in template:
        return None
    pattern = _PLACEHOLDER.sub(lambda m: "**" if m.group(1) == "appPath" else "*", template)
    if re.fullmatch(r"[*/]*(\.[*])?", pattern):
        return None  # "{appPath}", "{a}/{b}", "{x}.*": no literal part, so no bound at all
    return pattern


def runbook_allow(runbooks: Iterable[Mapping[str, object]]) -> tuple[str, ...]:
    """The default allow-list: the records' paths, and every path a patch-plan step of these Runbooks renders."""
    patterns = list(RECORD_PATHS)
    for runbook in runbooks:
        for step in (runbook.get("spec") or {}).get("steps") or []:  # type: ignore[union-attr]
            if step.get("action") != "patch-plan":
                continue
            for change in (step.get("params") or {}).get("changes") or []:
                glob = template_glob(change.get("path")) if isinstance(change, dict) else None
                if glob and glob not in patterns:
                    patterns.append(glob)
    return tuple(patterns)


@dataclass(frozen=True)
class PathPolicy:
    """Allow-list and deny-list (glob patterns; ``**`` spans directories) and size limits.

    The allow-list has no catch-all default: the operator fills it from the installed Runbooks
    (``runbook_allow``) unless the cluster admin sets ``RC_GITOPS_ALLOW``; empty, it allows nothing.
    """

    allow: tuple[str, ...] = RECORD_PATHS
    deny: tuple[str, ...] = DEFAULT_DENY
    max_diff_lines: int = 2000
    max_files: int = 100
    #: Bytes of the changed lines per plan: the line limit alone lets one huge line through.
    max_diff_bytes: int = 64 * 1024
    #: Where the allow-list came from, for the refusal's message.
    allow_from: str = "configured"

    @classmethod
    def from_strings(cls, allow: str | None = None, deny: str | None = None,
                     max_diff_lines: int | None = None, max_diff_bytes: int | None = None,
                     runbooks: Iterable[Mapping[str, object]] = ()) -> PathPolicy:
        """Comma-separated patterns (environment variables, ConfigMap values); deny adds to the defaults.
        Without ``allow``, the allow-list is ``runbook_allow(runbooks)``."""
        base = cls()
        explicit = tuple(p.strip() for p in allow.split(",") if p.strip()) if allow else ()
        return cls(
            allow=explicit or runbook_allow(runbooks),
            deny=base.deny + tuple(p.strip() for p in (deny or "").split(",") if p.strip()),
            max_diff_lines=max_diff_lines or base.max_diff_lines,
            max_diff_bytes=max_diff_bytes or base.max_diff_bytes,
            allow_from="RC_GITOPS_ALLOW" if explicit else RUNBOOK_ALLOW,
        )


class PathRefused(ValueError):
    """A path or a diff the policy refuses."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"refused {path!r}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    """What a path is in the repository: ``file``, ``dir`` or ``symlink`` (with its target)."""

    kind: str
    target: str | None = None


#: prefix path → Entry, or None when nothing exists there.
Lookup = Callable[[str], Entry | None]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_path(path: str, policy: PathPolicy, lookup: Lookup | None = None) -> str:
    """Return ``path`` when the policy allows editing it; raise ``PathRefused`` otherwise.

    Every reason names the rule that refused, in words, so that the
    PatchPlan's condition explains itself without the reader knowing a pattern.
    """
    _check_spelling(path)
    segments = path.split("/")
    if any(seg.lower() == ".git" for seg in segments):
        raise PathRefused(path, "inside the .git directory (git internals are never edited)")
    denied = next((p for p in policy.deny if glob_match(p, path, ignore_case=True)), None)
    if denied:
        raise PathRefused(path, f"matches the deny-list pattern {denied!r} ({deny_reason(denied)})")
    hidden = next((seg for seg in segments if seg.startswith(".")), None)
    if hidden:
        raise PathRefused(path, HIDDEN_REASON.format(segment=hidden))
    if not any(glob_match(p, path) for p in policy.allow):
        raise PathRefused(path, f"not in the allow-list ({policy.allow_from}): it matches none of its patterns "
                                f"({', '.join(policy.allow) or 'none: nothing may be edited'})")
    if lookup is not None:
        _check_symlinks(path, segments, lookup)
    return path


def _check_spelling(path: str) -> None:
    """The path must be written the one way git stores it: relative, normalized, printable."""
    if not path:
        raise PathRefused(path, "empty path: a change must name a file")
    if "\\" in path:
        raise PathRefused(path, "backslash in path (only '/' separates directories)")
    control = _CONTROL.search(path)
    if control:
        raise PathRefused(path, f"control character U+{ord(control.group()):04X} in path "
                                "(invisible in reviews and terminals)")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise PathRefused(path, "absolute path (starts with '/' or a drive letter); "
                                "paths are relative to the repository root")
    segments = path.split("/")
    if ".." in segments:
        raise PathRefused(path, "'..' segment escapes the repository")
    if "" in segments or "." in segments:
        raise PathRefused(path, "empty or '.' segment ('//', './' or a trailing '/'); write the normalized path")


def deny_reason(pattern: str) -> str:
    """Why a deny-list pattern is there: the default entries say it, the others came from configuration."""
    return DENY_REASONS.get(pattern, "an entry added to the deny-list by the operator's configuration")


def _check_symlinks(path: str, segments: list[str], lookup: Lookup) -> None:
    """Walk the path through the tree: no symlink anywhere, directories above, a file (or nothing) at the end."""
    for depth in range(1, len(segments) + 1):
        prefix = "/".join(segments[:depth])
        entry = lookup(prefix)
        if entry is None:
            return  # the rest does not exist yet: it will be created as plain directories/file
        if entry.kind == "symlink":
            target = entry.target or ""
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(prefix), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise PathRefused(path, f"{prefix} is a symlink to {target!r}, which resolves outside the repository")
            # inside the repository, a symlink would still let an allowed name write a denied file
            raise PathRefused(path, f"{prefix} is a symlink to {target!r}; edits never follow symlinks")
        if depth < len(segments) and entry.kind != "dir":
            raise PathRefused(path, f"{prefix} is a file, not a directory")
        if depth == len(segments) and entry.kind == "dir":
            raise PathRefused(path, f"{prefix} is a directory, not a file; changes edit files")


def check_paths(paths: Iterable[str], policy: PathPolicy, lookup: Lookup | None = None) -> list[str]:
    """Every path passes ``check_path``, and the plan stays under the file-count limit."""
    out = [check_path(p, policy, lookup) for p in paths]
    if len(set(out)) > policy.max_files:
        raise PathRefused(out[-1], f"file-count limit: the plan touches {len(set(out))} files; "
                                   f"the limit is {policy.max_files}")
    return out


class DiffSize(int):
    """A file's changed-line count (the int value) that also carries its changed bytes.

    It stays an int so that callers written when only lines were limited keep
    working: ``reconcile.build`` hands ``changed_lines(diff)`` straight to
    ``check_diff``, which limits the bytes too whenever they come along.
    """

    changed_bytes: int

    def __new__(cls, lines: int, changed_bytes: int) -> DiffSize:
        size = super().__new__(cls, lines)
        size.changed_bytes = changed_bytes
        return size

    def __repr__(self) -> str:
        return f"DiffSize(lines={int(self)}, changed_bytes={self.changed_bytes})"


def check_diff(per_file: Mapping[str, int], policy: PathPolicy) -> None:
    """``per_file`` maps a path to its changed-line count; the plan's total must stay under the limits.

    A ``DiffSize`` count also brings the file's changed bytes, and their total
    must stay under ``max_diff_bytes``: a reviewer cannot read a 200 KB line
    any better than 2000 short ones. Plain int counts are checked for lines only.
    """
    _check_total(per_file, policy.max_diff_lines, "lines", "diff line limit")
    sizes = {path: n.changed_bytes for path, n in per_file.items() if isinstance(n, DiffSize)}
    _check_total(sizes, policy.max_diff_bytes, "bytes", "diff byte limit")


def _check_total(per_file: Mapping[str, int], limit: int, unit: str, rule: str) -> None:
    """Refuse when the sum is over ``limit``, naming the file that contributes most."""
    total = sum(per_file.values())
    if total > limit:
        biggest = max(per_file, key=lambda p: per_file[p])
        raise PathRefused(biggest, f"{rule}: the diff changes {total} {unit} ({per_file[biggest]} in this file); "
                                   f"the limit is {limit} {unit}")


def fs_lookup(root: str) -> Lookup:
    """A ``Lookup`` over a checked-out working tree."""

    def lookup(prefix: str) -> Entry | None:
        full = os.path.join(root, prefix)
        if os.path.islink(full):
            return Entry("symlink", os.readlink(full))
        if os.path.isdir(full):
            return Entry("dir")
        if os.path.exists(full):
            return Entry("file")
        return None

    return lookup


def glob_match(pattern: str, path: str, *, ignore_case: bool = False) -> bool:
    """``*`` and ``?`` stay within a segment; ``**`` spans any number of segments (even none)."""
    return _compile(pattern, ignore_case).fullmatch(path) is not None


@lru_cache(maxsize=512)
def _compile(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += r"(?:[^/]+/)*"
            i += 3
        elif pattern.startswith("**", i):
            out += r".*"
            i += 2
        elif pattern[i] == "*":
            out += r"[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += r"[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out, re.IGNORECASE if ignore_case else 0)
