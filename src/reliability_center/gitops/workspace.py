"""A cached bare clone of one GitOps repository, driven by the real ``git`` binary.

Why plain ``git`` subprocesses rather than GitPython ``Repo`` objects: each
call starts, finishes and is reaped before the function returns, so a
long-running operator cannot accumulate ``git cat-file`` helpers or file
descriptors (the leak test in ``tests/gitea`` checks this over hundreds of plans).

Commits are built with plumbing (``hash-object``, a temporary index,
``commit-tree``) straight from the base commit: no checkout, so plans that
share the cache never trample each other's working tree. Only ``revert``
needs a working tree, and it gets a throwaway ``git worktree``.

Credentials reach git through ``GIT_CONFIG_*`` environment variables (an
``http.<origin>.extraHeader``): never on a command line, in the cached repo's
config, or in a message. ``sanitize`` strips them from anything that leaves.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from reliability_center.gitops.paths import Entry, Lookup

GIT_TIMEOUT = 120.0
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Credentials:
    """From the Secret named in ``spec.repository.credentialsSecret``: username/password or token."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.token) if s]

    def basic(self, token_user: str) -> str | None:
        """The HTTP Basic value git sends: forges take a token as the password of any user."""
        secret = self.token or self.password
        if not secret:
            return None
        user = self.username or token_user
        return base64.b64encode(f"{user}:{secret}".encode()).decode()


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def sanitize(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Strip ``user:password@`` from URLs and redact known secret values (and their Basic encodings)."""
    out = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return re.sub(r"(?i)(authorization:\s*(basic|bearer|token)\s+)\S+", r"\1***", out)


def strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class GitError(RuntimeError):
    """A git command failed. The message is sanitized; ``rejected`` marks a refused push.

    ``reason`` names a failure no retry can fix (GitAuthFailed, GitForbidden,
    RepositoryNotFound): the plan ends Failed with it, instead of retrying forever.
    """

    def __init__(self, message: str, *, returncode: int | None = None, rejected: bool = False,
                 conflict: bool = False, retryable: bool = True, reason: str | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.rejected = rejected
        self.conflict = conflict
        self.retryable = retryable
        self.reason = reason


#: What git prints when the server refuses, and what it means. With GIT_TERMINAL_PROMPT=0 a
#: 401 shows as "terminal prompts disabled": git wanted to ask for another password.
_REFUSALS = (
    (re.compile(r"terminal prompts disabled|could not read (Username|Password)|Authentication failed|"
                r"returned error: 401|HTTP 401|invalid credentials", re.I),
     "GitAuthFailed", "the repository refused the credentials (HTTP 401): the Secret's token or password "
                      "is missing, wrong or expired"),
    (re.compile(r"returned error: 403|HTTP 403|permission denied|not allowed to push|"
                r"user permission denied|write access to repository not granted", re.I),
     "GitForbidden", "the credentials may not do this on the repository (HTTP 403): a read-only token, or "
                     "a user without write access"),
    (re.compile(r"returned error: 404|HTTP 404|repository '.*' not found|repository not found|"
                r"does not appear to be a git repository", re.I),
     "RepositoryNotFound", "the repository does not exist, or the credentials cannot see it (HTTP 404)"),
)


def refusal(stderr: str) -> tuple[str, str] | None:
    """(reason, explanation) when git's error is the server refusing for good, else None."""
    for pattern, reason, explanation in _REFUSALS:
        if pattern.search(stderr):
            return reason, explanation
    return None


@dataclass(frozen=True)
class Identity:
    name: str = "reliability-center"
    email: str = "reliability-center@users.noreply.local"


class Workspace:
    """One repository's bare clone under ``cache_dir``; safe to share between threads and processes."""

    def __init__(self, url: str, cache_dir: str | os.PathLike[str], credentials: Credentials | None = None,
                 *, token_user: str = "git", identity: Identity = Identity(), timeout: float = GIT_TIMEOUT) -> None:
        if urlsplit(url).password:
            raise GitError("the repository URL carries a password; put credentials in credentialsSecret instead",
                           retryable=False)
        self.url = strip_userinfo(url)
        self.display_url = sanitize(url)
        self.credentials = credentials or Credentials()
        self.token_user = token_user
        self.identity = identity
        self.timeout = timeout
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"{key}.git"
        self._lock_path = Path(cache_dir) / f"{key}.lock"

    # ------------------------------------------------------------------ process plumbing

    def _env(self, date: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update({
            "GIT_TERMINAL_PROMPT": "0",          # fail instead of waiting for a password
            "GIT_CONFIG_NOSYSTEM": "1",          # hermetic: no insteadOf or helpers from the host
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": self.identity.name, "GIT_AUTHOR_EMAIL": self.identity.email,
            "GIT_COMMITTER_NAME": self.identity.name, "GIT_COMMITTER_EMAIL": self.identity.email,
            "LC_ALL": "C",
        })
        if date:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
        config = [("credential.helper", ""), ("gc.auto", "0")]
        basic = self.credentials.basic(self.token_user)
        parts = urlsplit(self.url)
        if basic and parts.scheme in ("http", "https"):
            config.append((f"http.{parts.scheme}://{parts.netloc}/.extraHeader", f"Authorization: Basic {basic}"))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    def run(self, *args: str, input: str | bytes | None = None, cwd: str | os.PathLike[str] | None = None,
            date: str | None = None, index: str | None = None) -> subprocess.CompletedProcess[bytes]:
        """One git command, started and reaped here; inside the cache repo unless ``cwd`` is a worktree."""
        env = self._env(date)
        if index:
            env["GIT_INDEX_FILE"] = index
        cmd = ["git", *args] if cwd else ["git", f"--git-dir={self.path}", *args]
        try:
            return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=self.timeout,
                                  input=input.encode() if isinstance(input, str) else input, check=False)
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} timed out after {self.timeout:.0f}s on {self.display_url}") from None

    def git(self, *args: str, input: str | bytes | None = None, cwd: str | os.PathLike[str] | None = None,
            date: str | None = None, check: bool = True, index: str | None = None) -> str:
        proc = self.run(*args, input=input, cwd=cwd, date=date, index=index)
        if check and proc.returncode != 0:
            raise self._error(args[0], proc)
        return proc.stdout.decode(errors="replace")

    def _error(self, what: str, proc: subprocess.CompletedProcess[bytes], **kw: bool) -> GitError:
        stderr = sanitize(proc.stderr.decode(errors="replace").strip(), self.credentials.secrets())
        stderr = stderr.replace(self.url, self.display_url)
        kw.setdefault("rejected", "rejected" in stderr or "stale info" in stderr)
        kw.setdefault("conflict", "conflict" in stderr.lower())
        refused = refusal(stderr)
        if refused:
            reason, explanation = refused
            return GitError(f"git {what} on {self.display_url}: {explanation} (git said: {stderr[-500:]})",
                            returncode=proc.returncode, retryable=False, reason=reason,
                            **{k: v for k, v in kw.items() if k != "retryable"})
        return GitError(f"git {what} failed ({proc.returncode}): {stderr[-2000:]}", returncode=proc.returncode, **kw)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize ref updates in the shared cache (threads and processes alike)."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ remote

    def ensure(self) -> None:
        """Create the bare cache repository on first use (no credential is ever written into it)."""
        if (self.path / "HEAD").exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if (self.path / "HEAD").exists():
                return
            tmp = Path(tempfile.mkdtemp(prefix=self.path.name + ".", dir=self.path.parent))
            try:
                proc = self.run("init", "--bare", "-q", str(tmp), cwd=self.path.parent)
                if proc.returncode != 0:
                    raise self._error("init", proc)
                os.replace(tmp, self.path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def remote_heads(self, *branches: str) -> dict[str, str | None]:
        """Branch → head sha on the remote (None when absent), without fetching any object."""
        refs = [f"refs/heads/{b}" for b in branches]
        out = self.git("ls-remote", self.url, *refs) if refs else ""
        found = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            found[ref] = sha
        return {b: found.get(f"refs/heads/{b}") for b in branches}

    def remote_refs(self, pattern: str) -> dict[str, str]:
        out = self.git("ls-remote", self.url, pattern)
        return {ref: sha for sha, _, ref in (line.partition("\t") for line in out.splitlines())}

    def fetch(self, *branches: str, refs: tuple[str, ...] = ()) -> dict[str, str | None]:
        """Fetch branches into ``refs/remotes/origin/*``; returns their heads (None when absent)."""
        self.ensure()
        heads = self.remote_heads(*branches)
        specs = [f"+refs/heads/{b}:refs/remotes/origin/{b}" for b, sha in heads.items() if sha]
        specs += [f"+{r}:{r}" for r in refs]
        if specs:
            with self._locked():
                self.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.url, *specs)
        return heads

    def fetch_sha(self, sha: str) -> None:
        """Make sure a commit is present locally: by id first, else every branch (pruning the gone ones)."""
        self.ensure()
        if self.has(sha):
            return
        with self._locked():
            if self.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.url, sha).returncode != 0:
                self.git("fetch", "--quiet", "--no-tags", "--prune", "--no-write-fetch-head", self.url,
                         "+refs/heads/*:refs/remotes/origin/*")

    def delete_branch(self, branch: str, *, expect: str | None) -> bool:
        """Delete our branch on the remote, only if it is still at ``expect``; and our copy of it.

        Returns False when someone moved it since (it is theirs then, and stays).
        """
        ref = f"refs/heads/{branch}"
        if expect is not None:
            proc = self.run("push", "--quiet", "--porcelain", f"--force-with-lease={ref}:{expect}", self.url, f":{ref}")
            if proc.returncode != 0:
                error = self._error("push --delete", proc)
                if error.rejected:
                    return False
                raise error
        with self._locked():
            self.run("update-ref", "-d", f"refs/remotes/origin/{branch}")
        return True

    def maintain(self) -> None:
        """Keep the cache bounded: drop unreachable objects once git's own thresholds say so."""
        self.ensure()
        with self._locked():
            self.run("worktree", "prune")
            self.run("-c", "gc.auto=6700", "-c", "gc.autoDetach=false", "-c", "gc.pruneExpire=now", "gc", "--auto",
                     "--quiet")

    def has(self, sha: str) -> bool:
        return self.run("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0

    def push(self, sha: str, branch: str, *, expect: str | None) -> None:
        """Point ``branch`` at ``sha`` only if it is still at ``expect`` (None: must not exist).

        A lease on every push: git never overwrites work someone else pushed.
        """
        ref = f"refs/heads/{branch}"
        self.git("push", "--quiet", "--porcelain", f"--force-with-lease={ref}:{expect or ''}", self.url, f"{sha}:{ref}")

    def push_ref(self, sha: str, ref: str) -> None:
        self.git("push", "--quiet", "--force", self.url, f"{sha}:{ref}")

    # ------------------------------------------------------------------ reading

    def read_file(self, rev: str, path: str) -> str | None:
        out = self.run("cat-file", "blob", f"{rev}:{path}")
        return out.stdout.decode() if out.returncode == 0 else None

    def tree_lookup(self, rev: str) -> Lookup:
        """A ``paths.Lookup`` over a commit's tree: what each path prefix is (symlinks included)."""

        def lookup(prefix: str) -> Entry | None:
            out = self.git("ls-tree", "-z", rev, "--", prefix)
            for record in out.split("\0"):
                if not record:
                    continue
                meta, _, name = record.partition("\t")
                if name != prefix:
                    continue
                mode, kind, obj = meta.split()
                if mode == "120000":
                    return Entry("symlink", self.git("cat-file", "blob", obj))
                return Entry("dir" if kind == "tree" else "file")
            return None

        return lookup

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.run("merge-base", "--is-ancestor", ancestor, descendant).returncode == 0

    def parents(self, sha: str) -> list[str]:
        return self.git("rev-list", "--parents", "-n", "1", sha).split()[1:]

    def commit_date(self, sha: str) -> str:
        return self.git("show", "-s", "--format=%cI", sha).strip()

    def message(self, sha: str) -> str:
        return self.git("show", "-s", "--format=%B", sha)

    def changed_files(self, old: str, new: str, paths: list[str]) -> list[str]:
        out = self.git("diff", "--name-only", old, new, "--", *paths)
        return [line for line in out.splitlines() if line]

    def commits_between(self, base: str, head: str) -> list[str]:
        return self.git("rev-list", f"{base}..{head}").split()

    # ------------------------------------------------------------------ writing

    def commit_files(self, base: str, files: dict[str, str], message: str, *, date: str) -> str:
        """A commit on top of ``base`` with ``files`` replaced; nothing is checked out.

        ``date`` is fixed by the caller so that the same plan on the same base
        yields the same commit sha: a retry after a crash pushes nothing new.
        """
        fd, index = tempfile.mkstemp(prefix="index.", dir=self.path)
        os.close(fd)
        os.unlink(index)  # git wants to create the index itself
        try:
            self.git("read-tree", base, index=index)
            entries = []
            for path, content in files.items():
                blob = self.git("hash-object", "-w", "--stdin", input=content).strip()
                mode = "100644"
                listing = self.git("ls-tree", base, "--", path).split()
                if listing and listing[0] in ("100644", "100755"):
                    mode = listing[0]
                entries.append(f"{mode} {blob}\t{path}")
            self.git("update-index", "--index-info", input="\n".join(entries) + "\n", index=index)
            tree = self.git("write-tree", index=index).strip()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(index)
        return self.git("commit-tree", tree, "-p", base, "-F", "-", input=message, date=date).strip()

    def commit_empty(self, parent: str | None, message: str, *, date: str) -> str:
        args = ["commit-tree", _EMPTY_TREE] + (["-p", parent] if parent else [])
        self.git("hash-object", "-t", "tree", "-w", "--stdin", input="")
        return self.git(*args, "-F", "-", input=message, date=date).strip()

    @contextlib.contextmanager
    def worktree(self, rev: str) -> Iterator[Path]:
        """A throwaway checkout of ``rev``, removed (and pruned) on the way out."""
        self.ensure()
        parent = self.path.parent / "worktrees"
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="wt.", dir=parent))
        with self._locked():
            self.git("worktree", "add", "--quiet", "--detach", str(tmp), rev)
        try:
            yield tmp
        finally:
            with self._locked():
                self.git("worktree", "remove", "--force", str(tmp), check=False)
                self.git("worktree", "prune", check=False)
            shutil.rmtree(tmp, ignore_errors=True)

    def revert(self, onto: str, commit: str, message: str, *, date: str, mainline: list[str]) -> str:
        """A commit on top of ``onto`` that reverts ``commit`` (``mainline``: ``-m 1`` for a merge commit).

        Raises GitError(conflict=True) when the revert does not apply cleanly.
        """
        with self.worktree(onto) as tree:
            proc = self.run("revert", "--no-commit", *mainline, commit, cwd=tree, date=date)
            if proc.returncode != 0:
                self.run("revert", "--abort", cwd=tree)
                raise self._error(f"revert of {commit[:12]} onto {onto[:12]} (conflict)", proc, conflict=True,
                                  retryable=False)
            status = self.git("status", "--porcelain", cwd=tree)
            if not status.strip():
                raise GitError(f"reverting {commit[:12]} on {onto[:12]} changes nothing (already reverted?)",
                               conflict=True, retryable=False)
            self.git("commit", "--quiet", "--no-verify", "-F", "-", cwd=tree, input=message, date=date)
            return self.git("rev-parse", "HEAD", cwd=tree).strip()

    def merge(self, base_branch: str, head: str, message: str) -> str:
        """A ``--no-ff`` merge of ``head`` into ``base_branch``, pushed with a lease (the plain-git forge's merge)."""
        heads = self.fetch(base_branch)
        base = heads[base_branch]
        if base is None:
            raise GitError(f"base branch {base_branch!r} does not exist on {self.display_url}", retryable=False)
        self.fetch_sha(head)
        with self.worktree(base) as tree:
            proc = self.run("merge", "--no-ff", "--no-edit", "-m", message, head, cwd=tree)
            if proc.returncode != 0:
                raise self._error(f"merge of {head[:12]} into {base_branch}", proc, conflict=True, retryable=False)
            merged = self.git("rev-parse", "HEAD", cwd=tree).strip()
        self.push(merged, base_branch, expect=base)
        return merged


def is_sha(value: str | None) -> bool:
    return bool(value and _SHA.match(value))
