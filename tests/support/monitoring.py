"""A real Prometheus and Alertmanager (Debian's packages) as local processes, fed by an exporter.

The end-to-end path an alert takes: ``Exporter.set`` moves a gauge over a rule's threshold →
Prometheus (scrape and evaluation every 1 s) fires → Alertmanager (one group per namespace,
category, tenant and module; group_wait and group_interval 1 s) posts to the webhook URL with
``Authorization: Bearer <token file>``; setting the gauge back posts the same alert resolved.
Session fixture (tests/conftest.py)::

    @pytest.fixture(scope="session")
    def monitoring() -> Iterator[Monitoring]:
        with Monitoring(intake_url=INTAKE_URL, token_file=INTAKE_TOKEN_FILE) as running:
            yield running

and a test::

    monitoring.add_rule("RcErrorRatioHigh", 'rc_test_error_ratio{namespace="t-x"} > 0.5',
                        labels={"severity": "critical"}, annotations={"summary": "errors"})
    monitoring.exporter.set(0.9, namespace="t-x", tenant="acme", module="billing", category="alert-err")
    ...  # the operator's intake gets the alert; the test waits for its Incident
    monitoring.exporter.set(0.0, namespace="t-x", tenant="acme", module="billing", category="alert-err")

What Alertmanager 0.25 posts (tests/unit/fixtures/alertmanager_{firing,resolved}.json are real ones)::

    {"receiver": "intake", "status": "firing" | "resolved",
     "alerts": [{"status": "firing" | "resolved", "labels": {"alertname": ..., "namespace": ...,
                 "tenant": ..., "module": ..., "category": ..., <rule labels>},
                 "annotations": {...}, "startsAt": RFC 3339, "endsAt": RFC 3339 ("0001-01-01T00:00:00Z"
                 while firing), "generatorURL": ..., "fingerprint": "<16 hex>"}],
     "groupLabels": {<the group_by labels>}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": ..., "version": "4", "groupKey": ..., "truncatedAlerts": 0}

When Prometheus or Alertmanager cannot start, ``start`` raises with the log tail: tests fail, never skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import prometheus_client
import yaml

from tests.support.cluster import CACHE
from tests.support.processes import LocalProcesses, free_port
from tests.support.sample_app import SampleApp

#: Same worker id as tests/conftest.py (not imported from there: it will import this module).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
LABELS = ("namespace", "tenant", "module", "category")
GROUP_BY = ["namespace", "category", "tenant", "module"]


class Exporter:
    """One gauge on a registry of its own, served on 127.0.0.1 at a free port."""

    def __init__(self, name: str = "rc_test_error_ratio", labels: tuple[str, ...] = LABELS):
        self.labels = labels
        self.registry = prometheus_client.CollectorRegistry()
        self.gauge = prometheus_client.Gauge(name, "Test signal the alert rules watch.", labels,
                                             registry=self.registry)
        # Port 0: the kernel picks a free one, no race with another process between choosing and binding.
        self._server, _ = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = self._server.server_port
        self.target = f"127.0.0.1:{self.port}"

    def set(self, value: float, **labels: str) -> None:
        self.gauge.labels(**labels).set(value)

    def remove(self, **labels: str) -> None:
        self.gauge.remove(*(labels[name] for name in self.labels))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Monitoring(LocalProcesses):
    """Prometheus scraping ``exporter`` and alerting to an Alertmanager that posts to ``intake_url``."""

    def __init__(self, intake_url: str, token_file: str | os.PathLike[str], directory: Path | None = None,
                 exporter: Exporter | SampleApp | None = None, startup_timeout: float = 30,
                 prometheus_port: int | None = None, targets: dict[str, str] | None = None):
        super().__init__(Path(directory or CACHE / f"monitoring-{WORKER}"), startup_timeout)
        self.intake_url = intake_url
        self.token_file = Path(token_file).resolve()
        self.exporter = exporter
        self.prometheus_port = prometheus_port
        """Fixed when the operator was told its URL before Prometheus starts (RC_PROMETHEUS_URL)."""
        self.targets = targets or {}
        """More to scrape besides the exporter: job name → host:port (an operator's metrics endpoint)."""
        self.prometheus_url = self.alertmanager_url = ""

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Monitoring:
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "rules").mkdir(parents=True)
        self.exporter = self.exporter or Exporter()
        am_port, prom_port = free_port(), self.prometheus_port or free_port()
        self.alertmanager_url = f"http://127.0.0.1:{am_port}"
        self.prometheus_url = f"http://127.0.0.1:{prom_port}"
        try:
            self._write("alertmanager.yml", {
                "route": {"receiver": "intake", "group_by": GROUP_BY, "group_wait": "1s", "group_interval": "1s",
                          "repeat_interval": "1h"},
                "receivers": [{"name": "intake", "webhook_configs": [{
                    "url": self.intake_url, "send_resolved": True,
                    "http_config": {"authorization": {"type": "Bearer",
                                                      "credentials_file": str(self.token_file)}}}]}]})
            self._spawn("alertmanager", [
                "prometheus-alertmanager", f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                f"--web.external-url={self.alertmanager_url}",  # the payload's externalURL, not the hostname
                "--cluster.listen-address="])  # empty: no gossip port, so xdist workers never clash
            self._write("prometheus.yml", {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(self.dir / "rules" / "*.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                   for job, target in {"exporter": self.exporter.target, **self.targets}.items()]})
            self._spawn("prometheus", [
                "prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'prometheus-data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                f"--web.external-url={self.prometheus_url}", "--web.enable-lifecycle",
                # Alerts are dropped while Prometheus has no Alertmanager (at start, and for up to 5 s after
                # each reload); resent every second instead of every minute, the next one gets through.
                "--rules.alert.resend-delay=1s"])
            for name, url in (("alertmanager", self.alertmanager_url), ("prometheus", self.prometheus_url)):
                self._wait(f"{name} to be ready", lambda url=url: self._ok(f"{url}/-/ready"), name)
            self._wait("prometheus to scrape the exporter", lambda: self.query('up{job="exporter"} == 1'),
                       "prometheus")
            self._wait_for_alertmanager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminates Prometheus and Alertmanager, and stops the exporter's server."""
        self._stop_processes()
        if self.exporter:
            self.exporter.stop()

    def __enter__(self) -> Monitoring:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules and queries ----------------------------------------------------------------------
    def add_rule(self, name: str, expr: str, for_: str = "0s", labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None) -> None:
        """An alerting rule in a file (and group) of its own (same name: replaced); returns once Prometheus
        evaluates it and can send alerts again (a reload drops its Alertmanager until rediscovered, ~5 s)."""
        rule = {"alert": name, "expr": expr, "for": for_, "labels": labels or {}, "annotations": annotations or {}}
        self.add_rules(name, {"groups": [{"name": name, "rules": [rule]}]})

    def add_rules(self, name: str, rules: dict[str, Any]) -> None:
        """A rules file (Prometheus' format) of its own (same name: replaced); returns once Prometheus
        evaluates each of its groups and can send alerts again."""
        self._write(f"rules/{name}.yml", rules)
        reply = self._http.post(f"{self.prometheus_url}/-/reload")
        assert reply.status_code == 200, f"prometheus did not reload the rules: {reply.text}\n{self.log('prometheus')}"
        wanted = {group["name"] for group in rules["groups"]}
        self._wait(f"prometheus to evaluate rules {name}", lambda: wanted <= {
            group["name"] for group in self._get(f"{self.prometheus_url}/api/v1/rules")["data"]["groups"]
            if all(r.get("health") == "ok" for r in group["rules"])}, "prometheus")  # "unknown" until evaluated
        self._wait_for_alertmanager()

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self._get(f"{self.prometheus_url}/api/v1/query", query=promql)["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (API v2)."""
        return self._get(f"{self.alertmanager_url}/api/v2/alerts")

    # -- helpers --------------------------------------------------------------------------------
    def _write(self, relative: str, doc: dict[str, Any]) -> None:
        path = self.dir / relative
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        tmp.replace(path)  # Prometheus may reload at any time: it never sees half a file

    def _wait_for_alertmanager(self) -> None:
        self._wait("prometheus to find the alertmanager", lambda: self._get(
            f"{self.prometheus_url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"], "prometheus")

    def _get(self, url: str, **params: str) -> Any:
        reply = self._http.get(url, params=params)
        reply.raise_for_status()
        return reply.json()


def latency_histogram(monitoring: Monitoring) -> prometheus_client.Histogram:
    """The sample app's request latency by namespace, tenant and module, on the session exporter's registry.
    One per registry: a name registers once, and every test that reads it (Level 1's blast radius, the
    seed runbooks' SLO gate) shares it, each in its own namespace."""
    registry = monitoring.exporter.registry
    found = getattr(registry, "_rc_latency", None)
    if found is None:
        found = prometheus_client.Histogram(
            "http_request_duration_seconds", "Request latency (sample app).", ["namespace", "tenant", "module"],
            buckets=(0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.0, 5.0), registry=registry)
        registry._rc_latency = found  # type: ignore[attr-defined]
    return found
