"""What the operator serves: cluster-scoped resources always, watched namespaces as they come and go.

Kopf starts one watch stream per (resource, namespace) pair. Its orchestrator
(``kopf/_core/reactor/orchestration.py``: ``adjust_tasks`` → ``spawn_missing_watchers``) builds them as
``itertools.product(watched_resources, insights.namespaces)`` and only then maps the namespace to ``None``
for a cluster-scoped resource. ``insights.namespaces`` holds the namespaces that exist *and* match the
operator's patterns (``observation.revise_namespaces``). When the operator is restricted to namespaces
(``RC_NAMESPACES``) and none of them exists yet, the product is empty: not even the cluster-scoped Runbooks
get a watch, and the operator serves nothing and says nothing until a tenant namespace appears (kopf 1.45.2).
Once they have a watch, Kopf keeps it when namespaces go (``terminate_redundancies`` keeps every key whose
namespace is ``None``); only the start is affected.

We keep Kopf's orchestration and change one input: cluster-scoped resources are spawned against ``{None}``
(the key Kopf itself gives them), namespaced ones against the namespaces Kopf observed, exactly as before.
The wrapper replaces the module attribute that ``adjust_tasks`` looks up at call time; it is installed once,
before ``kopf.run``, and checks the signature it relies on so that a Kopf upgrade that changes it fails at
start-up (and in ``tests/unit/test_scope.py``) instead of silently serving nothing; so do the two functions of
Kopf's namespace observation that the second gap's fix (below) stands in for and calls.

A second gap, at the start: Kopf's namespace observer lists the namespaces, then its watcher lists them again
before it watches, and it drops that second listing's events (type None,
``observation.process_discovered_namespace_event``). A namespace made between the two listings was never
served: on a brand-new cluster, a session operator of the test command never served the namespace made
right after its start. Those events now revise the namespaces as the first listing does
(``observation.revise_namespaces``, which takes a listing's bodies as type-None events).

The same hook sees every revision of the namespaces Kopf serves: the operator logs each change and
``/healthz`` reports them (``served``: which watched namespaces exist and which do not yet).
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from kopf._core.reactor import observation, orchestration

log = logging.getLogger("reliability_center.operator")

_GLOB = re.compile(r"[*?\[]")


def expected_names(patterns: Iterable[str]) -> list[str]:
    """The exact namespace names the patterns admit (``shop,billing``, ``!*,shop``: shop and billing / shop);
    globs and exclusions name no namespace that should exist."""
    names: list[str] = []
    for pattern in patterns:
        for part in pattern.split(","):
            part = part.strip()
            if part and not part.startswith("!") and not _GLOB.search(part) and part not in names:
                names.append(part)
    return names


@dataclass
class Served:
    """The namespaces Kopf serves right now (as its orchestrator last saw them), for the log and /healthz."""

    patterns: tuple[str, ...] = ()
    namespaces: frozenset[str] = frozenset()
    seen: bool = False  # Kopf has listed the namespaces at least once
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, namespaces: Collection[str | None]) -> tuple[set[str], set[str]] | None:
        """Record a revision; returns (appeared, gone) when it changed anything, None otherwise."""
        now = frozenset(ns for ns in namespaces if ns is not None)
        with self._lock:
            if self.seen and now == self.namespaces:
                return None
            appeared, gone = set(now - self.namespaces), set(self.namespaces - now)
            self.namespaces, self.seen = now, True
        return appeared, gone

    def report(self) -> dict[str, Any]:
        """What /healthz says: cluster-wide, or which watched namespaces exist and which do not yet."""
        if not self.patterns:
            return {"scope": "cluster-wide"}
        with self._lock:
            served = sorted(self.namespaces)
        missing = [name for name in expected_names(self.patterns) if name not in served]
        return {"scope": "namespaces", "patterns": list(self.patterns), "serving": served,
                "notYetExisting": missing}


served = Served()

Spawn = Callable[..., Awaitable[None]]
#: Kopf's own processor of the namespace watch, kept for the unit test that pins the defect it has.
KOPF_NAMESPACE_EVENT = observation.process_discovered_namespace_event
_EXPECTED = {"processor", "settings", "indexed_resources", "watched_resources", "watched_namespaces", "ensemble"}
_PROCESSOR_TAKES = {"raw_event", "namespaces", "insights"}
_REVISE_TAKES = {"raw_events", "namespaces", "insights"}


def install(patterns: Iterable[str], original: Spawn | None = None) -> None:
    """Make Kopf watch cluster-scoped resources whatever namespaces exist (see the module's docstring)."""
    served.patterns = tuple(patterns)
    kopf_spawn: Spawn = original or orchestration.spawn_missing_watchers
    if getattr(kopf_spawn, "_reliability_center", False):
        return  # installed already (run() called again in this process): one wrapper is enough
    _check("orchestration.spawn_missing_watchers", kopf_spawn, _EXPECTED, exactly=True)
    # namespace_event stands in for Kopf's processor and calls revise_namespaces as it does: both by keyword.
    _check("observation.process_discovered_namespace_event", KOPF_NAMESPACE_EVENT, _PROCESSOR_TAKES)
    _check("observation.revise_namespaces", observation.revise_namespaces, _REVISE_TAKES)

    async def spawn_missing_watchers(*, watched_resources: Iterable[Any], watched_namespaces: Iterable[Any],
                                     **kwargs: Any) -> None:
        resources = list(watched_resources)
        namespaces = set(watched_namespaces)
        if served.patterns:
            _say(served.update(namespaces))
        await kopf_spawn(watched_resources=[r for r in resources if r.namespaced],
                         watched_namespaces=namespaces, **kwargs)
        # Kopf's own key for a cluster-scoped resource is (resource, None), whatever the namespaces.
        await kopf_spawn(watched_resources=[r for r in resources if not r.namespaced],
                         watched_namespaces={None}, **kwargs)

    spawn_missing_watchers._reliability_center = True  # type: ignore[attr-defined]
    orchestration.spawn_missing_watchers = spawn_missing_watchers  # type: ignore[assignment]
    observation.process_discovered_namespace_event = namespace_event  # type: ignore[assignment]


def _check(name: str, function: Callable[..., Any], needed: set[str], *, exactly: bool = False) -> None:
    """Stop at start-up when a Kopf function this module relies on no longer takes the keywords it passes."""
    params = set(inspect.signature(function).parameters)
    if (params != needed) if exactly else not (needed <= params):
        raise RuntimeError(f"kopf's {name} changed ({sorted(params)}); "
                           "reliability_center.operator.scope must be revisited for this Kopf version")


async def namespace_event(*, raw_event: Any, namespaces: Collection[Any], insights: Any, **_: Any) -> None:
    """Kopf's processor of the namespace watch, without dropping the watcher's own listing (see above)."""
    async with insights.revised:
        observation.revise_namespaces(raw_events=[raw_event], insights=insights, namespaces=namespaces)
        insights.revised.notify_all()


def _say(change: tuple[set[str], set[str]] | None) -> None:
    if change is None:
        return
    appeared, gone = change
    state = served.report()
    log.info("serving namespaces %s; not existing yet: %s%s%s",
             state["serving"] or "none", state["notYetExisting"] or "none",
             f"; appeared: {sorted(appeared)}" if appeared else "", f"; gone: {sorted(gone)}" if gone else "",
             extra={"serving": state["serving"], "notYetExisting": state["notYetExisting"],
                    "patterns": state["patterns"]})
