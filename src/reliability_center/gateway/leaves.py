"""Pure helpers: flatten an apply body into JSON-pointer leaves, read them, digest them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Marks a leaf that did not exist before the write (restore removes it).
ABSENT = {"$absent": True}
_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def leaves(body: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """JSON pointer → value for every leaf the body sets (lists are leaves; identity fields are not)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        path = prefix + (key,)
        if path in _IDENTITY:
            continue
        if isinstance(value, dict) and value:
            out.update(leaves(value, path))
        else:
            out["/" + "/".join(_escape(p) for p in path)] = value
    return out


def read(obj: dict[str, Any] | None, pointer: str) -> Any:
    node: Any = obj
    for raw in pointer.lstrip("/").split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return ABSENT
    return node


def digest(values: dict[str, Any]) -> str:
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

