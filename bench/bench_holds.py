"""Holds that scale: N tenants (default 5,000) degraded on one flags store, then all restored.

Against the real local cluster, two ways at once on one store (tests/support/tenant_storm.py): the most of
them planned by ``plan_write`` part after part and sent ``BATCH`` tenants to a JSON patch (the shape of a
group commit, issue 23 item 1: one gateway write per tenant takes minutes for 5,000 on a 2-CPU machine,
each write re-encoding the whole store), and ``--gateway-tenants`` more (default 40) through the real Write
Gateway, an Incident each, ``--workers`` at a time, into the full store. Reported: the time until every
tenant holds its key and until every one is restored, per bulk patch and per gateway write and restore
(p50/p99), the store's hold annotations at their peak (bytes, and their share of Kubernetes' 256 KiB
annotation limit) and the whole object's size; beside the raw ConfigMap write round trip measured in the
same run (a merge patch of a small ConfigMap, and of the store itself at its peak), as ratios, because
these machines are noisy. The store must come back exactly as it was. Every tenant an Incident of its own,
through a real operator process: bench/bench_holds_operator.py.

    python bench/bench_holds.py                    # 5,000 tenants
    python bench/bench_holds.py --tenants 5000 --gateway-tenants 5000 --workers 16   # all through the gateway
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import uuid

from measure import pct, raw_writes, use_cluster  # bench/, the script's own directory

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
LIMIT = 256 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=5000)
    parser.add_argument("--gateway-tenants", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--baseline", type=int, default=40)
    args = parser.parse_args()
    use_cluster()
    from reliability_center.gateway import Kube, Ref
    from reliability_center.gateway.holds import hold_bytes
    from tests.support.tenant_storm import BATCH, STORE, Bulk, Storm

    kube = Kube()
    ns = f"bench-holds-{uuid.uuid4().hex[:6]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    through = range(args.tenants - args.gateway_tenants, args.tenants)
    try:
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw", "namespace": ns},
                     "data": {"a": "1"}})
        raw = raw_writes(kube, Ref("ConfigMap", ns, "raw"), args.baseline)
        storm = Storm(kube, ns, args.tenants)
        bulk = Bulk(storm, range(args.tenants - args.gateway_tenants))
        original = storm.make_store({"search-suggestions": "true", "search-recommendations": "true"})["data"]
        started = time.monotonic()
        storm.make_incidents_for(through)
        incidents_s = time.monotonic() - started
        started = time.monotonic()
        patches = bulk.degrade()
        bulk_s = time.monotonic() - started
        writes = storm.degrade(through, workers=args.workers)
        mitigated_s = time.monotonic() - started
        peak = storm.store()
        peak_bytes, object_bytes = hold_bytes(peak), len(json.dumps(peak, separators=(",", ":")))
        assert all(peak["data"].get(f"tenant-{n:04d}.search") == "off" for n in range(args.tenants))
        raw_store = raw_writes(kube, Ref("ConfigMap", ns, STORE), args.baseline // 4)
        started = time.monotonic()
        restores = storm.restore(through, workers=args.workers)
        releases = bulk.release()
        restored_s = time.monotonic() - started
        after = storm.store()
        assert after["data"] == original, "the store did not come back exactly as it was"
        assert not any(k.startswith("reliability.center/hold") for k in after["metadata"].get("annotations") or {})
    finally:
        kube.delete(Ref("Namespace", None, ns))

    raw50, raw99, store50 = pct(raw, 0.5), pct(raw, 0.99), pct(raw_store, 0.5)

    def ms(values: list[float]) -> dict[str, float]:
        return {"p50": pct(values, 0.5) * 1e3, "p99": pct(values, 0.99) * 1e3} if values else {}

    result = {
        "tenants": args.tenants, "gateway_tenants": args.gateway_tenants, "gateway_workers": args.workers,
        "bulk_tenants_per_patch": BATCH,
        "incidents_created_s": incidents_s,
        "all_mitigated_s": mitigated_s, "bulk_mitigated_s": bulk_s,
        "all_restored_s": restored_s,
        "bulk_patch_ms": ms(patches), "bulk_release_patch_ms": ms(releases),
        "gateway_write_ms": ms(writes), "gateway_restore_ms": ms(restores),
        "raw_write_ms": ms(raw), "raw_store_write_ms": ms(raw_store),
        "ratio_gateway_write_p50": pct(writes, 0.5) / raw50 if writes else None,
        "ratio_gateway_write_p99": pct(writes, 0.99) / raw99 if writes else None,
        "ratio_gateway_write_p50_to_store_write": pct(writes, 0.5) / store50 if writes else None,
        "ratio_bulk_patch_p50_to_store_write": pct(patches, 0.5) / store50 if patches else None,
        "peak_hold_annotation_bytes": peak_bytes,
        "peak_hold_share_of_limit": peak_bytes / LIMIT,
        "peak_object_bytes": object_bytes,
        "store_restored_exactly": True,
    }
    print(f"{args.tenants} tenants on one store ({args.tenants - args.gateway_tenants} in patches of {BATCH}, "
          f"{args.gateway_tenants} through the gateway {args.workers} at a time): all mitigated in {mitigated_s:.1f} s "
          f"(the patches {bulk_s:.1f} s), all restored in {restored_s:.1f} s")
    print(f"raw write p50 {raw50 * 1e3:.1f} ms p99 {raw99 * 1e3:.1f} ms; the store's own raw write at its peak "
          f"p50 {store50 * 1e3:.1f} ms")
    for label, values in (("bulk patch", patches), ("bulk release patch", releases), ("gateway write", writes),
                          ("gateway restore", restores)):
        if values:
            print(f"{label:20} p50 {pct(values, 0.5) * 1e3:8.0f} ms  p99 {pct(values, 0.99) * 1e3:8.0f} ms  "
                  f"{pct(values, 0.5) / raw50:6.1f}x raw  {pct(values, 0.5) / store50:6.1f}x the store's raw write")
    print(f"peak hold annotations {peak_bytes} bytes ({peak_bytes / LIMIT:.1%} of 256 KiB); "
          f"object {object_bytes / 1024:.0f} KiB; store back exactly as it was")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"holds-{args.tenants}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
