"""Holds that scale, through the real operator: N tenants (default 5,000) on one flags store, all Mitigated, all restored.

Issue 23, item 2's target. bench_holds.py sends most of its tenants' holds as planned bulk patches; here every
tenant is an Incident of its own, handled by a real operator process (``python -m reliability_center.operator``,
its own namespace, ``RC_NAMESPACES``) running a Runbook whose one step is the perf runbook's ``degraded-mode``
(``feature-flags-off``, takeOwnership): each incident turns off its tenant's two keys of the sample app's
``flags-search`` store (``search-suggestions.tenant.<t>``, ``search-recommendations.tenant.<t>``), the group
commit (gateway/batch.py) sending many incidents' parts in one JSON patch. The incidents are created by a few
client threads as fast as they go, their phases followed by a watch (no polling of thousands of objects).

Reported as each phase ends (printed, and saved to bench/results/holds-operator-<N>.json, so that a restore
that fails still leaves the mitigation's figures): the time until every incident is Mitigated and until every
one is restored (its step ``Restored``, phase ``Verifying``: closing needs the postmortem gate, a person's); the
store's hold annotations at their peak (bytes, share of Kubernetes' 256 KiB annotation limit) and the whole
object's size; the patches of the store the apiserver saw (its audit log, read every 5 s because a long run
outlasts its rotation: real and dry-run, refused ones by code, the most incidents in one); the operator's peak
RSS and CPU; the apiserver's CPU; the raw ConfigMap write round trip of the same run (a small ConfigMap, and the
store at its peak) so the figures read as ratios; the load average beside each figure (the machine is shared).
The store's data and annotations must come back exactly as they were; the namespace and the Runbook are deleted
at the end. The operator's log: ``~/.cache/reliability-center/operator-bench-holds-<namespace>.log``.

    python bench/bench_holds_operator.py                  # 5,000 tenants
    python bench/bench_holds_operator.py --tenants 500
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from bench_resilience import CACHE, ROOT, Bench, apiserver_pid, operator, stop  # bench/, the script's own directory
from measure import cpu_s, peak_rss_mb, pct, raw_writes

LIMIT = 256 * 1024
STORE = "flags-search"
#: The perf runbook's feature-flag step (runbooks/perf.yaml ``degraded-mode``), alone.
DEGRADED_MODE = {"name": "degraded-mode", "level": 1, "action": "feature-flags-off",
                 "when": {"severities": ["critical", "high"]}, "takeOwnership": True}


def load() -> str:
    """The load average (1, 5, 15 min), as uptime prints it."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Phases:
    """Each incident's phase and its steps' states, as a watch of the namespace's Incidents delivers them."""

    def __init__(self, kube: Any, namespace: str):
        self.kube, self.path = kube, kube.path("Incident", namespace)
        self.seen: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.changed = threading.Condition()
        self.response: Any = None
        self.stopped = False
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        from reliability_center.gateway.kube import watch_events

        while not self.stopped:  # a watch without a resourceVersion starts with every Incident as it is
            self.response = self.kube.read_raw(self.path, {"watch": "true"}, "application/json", timeout=None)
            try:
                for event in watch_events(self.response):
                    obj = event["object"]
                    if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    status = obj.get("status") or {}
                    with self.changed:
                        self.seen[obj["metadata"]["name"]] = (
                            status.get("phase", ""), tuple(s.get("state", "") for s in status.get("steps") or []))
                        self.changed.notify_all()
            except Exception:  # noqa: BLE001 — the stream closed (the apiserver's watch timeout, or stop()): again
                if self.stopped:
                    return

    def wait(self, count: int, done: Any, what: str, deadline_s: float) -> float:
        """Seconds from now until ``count`` incidents are ``done(phase, step states)``; an incident Failed or
        Escalated ends the wait at once (it will never be done)."""
        started = time.monotonic()
        with self.changed:
            while True:
                stuck = {n: p for n, (p, _) in self.seen.items() if p in ("Failed", "Escalated")}
                if stuck:
                    raise SystemExit(f"{what}: {len(stuck)} incidents {Counter(stuck.values())}, e.g. {min(stuck)}")
                finished = sum(done(*state) for state in self.seen.values())
                if finished >= count:
                    return time.monotonic() - started
                left = deadline_s - (time.monotonic() - started)
                if left <= 0:
                    raise SystemExit(f"{what}: {finished} of {count} after {deadline_s:.0f} s; phases "
                                     f"{Counter(p for p, _ in self.seen.values())}")
                self.changed.wait(min(left, 5))

    def stop(self) -> None:
        self.stopped = True
        if self.response is not None:  # the socket shut down: the reader thread's read returns (a close would
            self.response.response.shutdown()  # wait for the lock that read holds)


class StorePatches:
    """The operator's patches of the store, as the apiserver's audit log records them, read every few seconds:
    the log is rotated at 200 MB with one old file kept (hack/kwokctl.yaml), less than a long run of this bench
    beside other sessions writes, so a read at the end would miss the start."""

    def __init__(self, namespace: str):
        from tests.support.audit import AuditLog

        self.audit, self.namespace = AuditLog(), namespace
        self.position = self.audit.position()
        self.patches: list[Any] = []
        self.unread = False  # a rotation passed between two reads: the counts are short
        self.stopped = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        while not self.stopped.wait(5):
            self.read()

    def read(self) -> None:
        from tests.support.audit import Position, Write, _event, _tail

        path, pos = self.audit.path, self.position
        inode = path.stat().st_ino
        if inode == pos.inode:
            data = _tail(path, pos.offset)
            data = data[:data.rfind(b"\n") + 1]  # a line still being written is read next time
            self.position = Position(inode, pos.offset + len(data))
        else:  # rotated since: the rest of the old file (complete), then the new one
            old = [p for p in path.parent.glob("audit-*.log") if p.stat().st_ino == pos.inode]
            self.unread |= not old
            new = _tail(path, 0)
            new = new[:new.rfind(b"\n") + 1]
            data = b"".join(_tail(p, pos.offset) for p in old) + new
            self.position = Position(inode, len(new))
        for line in data.splitlines():  # the store's patches only: the rest is other sessions' or not counted
            if STORE.encode() in line and self.namespace.encode() in line:
                event = _event(line)
                if event.get("stage") == "ResponseComplete" and event.get("verb") == "patch":
                    self.patches.append(Write.of(event))

    def stop(self) -> None:
        self.stopped.set()
        self.audit.sync()
        self.read()

    def count(self, since: datetime, until: datetime | None = None) -> dict[str, Any]:
        """How many (real and dry-run) between two moments, the refused ones by code, the most incidents one
        real patch carried (the tenant keys it set or gave back)."""
        patches = [w for w in self.patches if w.namespace == self.namespace and w.name == STORE
                   and w.resource == "configmaps" and w.replica is not None
                   and since <= w.received and (until is None or w.received < until)]
        real = [w for w in patches if not w.dry_run]

        def tenants(w: Any) -> int:
            return len({op["path"].rsplit(".tenant.", 1)[1] for op in w.request or []
                        if isinstance(op, dict) and op.get("op") in ("add", "replace", "remove")
                        and op.get("path", "").startswith("/data/") and ".tenant." in op["path"]})

        return {"real": len(real), "dry_run": len(patches) - len(real),
                "refused": dict(Counter(f"{w.code}{' (dry-run)' if w.dry_run else ''}" for w in patches if not w.ok)),
                "most_incidents_in_one": max((tenants(w) for w in real if w.ok), default=0),
                "audit_log_complete": not self.unread}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8, help="threads creating (and resolving) the incidents")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds each phase may take, at most")
    args = parser.parse_args()
    bench = Bench()
    from reliability_center.gateway import Ref
    from reliability_center.gateway.holds import hold_bytes
    from tests.support.incidents import resolve

    kube = bench.kube
    ns = bench.namespace()
    category = bench.runbook([DEGRADED_MODE])
    store_ref = Ref("ConfigMap", ns, STORE)
    result: dict[str, Any] = {"tenants": args.tenants, "clients": args.clients, "load_average": {"start": load()}}
    out = ROOT / "bench" / "results" / f"holds-operator-{args.tenants}.json"
    out.parent.mkdir(exist_ok=True)

    def report(line: str, **figures: Any) -> None:
        """A phase's figures as soon as they are known (a later phase may fail): printed and saved."""
        result.update(figures)
        out.write_text(json.dumps(result, indent=2))
        print(line, flush=True)

    def ms(values: list[float]) -> dict[str, float]:
        return {"p50": round(pct(values, 0.5) * 1e3, 1), "p99": round(pct(values, 0.99) * 1e3, 1)}

    proc = None
    try:
        original = kube.get(store_ref)
        raw = raw_writes(kube, Ref("ConfigMap", ns, "tenant-acme"), 40)
        raw50 = pct(raw, 0.5) * 1e3
        report(f"{args.tenants} tenants, one Incident each, through the real operator ({args.clients} client threads;"
               f" load average {result['load_average']['start']}); raw write p50 {raw50:.1f} ms "
               f"p99 {pct(raw, 0.99) * 1e3:.1f} ms", raw_write_ms=ms(raw))
        proc = operator(CACHE / f"operator-bench-holds-{ns}.log", {"RC_NAMESPACES": ns})
        bench.ready(category)
        watched, patches = Phases(kube, ns), StorePatches(ns)
        mitigating, api_cpu, op_cpu = datetime.now(timezone.utc), cpu_s(apiserver_pid()), cpu_s(proc.pid)
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda n: bench.incident(ns, f"inc-{n:04d}", category, f"t{n:04d}"), range(args.tenants)))
        created_s = time.monotonic() - started
        mitigated_s = created_s + watched.wait(args.tenants, lambda phase, _: phase == "Mitigated",
                                               "mitigation", args.deadline - created_s)
        cpu = {"operator_s": round(cpu_s(proc.pid) - op_cpu, 1), "apiserver_s": round(cpu_s(apiserver_pid()) - api_cpu, 1)}
        rss, now = peak_rss_mb(proc.pid), load()
        peak = kube.get(store_ref)
        ours = {f"{flag}.tenant.t{n:04d}": "false" for n in range(args.tenants)
                for flag in ("search-suggestions", "search-recommendations")}
        assert peak["data"] == {**original["data"], **ours}, "not every tenant's keys (or more) were turned off"
        peak_bytes, object_bytes = hold_bytes(peak), len(json.dumps(peak, separators=(",", ":")))
        raw_store = raw_writes(kube, store_ref, 10)  # the store at its peak, the same write as the small one
        resolving = datetime.now(timezone.utc)
        sent = patches.count(mitigating, resolving)
        report(f"  all created in {created_s:.1f} s, all Mitigated in {mitigated_s:.1f} s (load {now}); store patches "
               f"{sent['real']} + {sent['dry_run']} dry-run, refused {sent['refused'] or 'none'}, at most "
               f"{sent['most_incidents_in_one']} incidents in one; CPU operator {cpu['operator_s']:.0f} s, apiserver "
               f"{cpu['apiserver_s']:.0f} s; operator peak RSS {rss:.0f} MB\n"
               f"  peak hold annotations {peak_bytes} bytes ({peak_bytes / LIMIT:.1%} of 256 KiB); object "
               f"{object_bytes / 1024:.0f} KiB; its raw write p50 {pct(raw_store, 0.5) * 1e3:.0f} ms "
               f"({pct(raw_store, 0.5) * 1e3 / raw50:.0f}x the small one)",
               incidents_created_s=round(created_s, 1), all_mitigated_s=round(mitigated_s, 1),
               store_patches_mitigate=sent, cpu_mitigate=cpu, operator_peak_rss_mb_mitigated=round(rss),
               peak_hold_annotation_bytes=peak_bytes, peak_hold_share_of_limit=round(peak_bytes / LIMIT, 3),
               peak_object_bytes=object_bytes, raw_store_write_at_peak_ms=ms(raw_store),
               load_average={**result["load_average"], "mitigated": now})

        api_cpu, op_cpu = cpu_s(apiserver_pid()), cpu_s(proc.pid)
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda n: resolve(ns, f"inc-{n:04d}"), range(args.tenants)))
        resolved_s = time.monotonic() - started
        restored_s = resolved_s + watched.wait(
            args.tenants, lambda phase, steps: phase in ("Verifying", "Closed") and steps == ("Restored",),
            "restore", args.deadline - resolved_s)
        cpu = {"operator_s": round(cpu_s(proc.pid) - op_cpu, 1), "apiserver_s": round(cpu_s(apiserver_pid()) - api_cpu, 1)}
        rss, now = peak_rss_mb(proc.pid), load()
        watched.stop()
        after = kube.get(store_ref)
        assert after["data"] == original["data"], "the store's data did not come back exactly as it was"
        assert after["metadata"].get("annotations") == original["metadata"].get("annotations"), \
            "the store's annotations did not come back exactly as they were"
        stop(proc)
        proc = None
        patches.stop()
        sent = patches.count(resolving)
        report(f"  all restored in {restored_s:.1f} s from the first resolve (load {now}); store patches "
               f"{sent['real']} + {sent['dry_run']} dry-run, refused {sent['refused'] or 'none'}, at most "
               f"{sent['most_incidents_in_one']} incidents in one; CPU operator {cpu['operator_s']:.0f} s, apiserver "
               f"{cpu['apiserver_s']:.0f} s; operator peak RSS {rss:.0f} MB; the store's data and annotations back "
               "exactly as they were",
               all_resolve_requests_s=round(resolved_s, 1), all_restored_s=round(restored_s, 1),
               store_patches_restore=sent, cpu_restore=cpu, operator_peak_rss_mb=round(rss),
               store_restored_exactly=True, load_average={**result["load_average"], "restored": now})
    finally:
        if proc is not None:
            stop(proc)
        bench.kubectl("delete", "namespace", ns, "--wait=false")
        bench.kubectl("delete", "runbook", f"rb-{category}", "--ignore-not-found")


if __name__ == "__main__":
    main()
