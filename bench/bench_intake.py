"""An alert storm through the Alertmanager receiver, against the real local cluster.

500 alerts (default: 100 groups of 5, over 4 namespaces and 20 tenants) posted at once the
way two Alertmanager replicas would: each group's posts by both "peers" (every post a
duplicate), first 3 alerts then all 5, then one alert of every third group resolved; a 503
is retried as Alertmanager would. Reported: the time until every expected Incident exists
(a list-poll of the apiserver), that none is missing or doubled and every signal is there,
the operator's peak RSS, and ratios against baselines measured in the same run: the raw
create round trip of an Incident (p50) × the number of incidents, and the same creates
made directly by as many threads as post.

    python bench/bench_intake.py            # --groups 100 --alerts 5 --concurrency 32
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from measure import peak_rss_mb, pct, use_cluster  # bench/, the script's own directory

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CACHE = pathlib.Path(os.environ.get("RC_CACHE", pathlib.Path.home() / ".cache" / "reliability-center"))
API = "reliability.center/v1alpha1"


def kubectl(*args: str, input: str | None = None) -> str:
    return subprocess.run([str(CACHE / "bin" / "kubectl"), *args], input=input, text=True, check=True,
                          capture_output=True).stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alert(fp: str, labels: dict[str, str], status: str = "firing") -> dict:
    return {"status": status, "labels": {"alertname": "BenchLatency", "severity": "high", **labels},
            "annotations": {"summary": "p99 over SLO", "value": "2.5"}, "startsAt": "2026-01-01T10:00:00Z",
            "endsAt": "2026-01-01T10:09:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fp}


def post_body(group_key: str, labels: dict[str, str], alerts: list[dict]) -> bytes:
    return json.dumps({"version": "4", "groupKey": group_key, "truncatedAlerts": 0, "receiver": "bench",
                       "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
                       "groupLabels": labels, "commonLabels": labels, "commonAnnotations": {},
                       "externalURL": "http://alertmanager", "alerts": alerts}).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--alerts", type=int, default=5, help="alerts per group")
    parser.add_argument("--namespaces", type=int, default=4)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--baseline", type=int, default=50)
    parser.add_argument("--no-reconcile", action="store_true",
                        help="the operator watches none of the namespaces: the receiver's cost alone")
    args = parser.parse_args()
    use_cluster()
    from reliability_center.gateway import Kube

    kube = Kube()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    run = uuid.uuid4().hex[:6]
    namespaces = [f"bench-intake-{run}-{i}" for i in range(args.namespaces)]
    baseline_ns = f"bench-base-{run}"  # not watched by the bench operator
    for ns in [*namespaces, baseline_ns]:
        kubectl("create", "namespace", ns)
    category = f"bench-{run}"
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
        {"apiVersion": API, "kind": "Runbook", "metadata": {"name": f"rb-{category}",
                                                            "labels": {"reliability.center/bench": "true"}},
         "spec": {"match": {"category": category}, "limits": {"maxRunsPerHour": 1000, "maxRefires": 100},
                  "steps": [{"name": "blast-radius", "level": 1, "action": "blast-radius"}]}}))

    # Baselines: the same Incidents created straight at the apiserver, one at a time, then as many at once.
    def incident(ns: str, name: str) -> dict:
        return {"apiVersion": API, "kind": "Incident", "metadata": {"name": name, "namespace": ns},
                "spec": {"category": category, "severity": "high", "tenant": "acme",
                         "signals": [{"source": "alertmanager", "name": "BenchLatency", "fingerprint": "ab"}]}}

    raw = []
    for i in range(args.baseline):
        start = time.perf_counter()
        kube.create(incident(baseline_ns, f"seq-{i:04d}"), manager="bench")
        raw.append(time.perf_counter() - start)
    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(lambda i: kube.create(incident(baseline_ns, f"par-{i:04d}"), manager="bench"),
                      range(args.groups)))
    raw_parallel = time.perf_counter() - start

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-intake-"))
    token = uuid.uuid4().hex
    (work / "token").write_text(token)
    (work / "intake.yaml").write_text(json.dumps({"namespaces": [f"bench-intake-{run}-*"], "categories": ["bench-*"],
                                                  "maxAlerts": 100,
                                                  # a storm of 100 groups in 4 namespaces: above the default 30/h
                                                  "rateLimits": {"perNamespace": 10_000}}))
    port = free_port()
    log = open(CACHE / "operator-bench-intake.log", "wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "reliability_center.operator"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "RC_NAMESPACES": "bench-none" if args.no_reconcile else f"bench-intake-{run}-*",
             "RC_METRICS_PORT": "0", "RC_INTAKE_PORT": str(port), "RC_INTAKE_TOKEN_FILE": str(work / "token"),
             "RC_INTAKE_CONFIG": str(work / "intake.yaml"), "RC_INTAKE_ALLOW_PLAIN_HTTP": "true"})
    # Whatever happens below (a timeout, an assertion), the operator does not outlive the bench.
    atexit.register(lambda: operator.poll() is None and os.killpg(operator.pid, signal.SIGTERM))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or operator.poll() is not None:
            raise SystemExit(f"the receiver did not start; see {CACHE / 'operator-bench-intake.log'}")
        time.sleep(0.1)
    rss_idle = peak_rss_mb(operator.pid)

    # The storm: per group, what each of two Alertmanager peers posts, in order.
    rng = random.Random(7)
    groups, expected = [], {}
    for g in range(args.groups):
        ns, tenant = namespaces[g % len(namespaces)], f"t{rng.randrange(args.tenants):03d}"
        labels = {"namespace": ns, "category": category, "tenant": tenant, "module": "search"}
        key = f'{{}}:{{namespace="{ns}", tenant="{tenant}", group="{g}"}}'
        fps = [hashlib.sha256(f"{run}-{g}-{a}".encode()).hexdigest()[:16] for a in range(args.alerts)]
        firing = [alert(fp, {**labels, "pod": f"p{a}"}) for a, fp in enumerate(fps)]
        sequence = [post_body(key, labels, firing[:3]), post_body(key, labels, firing)]
        resolved = g % 3 == 0
        if resolved:
            sequence.append(post_body(key, labels, [alert(fps[0], {**labels, "pod": "p0"}, "resolved")]))
        groups.append(sequence)
        name = f"{category}-{tenant}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
        expected[(ns, name)] = (set(fps), {fps[0]} if resolved else set())
    alerts_posted = sum(len(json.loads(b)["alerts"]) for seq in groups for b in seq) * 2
    codes: dict[int, int] = {}
    retries = 0
    lock = threading.Lock()

    local = threading.local()

    def peer(sequence: list[bytes]) -> None:
        nonlocal retries
        if not hasattr(local, "client"):  # one client per thread: making one per post costs more than posting
            local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}",
                                                                "Content-Type": "application/json"}, timeout=60)
        for body in sequence:
            for attempt in range(20):
                code = local.client.post("/alerts", content=body).status_code
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    retries += attempt > 0
                if code != 503:  # Alertmanager retries a 5xx, with backoff
                    break
                time.sleep(0.05 * 2 ** min(attempt, 5))

    tasks = [seq for seq in groups for _ in range(2)]  # two peers
    rng.shuffle(tasks)
    seen: dict[tuple[str, str], float] = {}

    def watch() -> None:  # the oracle: the apiserver's own events, not the receiver's answers
        stream = watch_api.Watch()
        for event in stream.stream(custom.list_cluster_custom_object, "reliability.center", "v1alpha1", "incidents",
                                   label_selector="reliability.center/source=alertmanager", timeout_seconds=120):
            meta = event["object"]["metadata"]
            key = (meta["namespace"], meta["name"])
            if key in expected:
                seen.setdefault(key, time.perf_counter() - started)
            if len(seen) == len(expected):
                stream.stop()

    from kubernetes import client as kclient, config as kconfig, watch as watch_api

    kconfig.load_kube_config(config_file=os.environ["KUBECONFIG"])
    custom = kclient.CustomObjectsApi()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(1.0)  # the watch is established before the first post
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(peer, tasks))
    answered = time.perf_counter() - started
    watcher.join(timeout=120)
    all_exist = max(seen.values()) if len(seen) == len(expected) else float("nan")

    # None lost, none doubled, every signal there and the resolved ones resolved.
    found = [i for ns in namespaces for i in kube.list("Incident", ns)]
    names = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in found]
    problems = []
    if sorted(names) != sorted(expected):
        problems.append(f"incidents: {len(names)} found, {len(expected)} expected; "
                        f"missing {sorted(set(expected) - set(names))[:3]}, extra {sorted(set(names) - set(expected))[:3]}")
    for item in found:
        key = (item["metadata"]["namespace"], item["metadata"]["name"])
        if key not in expected:
            continue
        fps, resolved = expected[key]
        signals = {s["fingerprint"]: s for s in item["spec"]["signals"]}
        if set(signals) != fps or {fp for fp, s in signals.items() if s.get("resolved")} != resolved:
            problems.append(f"{key}: signals {sorted(signals)} resolved "
                            f"{sorted(fp for fp, s in signals.items() if s.get('resolved'))}")
    rss = peak_rss_mb(operator.pid)
    operator.terminate()
    operator.wait(timeout=30)
    for ns in [*namespaces, baseline_ns]:
        kubectl("delete", "namespace", ns, "--wait=false")
    kubectl("delete", "runbook", f"rb-{category}", "--wait=false")

    raw50 = pct(raw, 0.5)
    result = {
        "groups": args.groups, "reconciles": not args.no_reconcile, "incidents": len(expected), "alerts": args.groups * args.alerts,
        "alerts_posted_with_duplicates": alerts_posted, "posts": sum(codes.values()), "status_codes": codes,
        "retried_503": retries, "concurrency": args.concurrency,
        "all_incidents_exist_s": round(all_exist, 3), "all_posts_answered_s": round(answered, 3),
        "raw_create_ms": {"p50": round(raw50 * 1e3, 2), "p99": round(pct(raw, 0.99) * 1e3, 2)},
        "baseline_sequential_s": round(raw50 * len(expected), 3),
        "baseline_parallel_s": round(raw_parallel, 3),
        "ratio_to_sequential": round(all_exist / (raw50 * len(expected)), 2),
        "ratio_to_parallel": round(all_exist / raw_parallel, 2),
        "operator_rss_idle_mb": round(rss_idle), "operator_peak_rss_mb": round(rss),
        "problems": problems,
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "intake.json").write_text(json.dumps(result, indent=2))
    if problems or codes.keys() - {200, 503}:
        raise SystemExit("the storm lost, doubled or refused something")


if __name__ == "__main__":
    main()
