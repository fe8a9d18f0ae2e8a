"""Servers the tests run as local processes (Prometheus, Alertmanager, Argo CD): start each with its log
in the harness's directory, wait for it with a deadline that fails at once when it exits, stop them all."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.cluster import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(url: str, timeout: float = 5) -> dict[str, Any] | None:
    """An operator's /healthz answer (its RC_HEALTH_URL), or None while it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except OSError:
        return None


class LocalProcesses:
    """Named child processes, each logging to ``<dir>/<name>.log``, and an HTTP client to probe them."""

    def __init__(self, directory: Path, startup_timeout: float):
        self.dir = directory
        self.startup_timeout = startup_timeout
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._http = httpx.Client(timeout=10)

    def log(self, name: str, lines: int = 40) -> str:
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.dir / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self._procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env=env,
                                                 start_new_session=True)

    def _wait(self, what: str, probe: Callable[[], Any], name: str) -> None:
        def alive_probe() -> Any:
            if self._procs[name].poll() is not None:  # not worth waiting for: fail now, with why
                raise RuntimeError(f"{name} exited ({self._procs[name].returncode}):\n{self.log(name)}")
            return probe()

        try:
            wait_for(alive_probe, timeout=self.startup_timeout, what=what, interval=0.1)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{name} log:\n{self.log(name)}") from None

    def _ok(self, url: str) -> bool:
        try:
            return self._http.get(url).status_code == 200
        except httpx.TransportError:
            return False

    def _stop_processes(self) -> None:
        """Terminate every process (killed after 15 s), and close the HTTP client."""
        for proc in self._procs.values():
            proc.terminate()
        for proc in self._procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        self._http.close()
