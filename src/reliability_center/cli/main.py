"""relctl commands: operator run, crds, get, timeline, approve, resolve, rollback."""

from __future__ import annotations

import argparse
import json
import sys
from typing import get_args

from reliability_center.api.incident import GateName
from reliability_center.gateway import Kube, Ref, records
from reliability_center.gateway.writes import INCIDENT_UID_LABEL


def _incident(kube: Kube, namespace: str, name: str) -> dict:
    found = kube.get(Ref("Incident", namespace, name))
    if found is None:
        raise SystemExit(f"error: incident {namespace}/{name} not found")
    return found


def cmd_operator(args: argparse.Namespace) -> None:
    from reliability_center.operator.main import run

    run()


def cmd_crds(args: argparse.Namespace) -> None:
    from reliability_center.api.crd import crds, render

    for name, crd in crds().items():
        sys.stdout.write("---\n" + render(name, crd))


def cmd_timeline(args: argparse.Namespace) -> None:
    status = _incident(Kube(), args.namespace, args.name).get("status") or {}
    print(f"traceId {status.get('traceId')}  runbook {status.get('runbook')}  phase {status.get('phase')}")
    for entry in status.get("timeline") or []:
        target = f" {entry['target']}" if entry.get("target") else ""
        digests = f" {entry.get('beforeDigest')}→{entry.get('afterDigest')}" if entry.get("afterDigest") else ""
        print(f"{entry['time']}  {entry.get('step') or '-':<22} {entry['event']:<28}{target}{digests} {entry.get('message', '')}")


def cmd_steps(args: argparse.Namespace) -> None:
    status = _incident(Kube(), args.namespace, args.name).get("status") or {}
    for step in status.get("steps") or []:
        print(f"L{step['level']} {step['name']:<28} {step['action']:<20} {step['state']:<17} {step.get('message', '')}")


def cmd_approve(args: argparse.Namespace) -> None:
    kube = Kube()
    body = _incident(kube, args.namespace, args.name)
    names = {s["name"] for s in body.get("status", {}).get("steps") or []}
    if args.step not in names:
        raise SystemExit(f"error: incident {args.name} has no step {args.step!r} (steps: {', '.join(sorted(names))})")
    approvals = list(body["spec"].get("approvals") or [])
    if args.step not in approvals:
        approvals.append(args.step)
    records.patch_spec(kube, Ref("Incident", args.namespace, args.name), {"approvals": approvals},
                       body["metadata"]["resourceVersion"])
    print(f"incident {args.name}: step {args.step} approved")


def cmd_resolve(args: argparse.Namespace) -> None:
    """Works from every phase: whatever the incident's steps hold is restored (Failed included)."""
    kube = Kube()
    body = _incident(kube, args.namespace, args.name)
    phase = (body.get("status") or {}).get("phase") or "Detected"
    if phase == "Closed":
        raise SystemExit(f"error: incident {args.name} is Closed: there is nothing left to resolve")
    held = kube.list("ConfigMap", args.namespace, f"{INCIDENT_UID_LABEL}={body['metadata']['uid']}")
    if not (body.get("spec") or {}).get("resolved"):
        records.patch_spec(kube, Ref("Incident", args.namespace, args.name), {"resolved": True},
                           body["metadata"]["resourceVersion"])
    if held:
        print(f"incident {args.name} ({phase}): resolved; the {len(held)} changes it holds will be restored "
              "(fields other open incidents still hold stay until they resolve)")
    else:
        print(f"incident {args.name} ({phase}): resolved; it changed nothing, so nothing is restored")


def cmd_rollback(args: argparse.Namespace) -> None:
    from reliability_center.cli.rollback import RollbackError, rollback

    try:
        rollback(args.namespace, args.name)
    except RollbackError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"patchplan {args.name}: rollback requested (a revert pull request of the merge will be opened)")


def cmd_get(args: argparse.Namespace) -> None:
    kube = Kube()
    for item in kube.list("Incident", args.namespace):
        status = item.get("status") or {}
        print(json.dumps({"name": item["metadata"]["name"], "phase": status.get("phase"),
                          "runbook": status.get("runbook"), "level": status.get("level")}))


def _audit(kube: Kube, namespace: str, status: dict) -> list[dict]:
    """The durable audit log's records, by time then key (the keys are opaque hashes)."""
    log = kube.get(Ref("ConfigMap", namespace, status["auditLog"])) if status.get("auditLog") else None
    try:
        found = {key: json.loads(value) for key, value in ((log or {}).get("data") or {}).items()}
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: audit log {namespace}/{status['auditLog']} holds a record that is not JSON: {exc}")
    return [found[key] for key in sorted(found, key=lambda key: (found[key].get("time") or "", key))]


def cmd_postmortem(args: argparse.Namespace) -> None:
    from reliability_center.engine.postmortem import render

    kube = Kube()
    body = _incident(kube, args.namespace, args.name)
    plans = kube.list("PatchPlan", args.namespace, f"reliability.center/incident={args.name[:63]}")
    sys.stdout.write(render(body, plans, _audit(kube, args.namespace, body.get("status") or {})))


def format_gates(status: dict) -> str:
    """``relctl gates``: every gate (those not evaluated yet too), what a failing one misses, the verdict."""
    gates = {g["name"]: g for g in status.get("gates") or []}
    closed = (status.get("times") or {}).get("closed")
    if not gates and not closed:
        return f"gates not evaluated yet (phase {status.get('phase') or 'not set'})"
    names = [*get_args(GateName), *(n for n in gates if n not in get_args(GateName))]

    def line(value: object) -> str:
        return " ".join(str(value or "").split())

    rows = [("GATE", "PASSED", "REASON", "EVIDENCE", [])]
    for name in names:
        gate = gates.get(name)
        rows.append((name, "-", "(not evaluated)", "", []) if gate is None else
                    (name, "yes" if gate.get("passed") else "no", line(gate.get("reason")), line(gate.get("evidence")),
                     [] if gate.get("passed") else gate.get("missing") or []))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = []
    for *cells, evidence, missing in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + evidence)
        out += [f"    missing: {line(m)}" for m in missing]
    failing = sum(1 for n in names if not gates.get(n, {}).get("passed"))
    out.append(f"closed at {closed}" if closed else f"not closed: {failing} of {len(names)} gates failing")
    return "\n".join(o.rstrip() for o in out)


def cmd_gates(args: argparse.Namespace) -> None:
    print(format_gates(_incident(Kube(), args.namespace, args.name).get("status") or {}))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="relctl", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operator", help="run the operator").add_subparsers(dest="what", required=True)
    op.add_parser("run", help="run the Kopf operator with $KUBECONFIG").set_defaults(func=cmd_operator)
    sub.add_parser("crds", help="print the CRDs generated from the models").set_defaults(func=cmd_crds)

    def with_incident(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("name")
        p.add_argument("-n", "--namespace", default="default")
        p.set_defaults(func=func)
        return p

    with_incident("timeline", cmd_timeline, "print an incident's timeline and audit records")
    with_incident("steps", cmd_steps, "print an incident's steps and their states")
    with_incident("resolve", cmd_resolve, "mark an incident resolved (restores level 1 changes)")
    with_incident("approve", cmd_approve, "approve a level 2 step").add_argument("step")
    with_incident("rollback", cmd_rollback, "request the revert of a merged PatchPlan (its name)")
    with_incident("gates", cmd_gates, "print an incident's post-repair gates and what each one misses")
    with_incident("postmortem", cmd_postmortem, "print the postmortem draft of an incident (Markdown)")
    get = sub.add_parser("get", help="list incidents as JSON lines")
    get.add_argument("-n", "--namespace", default=None)
    get.set_defaults(func=cmd_get)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)
