"""Incident creation → first Level 1 write, and → Mitigated, against the real local cluster.

Reported beside the raw apiserver write round trip measured in the same run (a
merge patch of a ConfigMap through the same client), as ratios, because these
machines are noisy. Also the operator's peak RSS (VmHWM).

    make bench            # or: python bench/bench_mitigation.py --incidents 200
    python bench/bench_mitigation.py --store-overrides 1000   # a flags store of 1,000 other tenants

``--store-overrides N`` first fills the shared ``flags-search`` store with the
overrides of N other tenants (two keys each), the size at which a write or a
snapshot of the whole object would show in the latency.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time
import uuid

from measure import peak_rss_mb, pct, use_cluster  # bench/, the script's own directory

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path(os.environ.get("RC_CACHE", pathlib.Path.home() / ".cache" / "reliability-center"))


def kubectl(*args: str, input: str | None = None) -> str:
    return subprocess.run([str(CACHE / "bin" / "kubectl"), *args], input=input, text=True, check=True,
                          capture_output=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=200)
    parser.add_argument("--store-overrides", type=int, default=0,
                        help="tenants whose overrides already fill the flags store (two keys each)")
    args = parser.parse_args()
    use_cluster()
    sys.path.insert(0, str(ROOT / "src"))
    import yaml
    from kubernetes import client, config, watch

    from reliability_center.gateway import Kube, Ref

    kube = Kube()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    kubectl("apply", "--server-side", "-n", ns, "-f", str(ROOT / "examples" / "protected-app" / "app.yaml"))
    if args.store_overrides:
        overrides = {f"{flag}.tenant.other{i:04d}": "true" for i in range(args.store_overrides)
                     for flag in ("search-suggestions", "search-recommendations")}
        kubectl("patch", "configmap", "flags-search", "-n", ns, "--type=merge", "--patch-file=/dev/stdin",
                input=json.dumps({"data": overrides}))
    store_kib = len(kubectl("get", "configmap", "flags-search", "-n", ns, "-o", "json")) / 1024
    category = f"bench{uuid.uuid4().hex[:6]}"
    runbook = {"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
               "metadata": {"name": f"rb-{category}", "labels": {"reliability.center/bench": "true"}},
               "spec": {"match": {"category": category}, "limits": {"maxRunsPerHour": 1000, "maxRefires": 100},
                        "steps": [
                            {"name": "degraded-mode", "level": 1, "action": "feature-flags-off",
                             "params": {"modules": ["search"]}},
                            {"name": "breaker", "level": 1, "action": "circuit-breaker",
                             "params": {"integration": "payments-gateway"}}]}}
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(runbook))

    # Baseline: the raw apiserver write round trip, same client, same run.
    target = Ref("ConfigMap", ns, "tenant-acme")
    raw = []
    for i in range(args.baseline):
        start = time.perf_counter()
        kube.merge_patch(target, {"data": {"bench": str(i)}}, manager="bench")
        raw.append(time.perf_counter() - start)

    # With a big store: also the raw write round trip of the store itself (its size is the apiserver's
    # cost: decoding, managedFields of 2,000 keys, etcd), so the operator's own share can be told apart.
    raw_store = []
    if args.store_overrides:
        store = Ref("ConfigMap", ns, "flags-search")
        for i in range(args.baseline // 4):
            start = time.perf_counter()
            kube.merge_patch(store, {"data": {"bench": str(i)}}, manager="bench")
            raw_store.append(time.perf_counter() - start)
        kube.merge_patch(store, {"data": {"bench": None}}, manager="bench")

    log = open(CACHE / "operator-bench.log", "wb")
    operator = subprocess.Popen([sys.executable, "-m", "reliability_center.operator"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "RC_NAMESPACES": ns, "PYTHONPATH": str(ROOT / "src")})
    first_write: dict[str, float] = {}
    mitigated: dict[str, float] = {}
    lock = threading.Condition()
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])

    def watch_flags() -> None:
        # Raw lines, timed as each arrives: the client's model decoding of an 80 KiB object would
        # otherwise be counted in the operator's latency.
        core = client.CoreV1Api()
        response = core.list_namespaced_config_map(ns, field_selector="metadata.name=flags-search", watch=True,
                                                   timeout_seconds=600, _preload_content=False)
        pending = b""
        for chunk in response.stream(1 << 16):
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                now = time.perf_counter()
                data = json.loads(line)["object"].get("data") or {}
                with lock:
                    for key in data:
                        if ".tenant.t" in key:  # the bench's own tenants, t0000...
                            first_write.setdefault(key.split(".tenant.")[1], now)
                    lock.notify_all()

    def watch_incidents() -> None:
        custom = client.CustomObjectsApi()
        for event in watch.Watch().stream(custom.list_namespaced_custom_object, "reliability.center", "v1alpha1", ns,
                                          "incidents", timeout_seconds=600):
            now = time.perf_counter()
            obj = event["object"]
            with lock:
                if (obj.get("status") or {}).get("phase") == "Mitigated":
                    mitigated.setdefault(obj["spec"]["tenant"], now)
                lock.notify_all()

    for fn in (watch_flags, watch_incidents):
        threading.Thread(target=fn, daemon=True).start()
    # Wait for the operator to be up: it reports on the runbook.
    deadline = time.monotonic() + 60
    while not (kube.get(Ref("Runbook", None, f"rb-{category}")) or {}).get("status"):
        if time.monotonic() > deadline:
            raise SystemExit("operator did not start")
        time.sleep(0.1)
    time.sleep(1.0)  # let the watches settle before the first measurement

    created: dict[str, float] = {}
    for i in range(args.incidents):
        tenant = f"t{i:04d}"
        body = {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                "metadata": {"name": f"inc-{i:04d}", "namespace": ns},
                "spec": {"category": category, "severity": "high", "tenant": tenant, "module": "search"}}
        created[tenant] = time.perf_counter()
        kube.create(body, manager="bench")
        with lock:
            if not lock.wait_for(lambda: tenant in mitigated, timeout=30):
                raise SystemExit(f"incident {i} not mitigated in 30s; see {CACHE / 'operator-bench.log'}")
        # Latency, not throughput: let the operator finish with this incident (its last
        # status events) before the next one, so incidents do not queue behind each other.
        quiet_since = time.perf_counter()
        while time.perf_counter() - quiet_since < 0.15:
            with lock:
                if lock.wait(timeout=0.15):
                    quiet_since = time.perf_counter()
    rss_mb = peak_rss_mb(operator.pid)
    operator.terminate()
    operator.wait(timeout=30)
    kubectl("delete", "namespace", ns, "--wait=false")
    kubectl("delete", "runbook", f"rb-{category}", "--wait=false")

    to_write = [first_write[t] - created[t] for t in created]
    to_mitigated = [mitigated[t] - created[t] for t in created]
    raw50, raw99 = pct(raw, 0.5), pct(raw, 0.99)
    result = {
        "incidents": args.incidents,
        "store_overrides": args.store_overrides,
        "flags_store_kib": store_kib,
        "raw_write_ms": {"p50": raw50 * 1e3, "p99": raw99 * 1e3},
        "first_write_ms": {"p50": pct(to_write, 0.5) * 1e3, "p99": pct(to_write, 0.99) * 1e3},
        "mitigated_ms": {"p50": pct(to_mitigated, 0.5) * 1e3, "p99": pct(to_mitigated, 0.99) * 1e3},
        "ratio_first_write_p50": pct(to_write, 0.5) / raw50,
        "ratio_first_write_p99": pct(to_write, 0.99) / raw99,
        "ratio_mitigated_p50": pct(to_mitigated, 0.5) / raw50,
        "operator_peak_rss_mb": rss_mb,
        "mean_first_write_ms": statistics.mean(to_write) * 1e3,
    }
    if raw_store:
        result["raw_store_write_ms"] = {"p50": pct(raw_store, 0.5) * 1e3, "p99": pct(raw_store, 0.99) * 1e3}
        result["ratio_first_write_p50_to_store_write"] = pct(to_write, 0.5) / pct(raw_store, 0.5)
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'p50 ratio':>12}{'p99 ratio':>12}")
    print(f"{'raw apiserver write':24}{raw50 * 1e3:10.2f}{raw99 * 1e3:10.2f}{1:12.1f}{1:12.1f}")
    if raw_store:
        s50, s99 = result["raw_store_write_ms"]["p50"], result["raw_store_write_ms"]["p99"]
        print(f"{'raw write of the store':24}{s50:10.2f}{s99:10.2f}{s50 / (raw50 * 1e3):12.1f}{s99 / (raw99 * 1e3):12.1f}")
    for label, key in (("create → first L1 write", "first_write_ms"), ("create → Mitigated", "mitigated_ms")):
        p50, p99 = result[key]["p50"], result[key]["p99"]
        print(f"{label:24}{p50:10.2f}{p99:10.2f}{p50 / (raw50 * 1e3):12.1f}{p99 / (raw99 * 1e3):12.1f}")
    print(f"operator peak RSS: {result['operator_peak_rss_mb']:.0f} MB over {args.incidents} incidents; "
          f"flags store {store_kib:.0f} KiB ({args.store_overrides} other tenants' overrides)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    name = f"mitigation-store{args.store_overrides}.json" if args.store_overrides else "mitigation.json"
    (out / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
