"""relctl: the on-call engineer's CLI, in kubectl's manner (also ``kubectl relctl``).

Built on click (kopf's own dependency): ``--help`` on every command, usage errors, and bash/zsh
completion come with it. ``main`` turns every failure into one ``error:`` line on stderr (exit 1;
usage errors exit 2), never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from reliability_center import acts
from reliability_center.cli.get import describe, get
from reliability_center.cli.session import CliError, Session, complete_names, kube_options, session
from reliability_center.cli.show import approval_lines, format_gates
from reliability_center.gateway import Kube, Ref

HELP = {"help_option_names": ["-h", "--help"]}


def _incident(kube: Kube, namespace: str, name: str) -> dict:
    return acts.incident(kube, namespace, name)


@click.group(context_settings=HELP)
@kube_options
def cli() -> None:
    """relctl: incidents, runbooks and PatchPlans of reliability-center, kubectl-style.

    The flags --kubeconfig, --context and -n work before or after any command, and through
    the kubectl plugin: kubectl relctl get incidents -n shop.

    \b
    Examples:
      relctl get incidents -A
      relctl describe incident search-latency -n shop
      relctl approve search-latency adjust-flags -n shop
      source <(relctl completion bash)
    """


cli.add_command(get)
cli.add_command(describe)


@cli.group(context_settings=HELP)
def operator() -> None:
    """Run the operator.

    \b
    Example:
      relctl operator run
    """


@operator.command("run", context_settings=HELP)
@kube_options
def operator_run() -> None:
    """Run the Kopf operator with $KUBECONFIG (or in-cluster credentials).

    \b
    Example:
      RC_NAMESPACES=shop relctl operator run
    """
    from reliability_center.operator.main import run

    run()


@cli.command(context_settings=HELP)
def crds() -> None:
    """Print the CRDs generated from the models.

    \b
    Example:
      relctl crds | kubectl apply --server-side -f -
    """
    from reliability_center.api.crd import crds as generated, render

    for name, crd in generated().items():
        sys.stdout.write("---\n" + render(name, crd))


def _name_arg(func):
    return click.argument("name", shell_complete=complete_names("Incident"))(func)


@cli.command(context_settings=HELP)
@_name_arg
@kube_options
def timeline(name: str) -> None:
    """Print an incident's timeline and audit records.

    \b
    Example:
      relctl timeline search-latency -n shop
    """
    s = session()
    status = _incident(s.kube, s.ns, name).get("status") or {}
    click.echo(f"traceId {status.get('traceId')}  runbook {status.get('runbook')}  phase {status.get('phase')}")
    for entry in status.get("timeline") or []:
        target = f" {entry['target']}" if entry.get("target") else ""
        digests = f" {entry.get('beforeDigest')}→{entry.get('afterDigest')}" if entry.get("afterDigest") else ""
        click.echo(f"{entry['time']}  {entry.get('step') or '-':<22} {entry['event']:<28}{target}{digests} "
                   f"{entry.get('message', '')}")


@cli.command(context_settings=HELP)
@_name_arg
@kube_options
def steps(name: str) -> None:
    """Print an incident's steps and their states.

    \b
    Example:
      relctl steps search-latency -n shop
    """
    s = session()
    for step in (_incident(s.kube, s.ns, name).get("status") or {}).get("steps") or []:
        click.echo(f"L{step['level']} {step['name']:<28} {step['action']:<20} {step['state']:<17} "
                   f"{step.get('message', '')}")
        for line in approval_lines(step.get("approval")):
            click.echo(f"   {line}")


#: Changes per page of ``relctl plan``.
PAGE_SIZE = 20


def plan_lines(plan: dict[str, Any], page: int | None = None, size: int = PAGE_SIZE) -> list[str]:
    """A governed step's plan as its approvers read it: every change (or one page of them, from 1), its
    before and after, and what a dry-run Job reported."""
    changes = plan.get("changes") or []
    pages = max(1, -(-len(changes) // size))
    if page is not None and not 1 <= page <= pages:
        raise CliError(f"the plan has {pages} page(s) of {size} changes: there is no page {page}")
    first = (page - 1) * size if page is not None else 0
    shown = changes[first:first + size] if page is not None else changes
    lines = [f"plan {plan.get('digest') or '-'}: {len(changes)} changes"
             + (f", page {page} of {pages}" if page is not None else "")
             + (f" (dry-run: {plan['dryRun']})" if plan.get("dryRun") else "")]
    for number, change in enumerate(shown, start=first + 1):
        lines.append(f"{number:>4}. {change.get('target')}")
        lines.append(f"      before: {json.dumps(change.get('before'), sort_keys=True)}")
        lines.append(f"      after:  {json.dumps(change.get('after'), sort_keys=True)}")
    if "report" in plan:
        lines.append(f"report: {json.dumps(plan['report'], sort_keys=True)}")
    if page is not None and page < pages:
        lines.append(f"(more: --page {page + 1})")
    return lines


def _step_plan(body: dict, name: str, step: str, what: str) -> tuple[str, dict[str, Any]]:
    """The digest the step asks approval for and the plan it shows (reliability_center.acts.step_plan)."""
    return acts.step_plan(body, step, what)


@cli.command("plan", context_settings=HELP)
@_name_arg
@click.argument("step")
@click.option("--page", type=int, default=None, help=f"Show only this page ({PAGE_SIZE} changes a page), from 1.")
@kube_options
def plan_(name: str, step: str, page: int | None) -> None:
    """Print the whole plan a level 2 step asks approval for: every change, before and after.

    \b
    Example:
      relctl plan search-latency restart-schedulers -n shop --page 2
      relctl approve search-latency restart-schedulers -n shop --digest sha256:...
    """
    s = session()
    _, planned = _step_plan(_incident(s.kube, s.ns, name), name, step, "show")
    for line in plan_lines(planned, page):
        click.echo(line)


def _decide(name: str, step: str, decision: str, comment: str, reviewed: str | None = None) -> None:
    """Create an Approval for the plan the step shows now (reliability_center.acts.decide, which the console
    sends too); admission stamps who made it.

    ``reviewed``: the digest of the plan the user read (``relctl plan``); refused if the plan moved since.
    Without it, the whole plan signed is printed first."""
    s = session()
    body = _incident(s.kube, s.ns, name)
    _, planned = _step_plan(body, name, step, decision.lower())
    if decision == "Approve" and reviewed is None:
        for line in plan_lines(planned):
            click.echo(line)
    digest, made = acts.decide(s.kube, body, step, decision, comment, reviewed)
    verb = "approved" if decision == "Approve" else "rejected"
    click.echo(f"incident {name}: step {step} {verb} by {made['spec'].get('approver') or '?'} for plan {digest} "
               f"(Approval {made['metadata']['name']}); relctl steps {name} -n {s.ns} shows whether it counted")


@cli.command(context_settings=HELP)
@_name_arg
@click.argument("step")
@click.option("-m", "--comment", default="", help="Why, for the audit trail.")
@click.option("--digest", default=None, help="The digest of the plan you reviewed (relctl plan): refused if the "
                                             "step's plan is another one now.")
@kube_options
def approve(name: str, step: str, comment: str, digest: str | None) -> None:
    """Approve a level 2 step's plan, as the user the apiserver authenticates.

    With --digest, approves that plan only: refused if the step's plan moved since you read it
    (relctl plan). Without it, approves the plan the step shows now, printed in full first. If the
    plan changes before or while the step runs (a later wave's selection), the step asks again.
    Needs the approve verb on the incident (ClusterRole reliability-center-approver); the
    incident's creator never counts.

    \b
    Example:
      relctl plan search-latency adjust-flags -n shop
      relctl approve search-latency adjust-flags -n shop --digest sha256:... -m "checked the dashboard"
    """
    _decide(name, step, "Approve", comment, digest)


@cli.command(context_settings=HELP)
@_name_arg
@click.argument("step")
@click.option("-m", "--comment", default="", help="Why, for the audit trail.")
@kube_options
def reject(name: str, step: str, comment: str) -> None:
    """Reject a level 2 step: it ends Rejected and the incident escalates to a human.

    \b
    Example:
      relctl reject search-latency adjust-flags -n shop -m "not during the sale"
    """
    _decide(name, step, "Reject", comment)


@cli.command("postmortem-shared", context_settings=HELP)
@_name_arg
@click.option("--where", required=True, help="Where the postmortem was shared (a URL: the wiki page, the document).")
@click.option("-m", "--comment", default="", help="Anything else, for the audit trail.")
@kube_options
def postmortem_shared(name: str, where: str, comment: str) -> None:
    """Acknowledge that an incident's postmortem was shared, as the user the apiserver authenticates.

    For a namespace without a GitOps repository, where no postmortem pull request can be merged:
    this acknowledgement closes the postmortem-shared gate. It counts only from someone other than
    the incident's creator, made after the resolve, with the approve verb on the incident
    (ClusterRole reliability-center-approver).

    \b
    Example:
      relctl postmortem dunning-failing -n shop > postmortem.md   # share it, then:
      relctl postmortem-shared dunning-failing -n shop --where https://wiki.example.com/pm/dunning-failing
    """
    from reliability_center.api.approval import POSTMORTEM_STEP

    if not where.strip():
        raise CliError("--where names where the postmortem was shared: it cannot be empty")
    s = session()
    body = _incident(s.kube, s.ns, name)
    made = acts.create_approval(s.kube, body, POSTMORTEM_STEP, {"decision": "Approve", "sharedAt": where.strip()},
                               comment)
    if made["spec"].get("sharedAt") != where.strip():
        raise CliError(f"Approval {made['metadata']['name']} was stored without spec.sharedAt: the cluster's Approval "
                       f"CRD is older than this relctl (apply crds/), and the operator will not count it")
    click.echo(f"incident {name}: postmortem shared at {where.strip()}, acknowledged by "
               f"{made['spec'].get('approver') or '?'} (Approval {made['metadata']['name']}); "
               f"relctl gates {name} -n {s.ns} shows whether it counted")


@cli.command(context_settings=HELP)
@_name_arg
@kube_options
def resolve(name: str) -> None:
    """Mark an incident resolved: its level 1 and 2 changes are restored.

    Works from every phase: whatever the incident's steps hold is restored (Failed included).

    \b
    Example:
      relctl resolve search-latency -n shop
    """
    s = session()
    phase, held = acts.resolve(s.kube, s.ns, name)
    if held is None:
        click.echo(f"incident {name} ({phase}): resolved; the changes it holds will be restored (you may not list "
                   "ConfigMaps here, so they are not counted)")
    elif held:
        click.echo(f"incident {name} ({phase}): resolved; the {held} changes it holds will be restored "
                   "(fields other open incidents still hold stay until they resolve)")
    else:
        click.echo(f"incident {name} ({phase}): resolved; it changed nothing, so nothing is restored")


@cli.command(context_settings=HELP)
@click.argument("plan", metavar="[NAMESPACE/]PATCHPLAN", shell_complete=complete_names("PatchPlan"))
@kube_options
def rollback(plan: str) -> None:
    """Request the revert of a merged PatchPlan (a revert pull request of its merge).

    \b
    Examples:
      relctl rollback search-latency-patch-plan -n shop
      relctl rollback shop/search-latency-patch-plan   # the form a pull request's body prints
    """
    from reliability_center.acts import rollback as request

    s = session()
    namespace, _, name = plan.rpartition("/")
    request(namespace or s.ns, name, s.kube)
    click.echo(f"patchplan {name}: rollback requested (a revert pull request of the merge will be opened)")


def _audit(kube: Kube, namespace: str, status: dict) -> list[dict]:
    """The durable audit log's records, by time then key (the keys are opaque hashes)."""
    log = kube.get(Ref("ConfigMap", namespace, status["auditLog"])) if status.get("auditLog") else None
    try:
        found = {key: json.loads(value) for key, value in ((log or {}).get("data") or {}).items()}
    except json.JSONDecodeError as exc:
        raise CliError(f"audit log {namespace}/{status['auditLog']} holds a record that is not JSON: {exc}") from None
    return [found[key] for key in sorted(found, key=lambda key: (found[key].get("time") or "", key))]


@cli.command(context_settings=HELP)
@_name_arg
@kube_options
def gates(name: str) -> None:
    """Print an incident's post-repair gates and what each one misses.

    \b
    Example:
      relctl gates dunning-failing -n shop
    """
    s = session()
    click.echo(format_gates(_incident(s.kube, s.ns, name).get("status") or {}))


@cli.command(context_settings=HELP)
@_name_arg
@kube_options
def postmortem(name: str) -> None:
    """Print the postmortem draft of an incident (Markdown).

    \b
    Example:
      relctl postmortem dunning-failing -n shop > postmortem.md
    """
    from reliability_center.engine.postmortem import render

    s = session()
    body = _incident(s.kube, s.ns, name)
    plans = s.kube.list("PatchPlan", s.ns, f"reliability.center/incident={name[:63]}")
    sys.stdout.write(render(body, plans, _audit(s.kube, s.ns, body.get("status") or {})))


@cli.command(context_settings=HELP)
@click.option("--port", type=int, default=0, help="The port to listen on (default: any free one).")
@click.option("--address", default="127.0.0.1", help="The address to listen on: loopback unless --bearer.")
@click.option("--bearer", is_flag=True, help="In-cluster mode: act with each request's Authorization: Bearer token "
                                             "(from an OIDC-aware proxy), never with credentials of this process.")
@click.option("--apiserver", default=None, help="With --bearer: the apiserver's URL (default: the in-cluster one).")
@click.option("--ca-file", default=None, help="With --bearer: the CA certificate that signs the apiserver's.")
@click.option("--origin", default=None, help="The console's public origin (https://host), when a proxy serves it.")
@click.option("--watch-namespace", "watch_namespaces", multiple=True, metavar="NS",
              help="Namespaces to read when you may not list incidents cluster-wide nor list namespaces "
                   "(repeatable; default: the context's namespace).")
@kube_options
def console(port: int, address: str, bearer: bool, apiserver: str | None, ca_file: str | None, origin: str | None,
            watch_namespaces: tuple[str, ...]) -> None:
    """Serve the web console: incidents, approvals and proof, always as you.

    Every request to the apiserver carries your identity (your kubeconfig, --as; or with --bearer, the
    token each request brings), so RBAC, admission and the audit trail are those of kubectl. It listens
    on loopback and prints a URL with a one-time token: the first visit trades it for a session cookie.

    \b
    Example:
      relctl console
      relctl console --as alice --as-group approvers --watch-namespace shop
    """
    import secrets
    from urllib.parse import quote

    from reliability_center.console.server import Console, loopback_host, serve
    from reliability_center.gateway.kube import bearer_client

    s = session()
    if bearer:
        built = Console(bearer=lambda token: Kube(bearer_client(token, apiserver, ca_file)),
                        namespaces=list(watch_namespaces), origin=origin)
    else:
        if not loopback_host(address):
            raise CliError(f"--address {address} is not a loopback address: with your own kubeconfig the console "
                           "listens on this machine only (the in-cluster mode is --bearer)")
        token = secrets.token_urlsafe(32)
        built = Console(local_kube=s.kube, namespaces=list(watch_namespaces) or [s.ns], token=token, origin=origin)

    def ready(bound: int) -> None:
        if bearer:
            click.echo(f"console: serving on http://{address}:{bound}/ (each request's bearer token)", err=True)
        else:
            click.echo(f"console: open http://{address}:{bound}/?token={quote(token)} (works once)", err=True)

    serve(built, address, port, ready)


@cli.command(context_settings=HELP)
@click.argument("shell", type=click.Choice(["bash", "zsh"]))
def completion(shell: str) -> None:
    """Print the shell completion script (commands, flags, incident names).

    \b
    Examples:
      source <(relctl completion bash)              # in ~/.bashrc
      relctl completion zsh > "${fpath[1]}/_relctl"
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)(cli, {}, "relctl", "_RELCTL_COMPLETE")  # type: ignore[misc]
    click.echo(complete.source())


def main(argv: list[str] | None = None) -> None:
    """The console script: one line on stderr for any failure (exit 1), or for a usage error (exit 2)."""
    from reliability_center.gateway.kube import describe as describe_error

    def fail(message: str, code: int) -> None:
        click.echo(f"error: {message}", err=True)
        sys.exit(code)

    try:
        code = cli.main(argv, prog_name="relctl", standalone_mode=False, obj=Session())
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        fail(" ".join(exc.format_message().split()).rstrip(".") + where, 2)
    except (CliError, acts.ActError) as exc:
        fail(str(exc), 1)
    except (click.Abort, KeyboardInterrupt):
        sys.exit(130)
    except BrokenPipeError:  # relctl get ... | head
        sys.exit(0)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the apiserver's or kubeconfig's own message, on one line
        fail(" ".join(describe_error(exc).split()), 1)
    else:
        sys.exit(code or 0)
