"""``relctl get`` and ``relctl describe``: kubectl's output for the project's own kinds.

The table is the apiserver's own (``as=Table``): the CRDs' printer columns, evaluated and aged
by the server exactly as ``kubectl get`` shows them; ``-o wide`` adds the priority 1 columns.
"""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from reliability_center.cli.session import CliError, Session, complete_names, kube_options, session
from reliability_center.cli.show import approval_lines, format_gates
from reliability_center.gateway import Kube, Ref
from reliability_center.gateway.kube import KINDS, NotFound, raw_refusal, watch_events

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
GROUP = "reliability.center"
#: What ``get`` accepts, kubectl's way: plural, singular, short name.
RESOURCES = {alias: kind for kind, aliases in {
    "Incident": ("incidents", "incident", "inc"),
    "Runbook": ("runbooks", "runbook", "rb"),
    "PatchPlan": ("patchplans", "patchplan", "pp"),
}.items() for alias in aliases}


def _raw(kube: Kube, path: str, query: dict[str, Any], accept: str, timeout: float | None = 30) -> Any:
    """A GET with kubectl's Accept header; the response unread, for a watch to stream.

    Through the gateway's client (same credentials, same --as/--as-group); its own reads only ask for JSON.
    """
    response = kube.read_raw(path, {k: v for k, v in query.items() if v not in (None, "")}, accept, timeout)
    if not 200 <= response.status <= 299:
        message = raw_refusal(response)
        raise (NotFound if response.status == 404 else CliError)(message)
    return response


def _not_found(kind: str, name: str, namespace: str | None) -> CliError:
    where = f' in namespace "{namespace}"' if namespace and KINDS[kind].namespaced else ""
    return CliError(f'{kind.lower()} "{name}" not found{where}')


def render_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """kubectl's layout: columns padded by three spaces, the last one unpadded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [_line(r, widths) for r in [header, *rows]]


def _line(cells: list[str], widths: list[int]) -> str:
    return "   ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


class _Columns:
    """Which of the Table's columns to show (wide: all) and the NAMESPACE column of ``-A``."""

    def __init__(self, definitions: list[dict[str, Any]], wide: bool, all_namespaces: bool):
        self.keep = [i for i, c in enumerate(definitions) if wide or not c.get("priority")]
        self.header = (["NAMESPACE"] if all_namespaces else []) + [definitions[i]["name"].upper() for i in self.keep]
        self.all_namespaces = all_namespaces

    def row(self, row: dict[str, Any]) -> list[str]:
        namespace = [((row.get("object") or {}).get("metadata") or {}).get("namespace", "")] \
            if self.all_namespaces else []
        return namespace + [_cell(row["cells"][i]) for i in self.keep]



def _print_object(obj: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(obj, indent=4))
    elif output == "yaml":
        click.echo(yaml.safe_dump(obj, sort_keys=False), nl=False)
    else:  # name
        click.echo(f"{obj['kind'].lower()}.{GROUP}/{obj['metadata']['name']}")


def _watch(kube: Kube, path: str, query: dict[str, Any], resource_version: str, output: str,
           columns: _Columns | None, widths: list[int]) -> None:
    """A line (or document) per change, until interrupted; the watch resumes where it stopped."""
    while True:
        response = _raw(kube, path, {**query, "watch": "true", "resourceVersion": resource_version,
                                     "allowWatchBookmarks": "true"},
                        TABLE if columns else "application/json", timeout=None)
        for event in watch_events(response):
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                raise CliError(f"watch stopped: {obj.get('message') or obj}")
            if event.get("type") == "BOOKMARK":
                resource_version = obj["metadata"]["resourceVersion"]
                continue
            if columns is None:
                resource_version = obj["metadata"]["resourceVersion"]
                obj.setdefault("apiVersion", f"{GROUP}/v1alpha1")
                _print_object(obj, output)
                if output == "yaml":
                    click.echo("---")
                continue
            for row in obj.get("rows") or []:
                resource_version = row["object"]["metadata"]["resourceVersion"]
                click.echo(_line(columns.row(row), widths))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("resource", type=click.Choice(sorted(RESOURCES)), metavar="RESOURCE")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["json", "yaml", "wide", "name"]),
              help="Output format; the default is the table of the CRD's printer columns.")
@click.option("-w", "--watch", is_flag=True, help="After listing, print a line for each change.")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", metavar="SELECTOR", help="Label selector, e.g. -l reliability.center/tenant=acme.")
@kube_options
def get(resource: str, name: str | None, output: str | None, watch: bool, all_namespaces: bool,
        selector: str | None) -> None:
    """List incidents, runbooks or patchplans (or show one), as kubectl get does.

    RESOURCE is incidents, runbooks or patchplans (singular and short names inc, rb, pp too).

    \b
    Examples:
      relctl get incidents                       # in the context's namespace
      relctl get inc -A -o wide                  # every namespace, with the Runbook and Mode columns
      relctl get incident search-latency -o yaml
      relctl get patchplans -l reliability.center/incident=search-latency -w
    """
    s: Session = session()
    kind = RESOURCES[resource]
    namespaced = KINDS[kind].namespaced
    namespace = None if all_namespaces or not namespaced else s.ns
    path = s.kube.path(kind, namespace)
    query: dict[str, Any] = {"labelSelector": selector}
    if name:
        query["fieldSelector"] = f"metadata.name={name}"
    table = output in (None, "wide")
    listed = json.loads(_raw(s.kube, path, query, TABLE if table else "application/json").read())
    found = listed.get("rows" if table else "items") or []
    if name and not found:  # as kubectl, -w included
        raise _not_found(kind, name, namespace)
    columns, widths = None, []
    if table:
        columns = _Columns(listed["columnDefinitions"], output == "wide", all_namespaces and namespaced)
        rows = [columns.row(r) for r in found]
        lines = render_table(columns.header, rows)
        widths = [max(len(r[i]) for r in [columns.header, *rows]) for i in range(len(columns.header))]
        if found:
            click.echo("\n".join(lines))
    else:
        items = [{"apiVersion": f"{GROUP}/v1alpha1", "kind": kind, **i} for i in found]
        if output == "name":
            for item in items:
                _print_object(item, output)
        elif name and items:
            _print_object(items[0], output)
        else:
            _print_object({"apiVersion": "v1", "kind": "List", "items": items,
                           "metadata": {"resourceVersion": ""}}, output)
    if not found and not name:
        where = f" in {namespace} namespace" if namespace else ""
        click.echo(f"No resources found{where}.", err=True)
    if watch:
        _watch(s.kube, path, query, listed["metadata"]["resourceVersion"], output or "", columns, widths)


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> str:
    return "\n".join(indent + line for line in render_table(header, rows)) if rows else f"{indent}<none>"


def describe_incident(body: dict[str, Any], plans: list[dict[str, Any]], last: int = 10) -> str:
    """``relctl describe incident``: what an on-call engineer asks first, from the object and its plans."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    timeline = status.get("timeline") or []
    out = [f"Name:       {meta['name']}",
           f"Namespace:  {meta.get('namespace', '')}",
           f"Category:   {spec.get('category', '')}  Tenant: {spec.get('tenant', '')}  "
           f"Severity: {spec.get('severity', '')}  Module: {spec.get('module') or '-'}",
           f"Phase:      {status.get('phase') or '(not set)'}  Level: {status.get('level') or '-'}  "
           f"Mode: {status.get('mode') or spec.get('mode') or 'enforce'}  Runbook: {status.get('runbook') or '-'}",
           f"TraceId:    {status.get('traceId') or '-'}",
           f"Summary:    {' '.join(str(spec.get('summary') or '').split())}",
           "Times:      " + ("  ".join(f"{k} {v}" for k, v in (status.get("times") or {}).items() if v) or "-"),
           "", "Steps:"]
    steps = status.get("steps") or []
    out.append(_table(["LEVEL", "STEP", "ACTION", "STATE", "APPROVED BY", "TARGETS"],
                      [[str(st.get("level", "")), st["name"], st.get("action", ""), st.get("state", ""),
                        ", ".join(v["user"] for v in (st.get("approval") or {}).get("votes") or []
                                  if v.get("counted") and v.get("decision") == "Approve") or "-",
                        ", ".join(st.get("targets") or []) or "-"] for st in steps]))
    out += [f"    {st['name']}: {st['reason']}: {' '.join(st.get('message', '').split())}"
            for st in steps if st.get("reason") and st.get("state") not in ("Succeeded", "Restored")]
    for st in steps:
        if st.get("approval"):
            out += [f"    {st['name']} approval: {line}" for line in approval_lines(st["approval"])]
    out += ["", "Gates:", *("  " + line for line in format_gates(status).splitlines())]
    recorded = {p["name"]: p for p in status.get("plans") or []}
    for plan in plans:
        recorded[plan["metadata"]["name"]] = {
            "name": plan["metadata"]["name"], "phase": (plan.get("status") or {}).get("phase") or "Pending",
            "pullRequest": ((plan.get("status") or {}).get("pullRequest") or {}).get("url"),
            "purpose": (plan["metadata"].get("labels") or {}).get("reliability.center/purpose", "fix")}
    out += ["", "PatchPlans:", _table(["NAME", "PURPOSE", "PHASE", "PULL REQUEST"],
                                      [[p["name"], p.get("purpose") or "fix", p.get("phase") or "",
                                        p.get("pullRequest") or "-"] for p in recorded.values()])]
    out += ["", "Conditions:", _table(["TYPE", "STATUS", "REASON", "MESSAGE"],
                                      [[c.get("type", ""), c.get("status", ""), c.get("reason", ""),
                                        " ".join(str(c.get("message", "")).split())]
                                       for c in status.get("conditions") or []])]
    shown = timeline[-last:]
    out += ["", f"Timeline (last {len(shown)} of {len(timeline)}; relctl timeline {meta['name']} "
                f"-n {meta.get('namespace')} for all):",
            _table(["TIME", "STEP", "EVENT", "TARGET", "MESSAGE"],
                   [[e.get("time", ""), e.get("step") or "-", e.get("event", ""), e.get("target") or "",
                     " ".join(str(e.get("message", "")).split())] for e in shown])]
    return "\n".join(out)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("resource", type=click.Choice(["incident", "incidents", "inc"]), metavar="incident")
@click.argument("name", shell_complete=complete_names("Incident"))
@click.option("--last", default=10, show_default=True, help="How many timeline entries to show.")
@kube_options
def describe(resource: str, name: str, last: int) -> None:
    """Show an incident: steps (state, targets, approvals), gates, PatchPlans and their pull
    requests, conditions, the last timeline entries.

    \b
    Example:
      relctl describe incident search-latency -n shop
    """
    s = session()
    body = s.kube.get(Ref("Incident", s.ns, name))
    if body is None:
        raise _not_found("Incident", name, s.ns)
    plans = s.kube.list("PatchPlan", s.ns, f"reliability.center/incident={name[:63]}")
    click.echo(describe_incident(body, plans, last))
