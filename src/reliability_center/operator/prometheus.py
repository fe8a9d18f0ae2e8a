"""The Prometheus HTTP API, as Level 1 steps read it: instant queries, answered or not with why.

Only the request is here; what the answer means is ``engine/measure.py``'s.
"""

from __future__ import annotations

import httpx

from reliability_center.engine.measure import Answer, parse_vector

#: Seconds one query may take: a step waits for it, and a Prometheus that hangs must not hold the step.
TIMEOUT = 5.0


class Prometheus:
    """``RC_PROMETHEUS_URL``; an empty URL answers every query with why there is none."""

    def __init__(self, url: str, timeout: float = TIMEOUT):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> Answer:
        if not self.url:
            return Answer(None, "no Prometheus configured (RC_PROMETHEUS_URL)")
        try:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout)
            return parse_vector(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            return Answer(None, f"Prometheus at {self.url} did not answer: {exc}")
