"""Incidents as the person may read them: one list and watch cluster-wide when the apiserver allows it,
else one per namespace, each namespace the apiserver refuses reported with its own words.

The watches run on threads (the gateway's client is synchronous) and hand their events to the event loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reliability_center.gateway import Kube
from reliability_center.gateway.kube import raw_refusal, watch_events

#: A watch request ends after this long and is resumed: a thread whose page was closed stops within it.
WATCH_SECONDS = 20


class Refused(Exception):
    """The apiserver answered a list or a watch with an error; its message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def incidents_path(namespace: str | None) -> str:
    return Kube.path("Incident", namespace)


def _get(kube: Kube, path: str, query: dict[str, Any], timeout: float | None = 30) -> Any:
    response = kube.read_raw(path, query, "application/json", timeout)
    if not 200 <= response.status <= 299:
        message = raw_refusal(response)
        raise Refused(response.status, message)
    return response


def _only(name: str | None) -> dict[str, str]:
    return {"fieldSelector": f"metadata.name={name}"} if name else {}


def list_incidents(kube: Kube, namespace: str | None, name: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The incidents (or the one named) and the list's resourceVersion (where a watch resumes)."""
    listed = json.loads(_get(kube, incidents_path(namespace), _only(name)).read())
    return listed.get("items") or [], listed["metadata"]["resourceVersion"]


def list_namespaces(kube: Kube) -> list[str]:
    listed = json.loads(_get(kube, Kube.path("Namespace", None), {}).read())
    return sorted(item["metadata"]["name"] for item in listed.get("items") or [])



@dataclass
class Scope:
    """Where to read: ``None`` is every namespace (the apiserver allowed the cluster-wide list), else these;
    ``refused`` holds each namespace the apiserver refused, with its message."""

    namespaces: list[str] | None
    refused: dict[str, str] = field(default_factory=dict)


def scope(kube: Kube, wanted: list[str], fallback: list[str]) -> Scope:
    """``wanted``: the namespaces the URL asks for (none: all the person may list). Cluster-wide if the
    apiserver allows it; else the namespaces the person may list (if they may list namespaces) and
    ``fallback`` (the console's --namespace), each tried on its own."""
    if wanted:
        return Scope(sorted(set(wanted)))
    try:
        _get(kube, incidents_path(None), {"limit": "1"}).read()
        return Scope(None)
    except Refused as exc:
        if exc.status != 403:
            raise
    try:
        candidates = list_namespaces(kube)
    except Refused:
        candidates = []
    return Scope(sorted(set(candidates) | set(fallback)))


class Watch(threading.Thread):
    """List then watch one namespace (or all; or one incident), forever, calling ``emit`` with ("reset", items),
    ("event", type, object) or ("refused", message); resumes where it stopped, relists when told to (410)."""

    def __init__(self, kube: Kube, namespace: str | None, emit: Callable[..., None], name: str | None = None):
        super().__init__(daemon=True, name=f"console-watch-{namespace or 'all'}")
        self.kube, self.namespace, self.emit, self.only = kube, namespace, emit, name  # name: that incident only
        self.stopped = threading.Event()
        self._response: Any = None

    def stop(self) -> None:
        self.stopped.set()
        response = self._response
        if response is not None:
            response.response.shutdown()  # unblocks the read the thread waits in

    def run(self) -> None:
        resource_version = None
        try:
            while not self.stopped.is_set():
                if resource_version is None:
                    items, resource_version = list_incidents(self.kube, self.namespace, self.only)
                    self.emit("reset", self.namespace, items)
                self._response = _get(self.kube, incidents_path(self.namespace),
                                      {"watch": "true", "resourceVersion": resource_version,
                                       "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS),
                                       **_only(self.only)},
                                      timeout=None)
                for event in watch_events(self._response):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        resource_version = None  # expired (410): list again
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event.get("type") != "BOOKMARK":
                        self.emit("event", self.namespace, event["type"], obj)
        except Refused as exc:
            self.emit("refused", self.namespace, str(exc))
        except Exception as exc:  # noqa: BLE001 - a page left open must say its feed stopped, not hang
            if not self.stopped.is_set():
                self.emit("refused", self.namespace, f"the watch stopped: {exc}")
