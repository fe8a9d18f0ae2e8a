"""A work queue for Incidents, in the manner of client-go's workqueue.

Kopf delivers every watch event to ``on.event`` handlers but never retries them,
and its timers and daemons would put a finalizer on every Incident (a namespace
could not be deleted while the operator is down). So the event handler only adds
the Incident's key here, and this queue gives what a controller needs:

- a key is queued at most once, and processed by one worker at a time; events that
  arrive meanwhile are folded into one more pass with the newest body;
- a pass answers how long until the key wants another look (a rollout settling, a
  window opening, a retry's backoff) and the key is added back then, by a timer on
  the event loop, not by a thread that sleeps;
- a fixed number of workers take passes, so the threads the handler uses for its
  sync reconciles are bounded whatever the number of incidents waiting.

State here is memory only, and that is enough: progress lives in each Incident's
status, and a restarted operator lists every Incident and queues each one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("reliability_center.workqueue")

Key = tuple[str, str]  # (namespace, name)


class Echoes:
    """The resourceVersions our own status patches produced (the last few per object uid).

    Their watch events bring nothing new, so they need no pass: without this, every
    status write would queue one more pass over the object it just wrote.
    """

    def __init__(self, keep: int = 8, objects: int = 10000):
        self._written: dict[str, tuple[str, ...]] = {}
        self._keep, self._objects = keep, objects

    def wrote(self, uid: str, resource_version: str) -> None:
        self._written[uid] = (self._written.get(uid, ()) + (resource_version,))[-self._keep:]
        if len(self._written) > self._objects:
            self._written.pop(next(iter(self._written)))

    def ours(self, uid: str, resource_version: str | None) -> bool:
        return resource_version in self._written.get(uid, ())


Handle = Callable[[Key, "dict[str, Any] | None"], Awaitable["float | None"]]


class Wakes:
    """Which queued keys wait on which objects (``Kind/namespace/name``): a change of the object wakes them.

    A step that waits on a rollout registers here and returns; the operator's watch on
    Deployments and StatefulSets hands their changes to ``woken``. Memory only: a key whose
    interest was lost (a restart) is looked at again by its own deadline timer anyway.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, set[Key]] = {}
        self._lock = threading.Lock()

    def wait_on(self, target: str, key: Key) -> None:
        with self._lock:
            self._waiting.setdefault(target, set()).add(key)

    def woken(self, target: str) -> set[Key]:
        """The keys that waited on ``target`` (each is woken once; it registers again if it still waits)."""
        with self._lock:
            return self._waiting.pop(target, set())


class WorkQueue:
    def __init__(self, handle: Handle, workers: int, gate: asyncio.Event | None = None):
        self._handle = handle
        self._workers = workers
        self._gate = gate
        """Set while this replica may act (the leader); a standby keeps its queue and takes no pass."""
        self._urgent: deque[Key] = deque()
        self._normal: deque[Key] = deque()
        self._ready = asyncio.Event()
        self._dirty: dict[Key, dict[str, Any] | None] = {}
        """Keys waiting for a pass, with the newest body seen (None: read it afresh)."""
        self._active: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key, body: dict[str, Any] | None = None, urgent: bool = False) -> None:
        """Queue a pass over ``key`` (once, however often it is added before it runs).

        ``urgent`` keys (a brand-new incident) go before the others: when hundreds of
        waiting incidents are woken by their rollouts, a new one still gets its first
        Level 1 write at once.
        """
        if key in self._dirty:
            if body is not None:
                self._dirty[key] = body
            return
        self._dirty[key] = body
        if key not in self._active:
            self._push(key, urgent)

    def _push(self, key: Key, urgent: bool = False) -> None:
        (self._urgent if urgent else self._normal).append(key)
        self._ready.set()

    async def _next(self) -> Key:
        while not (self._urgent or self._normal):
            self._ready.clear()
            await self._ready.wait()
        return self._urgent.popleft() if self._urgent else self._normal.popleft()

    def add_after(self, key: Key, delay: float) -> None:
        """Queue a pass after ``delay`` seconds; an earlier timer of the key wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= when:
                return
            existing[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))

    def forget(self, key: Key) -> None:
        """The object is gone: drop its timer and any queued pass."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        self._dirty.pop(key, None)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    @property
    def waiting(self) -> int:
        """Keys with a timer set: incidents waiting for something, holding no thread."""
        return len(self._timers)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"rc-incident-worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def _work(self) -> None:
        while True:
            if self._gate is not None:
                await self._gate.wait()
            key = await self._next()
            if key not in self._dirty:
                continue  # forgotten while queued
            body = self._dirty.pop(key)
            self._active.add(key)
            delay: float | None
            try:
                delay = await self._handle(key, body)
            except Exception:  # the handler reports its own errors; this is the last line
                log.exception("pass over %s/%s failed", *key)
                delay = 5.0
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._push(key)  # changed while it ran: one more pass
            if delay is not None:
                self.add_after(key, delay)
