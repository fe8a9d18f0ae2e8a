"""Alertmanager's webhook payload (version 4), and the checks made on the raw body before parsing it.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: A JSON string (escapes included), one bracket, or a quote no later quote closes. The string
#: pattern is the "unrolled loop": no backtracking blow-up.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.S)


def too_deep(body: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit``, counted on the raw bytes: a parser would
    recurse once per level (100,000 ``[`` must not reach json or pydantic)."""
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
        elif token == b'"':
            # Unterminated: the rest is inside a string, which json.loads refuses without nesting
            # further. Scanning on would try each later quote to the end again (quadratic).
            return False
    return False


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Alert(_Wire):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None  # "0001-01-01T00:00:00Z" while firing
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(pattern=r"^[0-9a-f]{1,64}$")


class Webhook(_Wire):
    version: Literal["4"]
    group_key: str = Field(min_length=1)
    truncated_alerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    common_annotations: dict[str, str] = Field(default_factory=dict)
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert]
