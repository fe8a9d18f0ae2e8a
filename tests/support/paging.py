"""The shipped paging rules (manifests/prometheus/paging-rules.yaml), with some `for:` durations
changed the way the chart's pagingRules.for values change them: expressions and annotations as shipped."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tests.support.cluster import ROOT

PAGING_RULES = ROOT / "manifests" / "prometheus" / "paging-rules.yaml"


def paging_rules(for_: dict[str, str] | None = None) -> dict[str, Any]:
    """The rules file's document; ``for_``: alert name → its `for:` (each name must be a shipped alert)."""
    doc = copy.deepcopy(yaml.safe_load(PAGING_RULES.read_text()))
    rules = {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"]}
    unknown = set(for_ or {}) - set(rules)
    assert not unknown, f"not alerts of {PAGING_RULES.name}: {sorted(unknown)}"
    for name, duration in (for_ or {}).items():
        rules[name]["for"] = duration
    return doc
