"""Step parameters templated from the incident's alert labels: ``{{ labels.integration }}``.

The syntax is deliberately tiny, with nothing evaluated: ``{{ labels.NAME }}`` is the value the
incident's signals carry for label ``NAME``, and ``{{ incident.FIELD }}`` one of the incident's own
fields (tenant, module, namespace, name, category, severity). Any other expression between double
braces is an error, found when the runbook is checked; a label no signal carries, or that two
signals give different values, is an error when the step runs: the step fails saying which.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reliability_center.api.incident import Incident

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
LABEL = re.compile(r"labels\.([A-Za-z_][A-Za-z0-9_]*)")
FIELD = re.compile(r"incident\.(tenant|module|namespace|name|category|severity)")


class TemplateError(ValueError):
    """A template the step cannot be run with; ``reason`` is the step's failure reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """What templates may read: each label's distinct values among the signals, the incident's fields."""

    labels: dict[str, list[str]] = field(default_factory=dict)
    incident: dict[str, str | None] = field(default_factory=dict)
    signals: tuple[str, ...] = ()
    """The names of the signals the labels were read from (for the error messages)."""


def context(incident: Incident, signal_names: Iterable[str] = ()) -> Context:
    """The labels of the incident's signals (only those named, when the step names some and the incident
    carries them: a step ``when: signals: [integration_errors]`` reads that alert's labels)."""
    wanted = set(signal_names)
    signals = [s for s in incident.spec.signals if s.name in wanted] if wanted else []
    signals = signals or list(incident.spec.signals)
    labels: dict[str, list[str]] = {}
    for signal in signals:
        for key, value in signal.labels.items():
            if value not in labels.setdefault(key, []):
                labels[key].append(value)
    spec = incident.spec
    return Context(labels, {"tenant": spec.tenant, "module": spec.module, "namespace": incident.metadata.namespace,
                            "name": incident.metadata.name, "category": spec.category, "severity": spec.severity},
                   tuple(s.name for s in signals))


def _expressions(text: str) -> list[str]:
    return [m.group(1).strip() for m in PLACEHOLDER.finditer(text)]


def _unsupported(expression: str) -> str | None:
    if LABEL.fullmatch(expression) or FIELD.fullmatch(expression):
        return None
    return (f"unsupported template {{{{ {expression} }}}}: only {{{{ labels.NAME }}}} and "
            f"{{{{ incident.tenant|module|namespace|name|category|severity }}}} are allowed")


def _strings(value: Any, path: tuple[Any, ...] = ()) -> Iterable[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def problems(value: Any) -> list[str]:
    """Every unsupported expression in ``value`` (a string, or params nested in dicts and lists)."""
    return [f"{'.'.join(map(str, path)) or 'value'}: {why}" for path, text in _strings(value)
            for why in map(_unsupported, _expressions(text)) if why]


def templated(value: Any) -> list[tuple[Any, ...]]:
    """The paths of the strings that hold a template (validated only once rendered, when the step runs)."""
    return [path for path, text in _strings(value) if PLACEHOLDER.search(text)]


def _lookup(expression: str, ctx: Context) -> str:
    label = LABEL.fullmatch(expression)
    if label is not None:
        name = label.group(1)
        values = ctx.labels.get(name) or []
        seen = ", ".join(ctx.signals) or "none"
        if not values:
            raise TemplateError("UnknownLabel", f"{{{{ labels.{name} }}}}: no signal of the incident carries label "
                                                f"{name!r} (signals read: {seen})")
        if len(values) > 1:
            raise TemplateError("AmbiguousLabel", f"{{{{ labels.{name} }}}}: the incident's signals give label "
                                                  f"{name!r} {len(values)} values ({', '.join(values)}); "
                                                  f"name the signal in the step's when.signals")
        return values[0]
    found = FIELD.fullmatch(expression)
    if found is None:
        raise TemplateError("UnsupportedTemplate", _unsupported(expression) or expression)
    value = ctx.incident.get(found.group(1))
    if not value:
        raise TemplateError("UnknownField", f"{{{{ {expression} }}}}: the incident has no {found.group(1)}")
    return value


def render(value: Any, ctx: Context, escape: Callable[[str], str] | None = None) -> Any:
    """``value`` with each placeholder replaced (dict keys are left alone); ``escape`` quotes what is
    put in (PromQL strings: ``promql_string``). Raises ``TemplateError``."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: (escape or str)(_lookup(m.group(1).strip(), ctx)), value)
    if isinstance(value, dict):
        return {key: render(item, ctx, escape) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, ctx, escape) for item in value]
    return value


def promql_string(value: str) -> str:
    """A label value made safe inside a double-quoted PromQL string: it cannot end the string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
