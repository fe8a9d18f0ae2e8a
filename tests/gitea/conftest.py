"""A real Gitea for the session (hack/gitea.sh), and a fresh GitOps repository per test.

When Gitea cannot start, the tests fail with its log: they are never skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

DEPLOYMENT = """\
# web tier of the shop (team storefront)
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    reliability.center/tenant: acme
spec:
  replicas: 3  # peak: 12
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
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
  dunning: "on"
"""

LAYOUT = {
    "apps/shop/deployment.yaml": DEPLOYMENT,
    "apps/shop/flags.yaml": FLAGS,
    "apps/billing/ledger.yaml": "entries: []\n",
    "README.md": "GitOps repository (test)\n",
}


@dataclass
class Gitea:
    url: str
    user: str
    token: str
    dir: Path

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=f"{self.url}/api/v1", headers={"Authorization": f"token {self.token}"},
                          timeout=30) as client:
            return client.request(method, path, **kw)

    def auth_url(self, repo: str) -> str:
        return self.url.replace("://", f"://{self.user}:{self.token}@") + f"/{self.user}/{repo}.git"

    def scoped_token(self, *scopes: str) -> str:
        """A new access token of the same user, limited to ``scopes`` (e.g. read:repository), from Gitea's CLI."""
        binary = Path(os.environ.get("RC_CACHE", Path.home() / ".cache" / "reliability-center")) / "bin" / "gitea"
        out = subprocess.run([str(binary), "--config", str(self.dir / "custom" / "conf" / "app.ini"),
                              "--work-path", str(self.dir), "admin", "user", "generate-access-token",
                              "--username", self.user, "--token-name", f"scoped-{uuid.uuid4().hex[:8]}",
                              "--scopes", ",".join(scopes), "--raw"],
                             capture_output=True, text=True, timeout=60, check=True)
        # The token is the line that looks like one: Gitea's root-user warning may be printed after it.
        tokens = [line for line in out.stdout.splitlines() if re.fullmatch(r"[0-9a-f]{40}", line)]
        assert tokens, f"generate-access-token printed no token: {out.stdout[-500:]}"
        return tokens[-1]


@dataclass
class Repo:
    gitea: Gitea
    name: str

    @property
    def url(self) -> str:
        return f"{self.gitea.url}/{self.gitea.user}/{self.name}.git"

    @property
    def path(self) -> str:
        return f"/repos/{self.gitea.user}/{self.name}"

    def branches(self) -> set[str]:
        r = self.gitea.api("GET", f"{self.path}/branches", params={"limit": 50})
        r.raise_for_status()
        return {b["name"] for b in r.json()}

    def head(self, branch: str) -> str:
        r = self.gitea.api("GET", f"{self.path}/branches/{branch}")
        r.raise_for_status()
        return r.json()["commit"]["id"]

    def file(self, path: str, ref: str = "main") -> str:
        r = self.gitea.api("GET", f"{self.path}/raw/{path}", params={"ref": ref})
        r.raise_for_status()
        return r.text

    def merge(self, number: int, style: str = "merge") -> dict[str, Any]:
        """What the reviewer does: merge through the Gitea API; returns the merged pull request."""
        responses: list[httpx.Response] = []

        def attempt() -> bool:
            # Gitea answers 405 "try again later" while it re-checks a pull request whose head moved,
            # and 409 when another merge moved the base at the same moment: a reviewer clicks again.
            r = self.gitea.api("POST", f"{self.path}/pulls/{number}/merge", json={"Do": style})
            responses.append(r)
            return not (r.status_code == 405 and "try again later" in r.text
                        or r.status_code == 409)

        wait_for(attempt, 30, f"pull request #{number} to become mergeable")
        assert responses[-1].status_code == 200, responses[-1].text
        return self.pull(number)

    def close(self, number: int) -> None:
        r = self.gitea.api("PATCH", f"{self.path}/pulls/{number}", json={"state": "closed"})
        assert r.status_code == 201, r.text

    def pull(self, number: int) -> dict[str, Any]:
        r = self.gitea.api("GET", f"{self.path}/pulls/{number}")
        r.raise_for_status()
        return r.json()

    def pulls(self) -> list[dict[str, Any]]:
        r = self.gitea.api("GET", f"{self.path}/pulls", params={"state": "all", "limit": 50})
        r.raise_for_status()
        return r.json()

    def push(self, files: dict[str, str], branch: str = "main", message: str = "human change",
             start: str | None = None) -> str:
        """A human pushes a commit to ``branch`` (a new branch off ``start`` when given)."""
        with tempfile.TemporaryDirectory() as tmp:
            _git(tmp, "clone", "-q", "--branch", start or branch, self.gitea.auth_url(self.name), ".")
            if start:
                _git(tmp, "checkout", "-q", "-b", branch)
            for path, content in files.items():
                Path(tmp, path).parent.mkdir(parents=True, exist_ok=True)
                Path(tmp, path).write_text(content)
            _git(tmp, "add", ".")
            _git(tmp, "commit", "-q", "-m", message)
            _git(tmp, "push", "-q", "origin", branch)
            return _git(tmp, "rev-parse", "HEAD").strip()


def _git(cwd: str, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "GIT_AUTHOR_NAME": "human", "GIT_AUTHOR_EMAIL": "human@example.invalid",
           "GIT_COMMITTER_NAME": "human", "GIT_COMMITTER_EMAIL": "human@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True,
                          timeout=60).stdout


def start_gitea(directory: Path) -> Gitea:
    result = subprocess.run(["bash", str(ROOT / "hack" / "gitea.sh"), "start", str(directory)],
                            capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        pytest.fail(f"Gitea did not start (hack/gitea.sh):\n{result.stderr[-4000:]}", pytrace=False)
    env = dict(line.split("=", 1) for line in (directory / "env").read_text().split())
    return Gitea(env["GITEA_URL"], env["GITEA_USER"], env["GITEA_TOKEN"], directory)


def stop_gitea(directory: Path) -> None:
    subprocess.run(["bash", str(ROOT / "hack" / "gitea.sh"), "stop", str(directory)], capture_output=True,
                   timeout=60, check=False)


#: The session's Gitea is the fixture ``gitea`` of tests/conftest.py, for tests/gitea and tests/e2e alike. This name
#: stays importable for modules that still import it from here; it is no fixture: a fixture imported into a test
#: module is a definition of that module's, and each such module started a Gitea of its own (six per worker).
gitea = None


def create_repo(gitea: Gitea, files: dict[str, str] | None = None) -> Repo:
    name = f"gitops-{uuid.uuid4().hex[:8]}"
    r = gitea.api("POST", "/user/repos", json={"name": name, "default_branch": "main", "private": True})
    assert r.status_code == 201, r.text
    with tempfile.TemporaryDirectory() as tmp:
        _git(tmp, "init", "-q", "-b", "main")
        for path, content in (files or LAYOUT).items():
            Path(tmp, path).parent.mkdir(parents=True, exist_ok=True)
            Path(tmp, path).write_text(content)
        _git(tmp, "add", ".")
        _git(tmp, "commit", "-q", "-m", "GitOps layout")
        _git(tmp, "push", "-q", gitea.auth_url(name), "main")
    repo = Repo(gitea, name)
    # Gitea indexes a new repository's first push asynchronously: poll until main is served.
    wait_for(lambda: gitea.api("GET", f"{repo.path}/branches/main").status_code == 200, 30, f"{name}@main")
    return repo


def wait_for(probe: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


@pytest.fixture
def repo(gitea: Gitea) -> Repo:
    return create_repo(gitea)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "gitops-cache"
