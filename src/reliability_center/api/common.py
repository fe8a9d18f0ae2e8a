"""Shared pieces of the custom resources: group, base model, conditions."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "reliability.center"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: A DNS-1123 label: tenant names, step names, module names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Durations are written the way Kubernetes users write them: 30s, 5m, 2h.
DURATION = r"^[0-9]+(s|m|h)$"
#: Kubernetes caps a condition message at 32768 bytes; we keep them short.
MESSAGE_LIMIT = 1024


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the apiserver stores it (camelCase, no unset defaults)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL rule for ``x-kubernetes-validations``: the apiserver shows ``message``."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def free_form(description: str) -> Any:
    """A field that holds an arbitrary object (action params, evidence)."""
    return Field(
        default=None,
        description=description,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str = Field(default="", max_length=1024)
    message: str = Field(default="", max_length=MESSAGE_LIMIT)
    last_transition_time: str | None = None
    observed_generation: int | None = Field(default=None, ge=0)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """A Kubernetes MicroTime (Events' eventTime, Leases' renewTime)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> list[Condition]:
    """Return conditions with ``type_`` set; lastTransitionTime moves only when status changes."""
    message = message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"
    previous = next((c for c in conditions if c.type == type_), None)
    kept = previous is not None and previous.status == status
    updated = Condition(
        type=type_, status=status, reason=reason, message=message, observed_generation=generation,
        last_transition_time=previous.last_transition_time if kept and previous else (now or now_iso()),
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c is previous else c for c in conditions]


class ObjectMeta(Model):
    """The part of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: str | None = None
