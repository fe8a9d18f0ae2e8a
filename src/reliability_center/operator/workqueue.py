"""A work queue for Incidents, in the manner of client-go's workqueue.

Kopf delivers every watch event to ``on.event`` handlers but never retries them,
and its timers and daemons would put a finalizer on every Incident (a namespace
could not be deleted while the operator is down). So the event handler only adds
the Incident's key here, and this queue gives what a controller needs:

- a key is queued at most once, and processed by one worker at a time; events that
  arrive meanwhile are folded into one more pass, which reads the object afresh (a
  body the watch brought during a pass may predate that pass's own writes). As in
  client-go's workqueue ("Stingy"), a key waiting for a pass is *dirty*, a key
  being passed is *processing*, and the queue holds exactly the keys that are
  dirty and not processing: a dirty key whose pass is running is queued again when
  that pass is done, never handed to a second worker;
- a pass answers how long until the key wants another look (a rollout settling, a
  window opening, a retry's backoff) and the key is added back then, by a timer on
  the event loop, not by a thread that sleeps;
- a fixed number of workers take passes, so the threads the handler uses for its
  sync reconciles are bounded whatever the number of incidents waiting.

State here is memory only, and that is enough: progress lives in each Incident's
status, and a restarted operator lists every Incident and queues each one.

Its metrics are client-go's, labelled by the queue's name (operator/metrics.py):
``workqueue_depth``, ``workqueue_adds_total``, ``workqueue_queue_duration_seconds``,
``workqueue_work_duration_seconds``, ``workqueue_retries_total``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from reliability_center.operator import metrics

log = logging.getLogger("reliability_center.workqueue")

Key = tuple[str, str]  # (namespace, name)
#: Bodies the queue keeps, at most, for the keys waiting for a pass; the others' passes read their object
#: (a GET of one Incident). A mitigated Incident takes about 18 KB in memory: 5,000 resolved at once
#: waited with theirs (bench/bench_holds_operator.py). 64 rather than 256: at 5,000 tenants, quiet, peak RSS
#: 190/199 MB mitigating/restoring against 193/202 MB, all restored in 445 s against 438 s.
BODIES = 64


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


class Retry(float):
    """A pass's answer that it failed and wants to be retried after this many seconds (a plain float is a
    planned look: a rollout settling, a window opening). Counted in ``workqueue_retries_total``."""


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
    def __init__(self, handle: Handle, workers: int, gate: asyncio.Event | None = None, name: str = "incidents",
                 bodies: int = BODIES):
        self._handle = handle
        self._workers = workers
        self._gate = gate
        """Set while this replica may act (the leader); a standby keeps its queue and takes no pass."""
        self.name = name
        """The ``name`` label of the queue's metrics."""
        self._urgent: OrderedDict[Key, None] = OrderedDict()
        self._normal: OrderedDict[Key, None] = OrderedDict()
        """The keys waiting for a worker: exactly those dirty and not processing, each once."""
        self._ready = asyncio.Event()
        self._dirty: dict[Key, dict[str, Any] | None] = {}
        """Keys waiting for a pass, with the newest body seen (None: read it afresh)."""
        self._bodies, self._kept = bodies, 0
        """The most bodies ``_dirty`` keeps, and how many it keeps now."""
        self._processing: set[Key] = set()
        """Keys a worker is passing over: never handed to another until done."""
        self._queued_at: dict[Key, float] = {}
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._depth = metrics.QUEUE_DEPTH.labels(name)
        self._adds = metrics.QUEUE_ADDS.labels(name)
        self._latency = metrics.QUEUE_LATENCY.labels(name)
        self._work_duration = metrics.QUEUE_WORK_DURATION.labels(name)
        self._retries = metrics.QUEUE_RETRIES.labels(name)

    def add(self, key: Key, body: dict[str, Any] | None = None, urgent: bool = False) -> None:
        """Queue a pass over ``key`` (once, however often it is added before it runs).

        ``urgent`` keys (a brand-new incident) go before the others: when hundreds of
        waiting incidents are woken by their rollouts, a new one still gets its first
        Level 1 write at once.
        """
        if key not in self._dirty:
            self._adds.inc()
            self._dirty[key] = None
            if key not in self._processing:  # a key being passed is queued again when its pass is done
                self._push(key, urgent)
        self._keep(key, body)

    def _keep(self, key: Key, body: dict[str, Any] | None) -> None:
        """The newest body of a waiting key, while the queue keeps fewer than its most (else its pass reads it)."""
        if body is None:
            return
        held = self._dirty[key] is not None
        if held or self._kept < self._bodies:
            self._kept += not held
            self._dirty[key] = body

    def _drop(self, key: Key) -> dict[str, Any] | None:
        body = self._dirty.pop(key)
        self._kept -= body is not None
        return body

    def _push(self, key: Key, urgent: bool = False) -> None:
        (self._urgent if urgent else self._normal)[key] = None
        self._queued_at[key] = time.monotonic()
        self._depth.inc()
        self._ready.set()

    def _unqueue(self, key: Key) -> None:
        for lane in (self._urgent, self._normal):
            if key in lane:
                del lane[key]
                del self._queued_at[key]
                self._depth.dec()

    async def _get(self) -> tuple[Key, dict[str, Any] | None]:
        """The next key for a worker, now processing, with its newest body."""
        while not (self._urgent or self._normal):
            self._ready.clear()
            await self._ready.wait()
        key, _ = (self._urgent if self._urgent else self._normal).popitem(last=False)
        self._depth.dec()
        self._latency.observe(time.monotonic() - self._queued_at.pop(key))
        self._processing.add(key)
        return key, self._drop(key)

    def _done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            # Changed while it ran: one more pass, on the object read afresh. A body the watch brought
            # during the pass may predate the pass's own writes (the watch lags): a pass on it would
            # redo a step whose result the pass just wrote (seen in the apiserver's audit log).
            self._drop(key)
            self._dirty[key] = None
            self._push(key)

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
        """The object is gone: drop its timer and any queued pass (a pass already running ends as it will)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        if key in self._dirty:
            self._drop(key)
            self._unqueue(key)  # queued only if not processing: the queue holds dirty keys only

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    @property
    def waiting(self) -> int:
        """Keys with a timer set: incidents waiting for something, holding no thread."""
        return len(self._timers)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"rc-{self.name}-worker-{i}") for i in range(self._workers)]

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
            key, body = await self._get()
            delay: float | None
            started = time.monotonic()
            try:
                delay = await self._handle(key, body)
            except Exception:  # the handler reports its own errors; this is the last line
                log.exception("pass over %s/%s failed", *key)
                delay = Retry(5.0)
            finally:
                self._work_duration.observe(time.monotonic() - started)
                self._done(key)
            if isinstance(delay, Retry):
                self._retries.inc()
            if delay is not None:
                self.add_after(key, delay)
