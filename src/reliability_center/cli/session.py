"""kubectl's global flags for every relctl command: ``--kubeconfig``, ``--context``, ``-n/--namespace``,
``--as``/``--as-group`` (impersonation, as kubectl does it: the apiserver checks the right to impersonate).

They are accepted before and after the command (``relctl -n x get incidents`` and ``relctl get
incidents -n x``), as kubectl does, because ``kubectl relctl ...`` passes them on unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

import click

from reliability_center.gateway import Kube
from reliability_center.gateway.kube import kubeconfig_namespace, load_api_client

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A failure to report as one line on stderr, exit code 1."""


class Session:
    """What the flags chose: the kubeconfig, its context, the namespace; the client made from them."""

    def __init__(self) -> None:
        self.kubeconfig: str | None = None
        self.context: str | None = None
        self.namespace: str | None = None
        self.as_user: str | None = None
        self.as_group: tuple[str, ...] = ()

    @cached_property
    def kube(self) -> Kube:
        if self.as_group and not self.as_user:  # kubectl refuses it too, rather than drop the groups
            raise click.UsageError("--as-group needs --as: groups are impersonated along with a user")
        try:
            return Kube(load_api_client(self.kubeconfig, self.context),
                        impersonate=(self.as_user, self.as_group) if self.as_user else None)
        except Exception as exc:  # noqa: BLE001 - a missing file, an unknown context: the loader's own words
            raise CliError(f"kubeconfig: {' '.join(str(exc).split())}") from None

    @cached_property
    def ns(self) -> str:
        """``-n``, else the context's namespace, else ``default`` (kubectl's order)."""
        if self.namespace:
            return self.namespace
        try:
            return kubeconfig_namespace(self.kubeconfig, self.context) or "default"
        except Exception as exc:  # noqa: BLE001
            raise CliError(f"kubeconfig: {' '.join(str(exc).split())}") from None


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None and value != ():  # the innermost flag wins: a command's -n over the group's
        setattr(ctx.ensure_object(Session), param.name or "", value)


def kube_options(func: F) -> F:
    for option in reversed((
        click.option("--kubeconfig", metavar="PATH", expose_value=False, callback=_remember,
                     help="Path to the kubeconfig file (default: $KUBECONFIG)."),
        click.option("--context", metavar="NAME", expose_value=False, callback=_remember,
                     help="The kubeconfig context to use (default: its current context)."),
        click.option("-n", "--namespace", metavar="NS", expose_value=False, callback=_remember,
                     help="The namespace (default: the context's namespace, else 'default')."),
        click.option("--as", "as_user", metavar="USER", expose_value=False, callback=_remember,
                     help="Act as this user (impersonation, as kubectl --as)."),
        click.option("--as-group", "as_group", metavar="GROUP", multiple=True, expose_value=False,
                     callback=_remember, help="Act as a member of this group (repeatable; with --as)."),
    )):
        func = option(func)
    return func


def session() -> Session:
    return click.get_current_context().ensure_object(Session)


def complete_names(kind: str) -> Callable[[click.Context, click.Parameter, str], list[str]]:
    """Shell completion of object names, read from the cluster with the flags typed so far."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        try:
            s = ctx.ensure_object(Session)
            names = [o["metadata"]["name"] for o in s.kube.list(kind, s.ns)]
        except Exception:  # noqa: BLE001 - completion offers nothing rather than break the shell
            return []
        return [n for n in names if n.startswith(incomplete)]

    return complete
