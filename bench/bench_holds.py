"""Holds that scale: N tenants (default 5,000) degraded on one flags store at once, then all restored.

Through the real Write Gateway (tests/support/tenant_storm.py: one Incident per tenant, each writing its own
key ``tenant-NNNN.search`` with a snapshot, holds, an audit Event and a durable log, from 16 threads like the
operator's workers), against the real local cluster. Reported: the time until every tenant holds its key and
until every one is restored, each write's and restore's p50/p99, the store's hold annotations at their peak
(bytes, and their share of Kubernetes' 256 KiB annotation limit) and the whole object's size; beside the raw
ConfigMap write round trip measured in the same run (a merge patch of a small ConfigMap, and of the store
itself at its peak), as ratios, because these machines are noisy. The store must come back exactly as it was.

    python bench/bench_holds.py                    # 5,000 tenants
    python bench/bench_holds.py --tenants 1000
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import uuid

from measure import pct  # bench/, the script's own directory

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
LIMIT = 256 * 1024


def raw_writes(kube, ref, count: int) -> list[float]:
    """The raw write round trip: a merge patch of one key through the same client."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        kube.merge_patch(ref, {"data": {"bench": str(i)}}, manager="bench")
        times.append(time.perf_counter() - start)
    kube.merge_patch(ref, {"data": {"bench": None}}, manager="bench")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=5000)
    parser.add_argument("--baseline", type=int, default=40)
    args = parser.parse_args()
    os.environ["KUBECONFIG"] = subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], check=True,
                                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
    from reliability_center.gateway import Kube, Ref
    from tests.support.tenant_storm import STORE, Storm

    kube = Kube()
    ns = f"bench-holds-{uuid.uuid4().hex[:6]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw", "namespace": ns},
                     "data": {"a": "1"}})
        raw = raw_writes(kube, Ref("ConfigMap", ns, "raw"), args.baseline)
        storm = Storm(kube, ns, args.tenants)
        original = storm.make_store({"search-suggestions": "true", "search-recommendations": "true"})["data"]
        started = time.monotonic()
        storm.make_incidents()
        incidents_s = time.monotonic() - started
        started = time.monotonic()
        writes = storm.degrade()
        mitigated_s = time.monotonic() - started
        peak = storm.store()
        object_bytes = len(json.dumps(peak, separators=(",", ":")))
        assert all(peak["data"].get(f"tenant-{n:04d}.search") == "off" for n in range(args.tenants))
        raw_store = raw_writes(kube, Ref("ConfigMap", ns, STORE), args.baseline // 4)
        started = time.monotonic()
        restores = storm.restore()
        restored_s = time.monotonic() - started
        after = storm.store()
        assert after["data"] == original, "the store did not come back exactly as it was"
        assert not any(k.startswith("reliability.center/hold") for k in after["metadata"].get("annotations") or {})
    finally:
        kube.delete(Ref("Namespace", None, ns))

    raw50, raw99 = pct(raw, 0.5), pct(raw, 0.99)
    result = {
        "tenants": args.tenants,
        "incidents_created_s": incidents_s,
        "all_mitigated_s": mitigated_s,
        "all_restored_s": restored_s,
        "write_ms": {"p50": pct(writes, 0.5) * 1e3, "p99": pct(writes, 0.99) * 1e3},
        "restore_ms": {"p50": pct(restores, 0.5) * 1e3, "p99": pct(restores, 0.99) * 1e3},
        "raw_write_ms": {"p50": raw50 * 1e3, "p99": raw99 * 1e3},
        "raw_store_write_ms": {"p50": pct(raw_store, 0.5) * 1e3, "p99": pct(raw_store, 0.99) * 1e3},
        "ratio_write_p50": pct(writes, 0.5) / raw50,
        "ratio_write_p99": pct(writes, 0.99) / raw99,
        "ratio_restore_p50": pct(restores, 0.5) / raw50,
        "ratio_write_p50_to_store_write": pct(writes, 0.5) / pct(raw_store, 0.5),
        "tenants_per_s_mitigated": args.tenants / mitigated_s,
        "tenants_per_s_restored": args.tenants / restored_s,
        "peak_hold_annotation_bytes": storm.peak_bytes,
        "peak_hold_share_of_limit": storm.peak_bytes / LIMIT,
        "peak_object_bytes": object_bytes,
        "store_restored_exactly": True,
    }
    print(f"{args.tenants} tenants on one store: {incidents_s:.1f} s to create the incidents, all mitigated in "
          f"{mitigated_s:.1f} s, all restored in {restored_s:.1f} s")
    print(f"per write p50 {result['write_ms']['p50']:.0f} ms p99 {result['write_ms']['p99']:.0f} ms "
          f"({result['ratio_write_p50']:.1f}x / {result['ratio_write_p99']:.1f}x the raw write "
          f"{raw50 * 1e3:.1f} / {raw99 * 1e3:.1f} ms; {result['ratio_write_p50_to_store_write']:.1f}x the store's own "
          f"raw write {result['raw_store_write_ms']['p50']:.1f} ms); restore p50 {result['restore_ms']['p50']:.0f} ms")
    print(f"peak hold annotations {storm.peak_bytes} bytes ({storm.peak_bytes / LIMIT:.1%} of 256 KiB); "
          f"object {object_bytes / 1024:.0f} KiB; store back exactly as it was")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"holds-{args.tenants}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
