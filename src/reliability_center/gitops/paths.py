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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

#: Never edited by a PatchPlan: git internals, CI definitions (code execution
#: on the forge), and git attributes/modules (filters and fetches of other repos).
DEFAULT_DENY: tuple[str, ...] = (
    ".git/**",
    "**/.git/**",
    ".github/workflows/**",
    ".gitlab-ci.yml",
    ".gitea/workflows/**",
    ".gitmodules",
    "**/.gitattributes",
)


@dataclass(frozen=True)
class PathPolicy:
    """Allow-list and deny-list (glob patterns; ``**`` spans directories) and size limits."""

    allow: tuple[str, ...] = ("**",)
    deny: tuple[str, ...] = DEFAULT_DENY
    max_diff_lines: int = 2000
    max_files: int = 100

    @classmethod
    def from_strings(cls, allow: str | None = None, deny: str | None = None,
                     max_diff_lines: int | None = None) -> PathPolicy:
        """Comma-separated patterns (environment variables, ConfigMap values); deny adds to the defaults."""
        base = cls()
        return cls(
            allow=tuple(p.strip() for p in allow.split(",") if p.strip()) if allow else base.allow,
            deny=base.deny + tuple(p.strip() for p in (deny or "").split(",") if p.strip()),
            max_diff_lines=max_diff_lines or base.max_diff_lines,
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
    """Return ``path`` when the policy allows editing it; raise ``PathRefused`` otherwise."""
    if not path:
        raise PathRefused(path, "empty path")
    if "\\" in path:
        raise PathRefused(path, "backslash in path (only '/' separates directories)")
    if _CONTROL.search(path):
        raise PathRefused(path, "control character in path")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise PathRefused(path, "absolute path; paths are relative to the repository root")
    segments = path.split("/")
    if ".." in segments:
        raise PathRefused(path, "'..' segment escapes the repository")
    if "" in segments or "." in segments:
        raise PathRefused(path, "empty or '.' segment; write the normalized path")
    if any(seg.lower() == ".git" for seg in segments):
        raise PathRefused(path, "inside the .git directory")
    denied = next((p for p in policy.deny if glob_match(p, path)), None)
    if denied:
        raise PathRefused(path, f"matches the deny-list pattern {denied!r}")
    if not any(glob_match(p, path) for p in policy.allow):
        raise PathRefused(path, f"not in the allow-list ({', '.join(policy.allow)})")
    if lookup is not None:
        _check_symlinks(path, segments, lookup)
    return path


def _check_symlinks(path: str, segments: list[str], lookup: Lookup) -> None:
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
            raise PathRefused(path, "is a directory, not a file")


def check_paths(paths: Iterable[str], policy: PathPolicy, lookup: Lookup | None = None) -> list[str]:
    out = [check_path(p, policy, lookup) for p in paths]
    if len(set(out)) > policy.max_files:
        raise PathRefused(out[-1], f"the plan touches {len(set(out))} files; the limit is {policy.max_files}")
    return out


def check_diff(per_file: dict[str, int], policy: PathPolicy) -> None:
    """``per_file`` maps a path to its changed-line count; the plan's total must stay under the limit."""
    total = sum(per_file.values())
    if total > policy.max_diff_lines:
        biggest = max(per_file, key=lambda p: per_file[p])
        raise PathRefused(biggest, f"the diff changes {total} lines ({per_file[biggest]} in this file); "
                                   f"the limit is {policy.max_diff_lines}")


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


def glob_match(pattern: str, path: str) -> bool:
    """``*`` and ``?`` stay within a segment; ``**`` spans any number of segments (even none)."""
    return _compile(pattern).fullmatch(path) is not None


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
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
    return re.compile(out)
