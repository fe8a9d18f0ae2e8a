"""What a Prometheus answer says: parsing an instant query's vector, who breaches a threshold, and
whether a step's check saw its signal move (in the manner of an Argo Rollouts analysis). Pure: the
HTTP call is ``operator/prometheus.py``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Comparison = Literal["above", "below"]
Direction = Literal["decrease", "increase"]


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Answer:
    """An instant query's samples, or None and why Prometheus did not answer."""

    samples: tuple[Sample, ...] | None
    error: str = ""


def parse_vector(body: Any) -> Answer:
    """The body of ``/api/v1/query`` as samples (NaN dropped: it compares with nothing)."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        kind = body.get("errorType") if isinstance(body, dict) else None
        return Answer(None, f"Prometheus refused the query: {kind}: {error}" if error else
                      "Prometheus answered something that is not a query result")
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar":
        result = [{"metric": {}, "value": result}]
    if not isinstance(result, list):
        return Answer(None, f"Prometheus answered a {data.get('resultType')}, not an instant vector")
    samples = []
    for series in result:
        value = float(series["value"][1])
        if not math.isnan(value):
            samples.append(Sample(dict(series.get("metric") or {}), value))
    return Answer(tuple(samples))


def crosses(value: float, threshold: float, comparison: Comparison) -> bool:
    return value > threshold if comparison == "above" else value < threshold


def breaches(samples: tuple[Sample, ...], threshold: float, comparison: Comparison,
             by: tuple[str, ...] = ("tenant", "module")) -> dict[str, dict[str, dict[str, float]]]:
    """Per label of ``by`` (tenant, module): each value that breaches, with its worst sample and how far past
    the threshold it is (``excess``, always positive). A series without the label is grouped under ``-``."""
    out: dict[str, dict[str, dict[str, float]]] = {label: {} for label in by}
    for sample in samples:
        if not crosses(sample.value, threshold, comparison):
            continue
        for label in by:
            key = sample.labels.get(label) or "-"
            seen = out[label].get(key)
            if seen is None or crosses(sample.value, seen["value"], comparison):
                out[label][key] = {"value": round(sample.value, 6), "excess": round(abs(sample.value - threshold), 6)}
    return out


def worst(samples: tuple[Sample, ...], direction: Direction) -> float | None:
    """The value a check judges: with several series, the one furthest from where it should go."""
    values = [s.value for s in samples]
    if not values:
        return None
    return max(values) if direction == "decrease" else min(values)


def moved(baseline: float, latest: float, direction: Direction) -> bool:
    return latest < baseline if direction == "decrease" else latest > baseline


@dataclass(frozen=True)
class CheckVerdict:
    outcome: Literal["improved", "watching", "not-improved"]
    message: str
    wake_in: float = 0.0


def judge(direction: Direction, baseline: float | None, latest: float | None, since: str, within: float,
          interval: float, now: str) -> CheckVerdict:
    """Did the signal move in ``direction`` from ``baseline`` (measured as the step ran)? Watched until
    ``within`` seconds after ``since``; no data until then counts as not improved: a human looks."""
    elapsed = (_moment(now) - _moment(since)).total_seconds()
    left = within - elapsed
    if baseline is not None and latest is not None and moved(baseline, latest, direction):
        return CheckVerdict("improved", f"{direction}d from {baseline:g} to {latest:g}")
    if left <= 0:
        if baseline is None or latest is None:
            return CheckVerdict("not-improved", f"no value to judge within {within:g}s "
                                                f"(baseline {_shown(baseline)}, last {_shown(latest)})")
        return CheckVerdict("not-improved", f"did not {direction} within {within:g}s: "
                                            f"baseline {baseline:g}, last {latest:g}")
    return CheckVerdict("watching", f"waiting for it to {direction} from {_shown(baseline)} "
                                    f"(last {_shown(latest)}, {left:.0f}s left)", min(interval, left))


def _shown(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
