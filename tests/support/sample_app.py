"""The sample application's metrics, as manifests/prometheus/detection-rules.yaml reads them, served by a
small prometheus_client HTTP server whose values the test sets (kwok runs no containers, so no app serves them).

Gauges are set; counters grow at a rate the test sets, from the moment it sets it (so Prometheus'
``rate`` and ``increase`` see real traffic)::

    app = SampleApp()
    app.count("http_request_duration_seconds_count", 10, namespace=ns, tenant="acme", module="api")
    app.gauge("job_queue_depth", 95, namespace=ns, tenant="acme", module="api", queue="exports")

``scaled`` is the one transform the end-to-end test applies to the shipped rules: every range
(``[5m]``) and every ``for`` divided by 60, a minute of the shipped rules being a second there (the
harness scrapes and evaluates every second). The real windows are unit-tested by promtool
(tests/rules/detection-rules.test.yaml).
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import prometheus_client
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_RANGE = re.compile(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)\]")


def seconds(duration: str) -> float:
    """A Prometheus duration (``1h30m``) in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def _shorter(duration: str, factor: int) -> str:
    return f"{round(seconds(duration) * 1000 / factor)}ms"


def scaled(rules: dict[str, Any], factor: int = 60) -> dict[str, Any]:
    """The rules with every range selector and every ``for`` divided by ``factor``; nothing else changes."""
    out = copy.deepcopy(rules)
    for group in out["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(lambda m: f"[{_shorter(m.group(1), factor)}]", str(rule["expr"]))
            if "for" in rule:
                rule["for"] = _shorter(rule["for"], factor)
    return out


class _Series(Collector):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (name, sorted labels) -> (value at `since`, growth per second, since)
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float, float]] = {}

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        with self.lock:
            families: dict[str, Metric] = {}
            for (name, labels), (value, per_second, since) in sorted(self.values.items()):
                family = families.setdefault(name, Metric(name, "sample application", "unknown"))
                family.add_sample(name, dict(labels), value + per_second * (now - since))
        yield from families.values()


class SampleApp:
    """The sample application's series on a registry of their own, served on 127.0.0.1 at a free port."""

    def __init__(self) -> None:
        self._series = _Series()
        self.registry = prometheus_client.CollectorRegistry()
        self.registry.register(self._series)
        self._server, _ = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = self._server.server_port
        self.target = f"127.0.0.1:{self.port}"

    def gauge(self, name: str, value: float, **labels: str) -> None:
        with self._series.lock:
            self._series.values[(name, tuple(sorted(labels.items())))] = (value, 0.0, time.monotonic())

    def count(self, name: str, per_second: float, **labels: str) -> None:
        """The counter grows ``per_second`` from now on (0: it stays where it is; it never goes down)."""
        key, now = (name, tuple(sorted(labels.items()))), time.monotonic()
        with self._series.lock:
            value, rate, since = self._series.values.get(key, (0.0, 0.0, now))
            self._series.values[key] = (value + rate * (now - since), per_second, now)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
