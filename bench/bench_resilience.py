"""Throughput, failover and apiserver-loss recovery, against the real local cluster.

Reported beside the raw apiserver write round trip measured in the same run:

- throughput: N incidents (default 500) created at once; the time until every one is
  Mitigated, and the peak RSS of the operator;
- failover: two replicas electing a leader (operator/leadership.py); the leader is
  SIGKILLed while an incident waits; the time from the kill to the standby's first
  write (an audit Event naming it), over several kills, and each replica's peak RSS;
- apiserver loss: the kube-apiserver is killed for 10 s while an incident's restart
  waits on its rollout; the time from the apiserver being ready again to the
  incident being Mitigated.

    python bench/bench_resilience.py                  # all three
    python bench/bench_resilience.py --only failover  # one of throughput, failover, outage
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from measure import cpu_s, peak_rss_mb, pct, use_cluster  # bench/, the script's own directory

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
CACHE = pathlib.Path(os.environ.get("RC_CACHE", pathlib.Path.home() / ".cache" / "reliability-center"))


def apiserver_pid() -> int:
    return int(subprocess.run(["pgrep", "-f", "-o", "kube-apiserver"], capture_output=True, text=True).stdout.split()[0])


def operator(log: pathlib.Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "reliability_center.operator"], cwd=ROOT,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RC_METRICS_PORT": "0", "PYTHONPATH": str(ROOT / "src"), **env})


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)


class Bench:
    def __init__(self) -> None:
        use_cluster()
        from reliability_center.gateway import Kube
        from tests.support.cluster import apply_docs, kubectl, load_yaml

        self.kube, self.kubectl, self.apply_docs, self.load_yaml = Kube(), kubectl, apply_docs, load_yaml
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        apply_docs(None, [d for p in sorted((ROOT / "runbooks").glob("*.yaml")) for d in load_yaml(p)])

    def namespace(self, schedulers: int = 0, min_ready: int = 0) -> str:
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", ns)
        self.apply_docs(ns, self.load_yaml("examples/protected-app/app.yaml"))
        labels = {"reliability.center/role": "scheduler", "reliability.center/module": "bench"}
        if not schedulers:
            return ns
        self.apply_docs(ns, [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"sched-{i}",
                                                                                         "labels": labels},
                              "spec": {"replicas": 1, "minReadySeconds": min_ready,
                                       "selector": {"matchLabels": {"app": f"sched-{i}"}},
                                       "template": {"metadata": {"labels": {"app": f"sched-{i}", **labels}},
                                                    "spec": {"containers": [{"name": "c",
                                                                             "image": "registry.invalid/s:1"}]}}}}
                             for i in range(schedulers)])
        return ns

    def runbook(self, steps: list[dict]) -> str:
        category = f"b{uuid.uuid4().hex[:8]}"
        self.apply_docs(None, [{"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
                                "metadata": {"name": f"rb-{category}", "labels": {"reliability.center/bench": "true"}},
                                "spec": {"match": {"category": category}, "limits": {"maxRunsPerHour": 1000,
                                                                                     "maxRefires": 100},
                                         "steps": steps}}])
        return category

    def ready(self, category: str) -> None:
        """The operator is up once it has reported on the runbook."""
        from reliability_center.gateway import Ref

        deadline = time.monotonic() + 60
        while not (self.kube.get(Ref("Runbook", None, f"rb-{category}")) or {}).get("status"):
            if time.monotonic() > deadline:
                raise SystemExit("the operator did not start")
            time.sleep(0.1)

    def incident(self, ns: str, name: str, category: str, tenant: str, module: str = "search") -> None:
        self.kube.create({"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
                          "metadata": {"name": name, "namespace": ns},
                          "spec": {"category": category, "severity": "high", "tenant": tenant, "module": module}})

    def phases(self, ns: str) -> dict[str, str]:
        return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in self.kube.list("Incident", ns)}

    def requests(self) -> Counter:
        """The apiserver's own count of the requests it answered, by verb and resource (all clients)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.kubectl("get", "--raw", "/metrics").stdout
        counts: Counter = Counter()
        for family in text_string_to_metric_families(text):
            if family.name == "apiserver_request":  # apiserver_request_total, its _total suffix taken off
                for sample in family.samples:
                    if sample.name == "apiserver_request_total":
                        resource = sample.labels.get("resource", "") + (
                            f"/{sample.labels['subresource']}" if sample.labels.get("subresource") else "")
                        counts[(sample.labels.get("verb", ""), resource)] += int(sample.value)
        return counts

    def writes(self, ns: str, since) -> dict:
        """The operator's writes in ``ns`` by the apiserver's audit log: per resource and verb, and the patches
        of each object written more than once per ten incidents (the shared stores), real and dry-run."""
        from tests.support.audit import AuditLog

        logged = [w for w in AuditLog()._read(since) if w.namespace == ns and w.replica is not None]
        kinds = Counter(f"{w.verb} {w.resource}{'/' + w.subresource if w.subresource else ''}"
                        f"{' (dry-run)' if w.dry_run else ''}" for w in logged)
        patched = Counter((w.name, w.dry_run) for w in logged if w.verb == "patch" and w.resource == "configmaps")
        return {"by_kind": dict(kinds.most_common()),
                "store_patches": {f"{name}{' (dry-run)' if dry else ''}": n for (name, dry), n in patched.items()
                                  if n > 1}}

    def raw_rtt(self, ns: str, n: int = 100) -> tuple[float, float]:
        from reliability_center.gateway import Ref

        samples = []
        for i in range(n):
            start = time.perf_counter()
            self.kube.merge_patch(Ref("ConfigMap", ns, "tenant-acme"), {"data": {"bench": str(i)}}, manager="bench")
            samples.append(time.perf_counter() - start)
        return pct(samples, 0.5) * 1e3, pct(samples, 0.99) * 1e3

    # ------------------------------------------------------------------ the three measures
    def throughput(self, count: int) -> dict:
        ns = self.namespace()
        category = self.runbook([{"name": "flags", "level": 1, "action": "feature-flags-off",
                                  "params": {"modules": ["search"]}},
                                 {"name": "breaker", "level": 1, "action": "circuit-breaker",
                                  "params": {"integration": "payments-gateway"}}])
        raw = self.raw_rtt(ns)
        proc = operator(CACHE / "operator-bench-throughput.log", {"RC_NAMESPACES": ns})
        self.ready(category)
        from tests.support.audit import AuditLog

        since, requests = AuditLog().position(), self.requests()
        api_cpu = cpu_s(apiserver_pid())
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self.incident(ns, f"inc-{i:04d}", category, f"t{i:04d}"), range(count)))
        created = time.monotonic() - started
        while sum(p == "Mitigated" for p in self.phases(ns).values()) < count:
            if time.monotonic() - started > 600:
                raise SystemExit("throughput: not every incident mitigated in 10 min")
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        rss, op_cpu, api_cpu = peak_rss_mb(proc.pid), cpu_s(proc.pid), cpu_s(apiserver_pid()) - api_cpu
        requests = self.requests() - requests
        stop(proc)
        writes = self.writes(ns, since)
        self.kubectl("delete", "namespace", ns, "--wait=false")
        return {"incidents": count, "created_in_s": round(created, 1), "all_mitigated_in_s": round(elapsed, 1),
                "per_second": round(count / elapsed, 1), "raw_write_ms": raw, "operator_peak_rss_mb": round(rss),
                "operator_cpu_s": round(op_cpu, 1), "apiserver_cpu_s": round(api_cpu, 1),
                "operator_writes": writes,
                # Every client's (other sessions on a shared cluster included): the reads are only counted here.
                "apiserver_requests": {f"{verb} {resource}": n for (verb, resource), n in requests.most_common(20)}}

    def failover(self, kills: int, lease: float) -> dict:
        ns = self.namespace(schedulers=2, min_ready=2)
        category = self.runbook([{"name": "restart", "level": 1, "action": "restart-one-by-one",
                                  "params": {"role": "scheduler", "modules": ["bench"]}},
                                 {"name": "flags", "level": 1, "action": "feature-flags-off",
                                  "params": {"modules": ["search"]}}])
        raw = self.raw_rtt(ns)
        log = CACHE / "operator-bench-failover.log"
        # The Lease's timings keep client-go's proportions: renew deadline 2/3 of it, retry every 2 s.
        env = {"RC_NAMESPACES": ns, "RC_LEADER_ELECTION": "true", "RC_LEADER_NAMESPACE": ns,
               "RC_LEADER_LEASE_SECONDS": str(lease), "RC_LEADER_RENEW_DEADLINE": str(round(lease * 2 / 3, 1)),
               "RC_LEADER_RETRY_PERIOD": "2"}
        procs = [operator(log, env), operator(log, env)]
        times, rss, rng = [], [], random.Random(1)
        for k in range(kills):
            name = f"inc-{k}"
            self.incident(ns, name, category, "acme")
            holder = self.holder(ns)
            while holder is None:
                time.sleep(0.1)
                holder = self.holder(ns)
            time.sleep(rng.uniform(0.3, 1.5))
            leader = next(p for p in procs if f"-{p.pid}-" in holder)
            rss.append(peak_rss_mb(leader.pid))
            killed = datetime.now().astimezone()
            stop(leader, signal.SIGKILL)
            procs.remove(leader)
            first = None
            while first is None:
                first = self.first_write_after(ns, killed, exclude=holder)
                time.sleep(0.1)
            times.append((first - killed).total_seconds())
            procs.append(operator(log, env))
            while self.phases(ns).get(name) != "Mitigated":
                time.sleep(0.2)
        rss += [peak_rss_mb(p.pid) for p in procs]
        for p in procs:
            stop(p)
        self.kubectl("delete", "namespace", ns, "--wait=false")
        return {"kills": kills, "failover_s": {"p50": round(pct(times, 0.5), 1), "max": round(max(times), 1)},
                "lease_duration_s": lease, "raw_write_ms": raw, "replica_peak_rss_mb": round(max(rss))}

    def holder(self, ns: str) -> str | None:
        from reliability_center.gateway import Ref

        lease = self.kube.get(Ref("Lease", ns, "reliability-center-leader"))
        return ((lease or {}).get("spec") or {}).get("holderIdentity") or None

    def first_write_after(self, ns: str, moment: datetime, exclude: str) -> datetime | None:
        times = [datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")) for e in self.kube.list("Event", ns)
                 if e.get("reason") == "Audit" and e.get("eventTime") and e.get("reportingInstance") != exclude]
        later = [t for t in times if t > moment]
        return min(later) if later else None

    def outage(self) -> dict:
        from tests.support import apiserver

        ns = self.namespace(schedulers=2, min_ready=3)
        category = self.runbook([{"name": "restart", "level": 1, "action": "restart-one-by-one",
                                  "params": {"role": "scheduler", "modules": ["bench"]}}])
        raw = self.raw_rtt(ns)
        proc = operator(CACHE / "operator-bench-outage.log", {"RC_NAMESPACES": ns})
        self.ready(category)
        self.incident(ns, "outage", category, "acme")
        while not any(s.get("state") == "Running" for i in self.kube.list("Incident", ns)
                      for s in (i.get("status") or {}).get("steps") or []):
            time.sleep(0.05)
        how = apiserver.stop()
        time.sleep(10)
        apiserver.start(*how)
        back = time.monotonic()
        while self.phases(ns).get("outage") != "Mitigated":
            if time.monotonic() - back > 300:
                raise SystemExit("outage: not mitigated 5 min after the apiserver came back")
            time.sleep(0.1)
        recovered = time.monotonic() - back
        stop(proc)
        self.kubectl("delete", "namespace", ns, "--wait=false")
        return {"outage_s": 10, "mitigated_after_apiserver_ready_s": round(recovered, 1), "raw_write_ms": raw,
                "note": "includes what is left of the mitigation: the second restart and its rollout (minReadySeconds 3)"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["throughput", "failover", "outage"])
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lease-seconds", type=float, default=15.0, help="RC_LEADER_LEASE_SECONDS (15, the default)")
    args = parser.parse_args()
    bench = Bench()
    results = {}
    if args.only in (None, "throughput"):
        results["throughput"] = bench.throughput(args.incidents)
        print(json.dumps(results["throughput"]))
    if args.only in (None, "failover"):
        results["failover"] = bench.failover(args.kills, args.lease_seconds)
        print(json.dumps(results["failover"]))
    if args.only in (None, "outage"):
        results["outage"] = bench.outage()
        print(json.dumps(results["outage"]))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / "resilience.json"  # a partial run (--only) updates its own part
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**previous, **results}, indent=2))


if __name__ == "__main__":
    main()
