"""A local bare repository with a small GitOps layout: real git, no network."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

DEPLOYMENT = """\
# web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3  # peak: 12
  template:
    spec:
      containers:
        - name: web
          image: nginx:1.25
"""

FLAGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: flags
  namespace: shop
data:
  invoicing: "on"   # billing module
"""


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd),
           "GIT_AUTHOR_NAME": "human", "GIT_AUTHOR_EMAIL": "human@example.invalid",
           "GIT_COMMITTER_NAME": "human", "GIT_COMMITTER_EMAIL": "human@example.invalid", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@dataclass
class Origin:
    """The "remote": a bare repository, plus a clone a test uses to act as a human."""

    bare: Path
    clone: Path

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, files: dict[str, str | bytes], message: str = "human change", branch: str = "main",
               start: str | None = None) -> str:
        git(self.clone, "fetch", "-q", "origin")
        git(self.clone, "checkout", "-q", "-B", branch, f"origin/{start or branch}")
        for path, content in files.items():
            target = self.clone / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            git(self.clone, "add", path)
        git(self.clone, "commit", "-q", "-m", message)
        git(self.clone, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.clone, "rev-parse", "HEAD").strip()

    def head(self, branch: str) -> str | None:
        return self.ref(f"refs/heads/{branch}")

    def ref(self, name: str) -> str | None:
        """Where any ref of the remote points (a branch, a pull request record, a comment chain)."""
        out = git(self.bare, "for-each-ref", "--format=%(objectname)", name).strip()
        return out or None

    def delete_branch(self, branch: str) -> None:
        git(self.bare, "update-ref", "-d", f"refs/heads/{branch}")

    def branches(self) -> list[str]:
        return git(self.bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()

    def show(self, rev: str, path: str) -> str:
        return git(self.bare, "show", f"{rev}:{path}")

    def merge(self, branch: str, *, squash: bool = False, ff: bool = False) -> str:
        """A human merges ``branch`` into main: --no-ff by default, or squash, or fast-forward."""
        git(self.clone, "fetch", "-q", "origin")
        git(self.clone, "checkout", "-q", "-B", "main", "origin/main")
        if squash:
            git(self.clone, "merge", "-q", "--squash", f"origin/{branch}")
            git(self.clone, "commit", "-q", "-m", f"squash {branch}")
        elif ff:
            git(self.clone, "merge", "-q", "--ff-only", f"origin/{branch}")
        else:
            git(self.clone, "merge", "-q", "--no-ff", "-m", f"Merge {branch}", f"origin/{branch}")
        git(self.clone, "push", "-q", "origin", "HEAD:refs/heads/main")
        return git(self.clone, "rev-parse", "HEAD").strip()


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    bare = tmp_path / "origin.git"
    clone = tmp_path / "human"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    git(clone, "checkout", "-q", "-b", "main")
    for path, content in {"apps/web/deployment.yaml": DEPLOYMENT, "apps/flags/configmap.yaml": FLAGS}.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(content)
    (clone / "apps" / "link.yaml").symlink_to("/etc/passwd")
    git(clone, "add", ".")
    git(clone, "commit", "-q", "-m", "initial layout")
    git(clone, "push", "-q", "origin", "main")
    return Origin(bare, clone)
