"""Helpers for tests against the real local cluster: kubectl, apply, poll-with-deadline."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("RC_CACHE", pathlib.Path.home() / ".cache" / "reliability-center"))
BIN = CACHE / "bin"
KUBECTL = str(BIN / "kubectl")

T = TypeVar("T")

#: Labels of cluster-scoped objects (Runbooks) a test session makes; that session deletes them
#: at its end — only its own, as other sessions may share the cluster.
SESSION = "s" + uuid.uuid4().hex[:9]  # a letter first: kubectl reads "93220127e2" as a number
TEST_LABELS = {"reliability.center/test": SESSION}


def kubectl(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def apply_docs(namespace: str | None, docs: list[dict[str, Any]], server_side: bool = True,
               force: bool = False) -> None:
    """``force``: take the fields whoever applied them last (the seed runbooks: the demo applies them too,
    under kubectl's manager, and the cluster outlives runs of different versions of the repo)."""
    args = ["apply", "-f", "-"]
    if server_side:
        args += ["--server-side", "--field-manager=test-setup"] + (["--force-conflicts"] if force else [])
    if namespace:
        args += ["-n", namespace]
    kubectl(*args, input=yaml.safe_dump_all(docs))


def load_yaml(path: str | pathlib.Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(pathlib.Path(ROOT, path).read_text()) if d]


def get_json(*args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def wait_for(probe: Callable[[], T | None], timeout: float = 30, what: str = "condition", interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy, or fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def repository_secret(name: str, url: str, namespaces: str | None = None, **credentials: str) -> dict[str, Any]:
    """A credentials Secret that opts in to be sent to ``url`` (gitops/trust.py), for PatchPlans."""
    data = {"url": url, **({"namespaces": namespaces} if namespaces else {}), **credentials}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": {"reliability.center/secret-type": "repository"}},
            "stringData": data}


def slow_schedulers(namespace: str, names: list[str], module: str, min_ready: int, history: int = 10) -> None:
    """The sample app plus scheduler Deployments whose rollouts take ``min_ready`` seconds; returns when available."""
    apply_docs(namespace, load_yaml("examples/protected-app/app.yaml"))
    labels = {"reliability.center/role": "scheduler", "reliability.center/module": module}
    apply_docs(namespace, [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": d, "labels": labels},
                            "spec": {"replicas": 1, "minReadySeconds": min_ready, "revisionHistoryLimit": history,
                                     "selector": {"matchLabels": {"app": d}},
                                     "template": {"metadata": {"labels": {"app": d, **labels}},
                                                  "spec": {"containers": [{"name": "c",
                                                                           "image": "registry.invalid/s:1"}]}}}}
                           for d in names])
    for d in names:
        kubectl("rollout", "status", f"deployment/{d}", "-n", namespace, "--timeout=60s")
