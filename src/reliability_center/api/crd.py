"""Generate the CustomResourceDefinitions from the pydantic models (the single source of truth).

pydantic emits JSON Schema; the apiserver wants a *structural* OpenAPI v3
schema: no ``$ref``, no ``anyOf`` with null, a ``type`` on every node, and
``x-kubernetes-*`` extensions where we need them. ``structural`` does that
translation; ``crds()`` adds names, printer columns and the status subresource.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from reliability_center.api.approval import ApprovalSpec
from reliability_center.api.common import GROUP, VERSION
from reliability_center.api.incident import IncidentSpec, IncidentStatus
from reliability_center.api.patchplan import PatchPlanSpec, PatchPlanStatus
from reliability_center.api.runbook import RunbookSpec, RunbookStatus

_DROP = {"title", "default", "discriminator"}


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The model's schema (by alias), with every reference inlined and nulls removed."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _clean(schema, defs)


def _clean(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_clean(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(branches) == 1:
            return _clean({**branches[0], **rest}, defs)
        # A value of several types (for example Any): keep it free-form.
        return {"x-kubernetes-preserve-unknown-fields": True, **_clean(rest, defs)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "properties":
            out[key] = {name: _clean(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties":
            if value is False:
                continue  # closed objects are the structural default (unknown fields pruned)
            if value is True:  # a map of anything: structural schemas say it this way
                out["x-kubernetes-preserve-unknown-fields"] = True
                continue
            out[key] = _clean(value, defs) if isinstance(value, dict) else value
        else:
            out[key] = _clean(value, defs)
    if "enum" in out and "type" not in out:
        sample = out["enum"][0]
        out["type"] = "integer" if isinstance(sample, int) else "string"
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out and "properties" not in out:
        pass  # an untyped free-form value (Any) is allowed with preserve-unknown-fields
    elif "type" not in out and "properties" in out:
        out["type"] = "object"
    elif not out and node == {}:
        return {"x-kubernetes-preserve-unknown-fields": True}
    return out


def _crd(kind: str, plural: str, short: str, scope: str, spec: type[BaseModel],
         status: type[BaseModel] | None, columns: list[dict[str, Any]], spec_required: bool = True) -> dict[str, Any]:
    root: dict[str, Any] = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(spec),
        },
    }
    if status is not None:
        root["properties"]["status"] = structural(status)
    if spec_required:
        root["required"] = ["spec"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "reliability-center"}},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["reliability"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    **({"subresources": {"status": {}}} if status is not None else {}),
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def _col(name: str, path: str, type_: str = "string", priority: int = 0) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    return col


_AGE = _col("Age", ".metadata.creationTimestamp", "date")


def crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for ``crds/``."""
    return {
        f"{GROUP}_incidents.yaml": _crd(
            "Incident", "incidents", "inc", "Namespaced", IncidentSpec, IncidentStatus,
            [
                _col("Category", ".spec.category"),
                _col("Tenant", ".spec.tenant"),
                _col("Severity", ".spec.severity"),
                _col("Phase", ".status.phase"),
                _col("Level", ".status.level", "integer"),
                _col("Runbook", ".status.runbook", priority=1),
                _col("Mode", ".spec.mode", priority=1),
                _AGE,
            ],
        ),
        f"{GROUP}_runbooks.yaml": _crd(
            "Runbook", "runbooks", "rb", "Cluster", RunbookSpec, RunbookStatus,
            [
                _col("Category", ".spec.match.category"),
                _col("Steps", ".status.steps", "integer"),
                _col("Max-Level", ".status.maxLevel", "integer"),
                _col("Ready", '.status.conditions[?(@.type=="Ready")].status'),
                _col("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
                _AGE,
            ],
        ),
        f"{GROUP}_patchplans.yaml": _crd(
            "PatchPlan", "patchplans", "pp", "Namespaced", PatchPlanSpec, PatchPlanStatus,
            [
                _col("Incident", ".spec.incidentRef"),
                _col("Provider", ".spec.repository.provider"),
                _col("Phase", ".status.phase"),
                _col("PR", ".status.pullRequest.url"),
                _col("Merge", ".status.pullRequest.mergeCommit", priority=1),
                _AGE,
            ],
        ),
        # A record, not a reconciled object: no status (what it counted for is in the Incident's steps).
        f"{GROUP}_approvals.yaml": _crd(
            "Approval", "approvals", "appr", "Namespaced", ApprovalSpec, None,
            [
                _col("Incident", ".spec.incident"),
                _col("Step", ".spec.step"),
                _col("Decision", ".spec.decision"),
                _col("Approver", ".spec.approver"),
                _col("Plan", ".spec.planDigest", priority=1),
                _AGE,
            ],
        ),
    }


def render(name: str, crd: dict[str, Any]) -> str:
    import yaml

    header = "# Generated by `python -m reliability_center.api.crd` from the pydantic models. Do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=120)


def main() -> None:
    """Write every CRD into ``crds/`` (or the directory given as the first argument)."""
    import pathlib
    import sys

    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for name, crd in crds().items():
        (out / name).write_text(render(name, crd))
        print(out / name)


if __name__ == "__main__":
    main()
