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


class WorkQueue:
    def __init__(self, handle: Handle, workers: int):
        self._handle = handle
        self._workers = workers
        self._pending: asyncio.Queue[Key] = asyncio.Queue()
        self._dirty: dict[Key, dict[str, Any] | None] = {}
        """Keys waiting for a pass, with the newest body seen (None: read it afresh)."""
        self._active: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key, body: dict[str, Any] | None = None) -> None:
        """Queue a pass over ``key`` (once, however often it is added before it runs)."""
        if key in self._dirty:
            if body is not None:
                self._dirty[key] = body
            return
        self._dirty[key] = body
        if key not in self._active:
            self._pending.put_nowait(key)

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
            key = await self._pending.get()
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
                    self._pending.put_nowait(key)  # changed while it ran: one more pass
            if delay is not None:
                self.add_after(key, delay)
