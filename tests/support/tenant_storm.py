"""Thousands of tenants degraded on one flags store at once, through the real Write Gateway, then restored.

Each tenant turns off its own key ``tenant-NNNN.search`` on one shared ConfigMap, one of two ways:

- ``Storm``: one Incident each (created here, in a namespace no operator serves) and the gateway's own path
  (policy, snapshot, JSON patch with holds, audit Event and durable log), as a Kopf worker calls it, from a
  pool of threads like the operator's workers (RC_WORKERS);
- ``Bulk``: ``plan_write``/``plan_release`` part after part on the store as the parts before leave it, sent
  ``BATCH`` tenants to a JSON patch (the shape of a group commit), each holder's snapshot record kept in
  memory: thousands of tenants in seconds, where one gateway write each takes minutes on a 2-CPU machine.

Shared by tests/e2e/test_holds_scale.py and bench/bench_holds.py.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reliability_center.gateway import Ref, WriteContext, WriteGateway
from reliability_center.gateway.holds import Edit, Hold, WritePlan, hold_bytes, plan_release, plan_write
from reliability_center.gateway.kube import Kube
from reliability_center.gateway.leaves import ABSENT, read

STORE = "flags-search"
WORKERS = 16
"""The operator's default number of workers (operator/settings.py): as many writers at once."""


def key(n: int) -> str:
    return f"tenant-{n:04d}.search"


@dataclass
class Storm:
    kube: Kube
    namespace: str
    tenants: int
    incidents: dict[int, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[int, str] = field(default_factory=dict)
    peak_bytes: int = 0
    """The store's hold annotations in bytes once every tenant holds its key (the peak: none is released before)."""

    def store(self) -> dict[str, Any]:
        found = self.kube.get(Ref("ConfigMap", self.namespace, STORE))
        assert found is not None
        return found

    def make_store(self, data: dict[str, str]) -> dict[str, Any]:
        return self.kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": STORE, "namespace": self.namespace,
                                              "labels": {"reliability.center/role": "flags",
                                                         "reliability.center/module": "search"}},
                                 "data": data})

    def make_incidents(self) -> None:
        self.make_incidents_for(range(self.tenants))

    def make_incidents_for(self, tenants: range) -> None:
        def one(n: int) -> dict[str, Any]:
            return self.kube.create({"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                                     "metadata": {"name": f"degrade-{n:04d}", "namespace": self.namespace},
                                     "spec": {"category": "perf", "severity": "high", "tenant": f"tenant-{n:04d}",
                                              "module": "search"}})

        self.incidents.update(zip(tenants, _pool(one, tenants)))

    def context(self, n: int) -> WriteContext:
        return WriteContext(incident=self.incidents[n], trace_id=uuid.uuid4().hex, tenant=f"tenant-{n:04d}",
                            step="degraded-mode", level=1)

    def degrade(self, tenants: range | None = None, workers: int = WORKERS) -> list[float]:
        """Every tenant's key turned off (or those of ``tenants``), all at once; each write's seconds."""
        tenants = range(self.tenants) if tenants is None else tenants
        gateway = WriteGateway(self.kube)

        def one(n: int) -> tuple[float, str]:
            started = time.monotonic()
            desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": STORE, "namespace": self.namespace},
                       "data": {key(n): "off"}}
            result = gateway.apply(self.context(n), desired, action="feature-flags-off")
            assert result.outcome == "applied" and result.snapshot, (n, result)
            return time.monotonic() - started, result.snapshot

        done = _pool(one, tenants, workers)
        self.snapshots.update((n, s) for n, (_, s) in zip(tenants, done))
        self.peak_bytes = max(self.peak_bytes, hold_bytes(self.store()))
        return [t for t, _ in done]

    def restore(self, tenants: range | None = None, workers: int = WORKERS) -> list[float]:
        """Every tenant's incident resolved (or those of ``tenants``) at once; each restore's seconds."""
        tenants = range(self.tenants) if tenants is None else tenants
        gateway = WriteGateway(self.kube)

        def one(n: int) -> float:
            started = time.monotonic()
            result = gateway.restore(self.context(n), self.snapshots[n], action="restore:feature-flags-off")
            assert result.restored == [f"/data/{key(n)}"] and not (result.conflicts or result.kept or result.lost), \
                (n, result)
            return time.monotonic() - started

        return _pool(one, tenants, workers)


def _pool(work: Callable[[int], Any], items: range, workers: int = WORKERS) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, items))


def apply_in_place(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """The apiserver's JSON patch on our two-level paths (a test for null passes on a missing key)."""
    for op in ops:
        *parents, leaf = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = doc
        for part in parents:
            node = node[part]
        if op["op"] == "test":
            now = read(doc, op["path"])
            assert (now is ABSENT and op["value"] is None) or now == op["value"], op
        elif op["op"] == "remove":
            del node[leaf]
        else:
            node[leaf] = copy.deepcopy(op["value"])  # not the op's own (an empty map made, then filled)


BATCH = 250
"""Tenants a bulk patch carries."""


class Bulk:
    """Tenants' writes and releases planned part after part and sent ``BATCH`` to a patch."""

    def __init__(self, storm: Storm, tenants: range):
        self.storm, self.tenants = storm, tenants
        self.records: dict[str, dict[str, Hold]] = {}

    @staticmethod
    def holder(n: int) -> str:
        return f"rc-snap-bulk-{n:04d}"

    def send(self, plan: Callable[[dict[str, Any], int], list[dict[str, Any]]]) -> list[float]:
        """Each patch's seconds."""
        times = []
        ref = Ref("ConfigMap", self.storm.namespace, STORE)
        for start in range(0, len(self.tenants), BATCH):
            part = self.tenants[start:start + BATCH]
            doc, ops = self.storm.store(), []
            for n in part:
                planned = plan(doc, n)
                apply_in_place(doc, planned)
                ops += planned
            started = time.monotonic()
            self.storm.kube.json_patch(ref, ops)
            times.append(time.monotonic() - started)
        return times

    def degrade(self) -> list[float]:
        def plan(doc: dict[str, Any], n: int) -> list[dict[str, Any]]:
            written: WritePlan = plan_write(doc, [Edit(f"/data/{key(n)}", "off")], self.holder(n))
            for k, hold in written.holds.items():  # as its snapshot records it, before the write
                self.records.setdefault(self.holder(n), {}).setdefault(k, hold)
            return written.ops

        return self.send(plan)

    def release(self) -> list[float]:
        return self.send(lambda doc, n: plan_release(doc, self.holder(n), lambda _: True,
                                              taken=self.records[self.holder(n)]).ops)


