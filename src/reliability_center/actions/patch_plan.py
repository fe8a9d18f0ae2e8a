"""Level 3: propose the fix as a PatchPlan (a pull request on the GitOps repo). Never applied here.

The repository comes from the step's params, else from the namespace's
``reliability-center-settings`` ConfigMap (gitopsRepoURL, gitopsProvider,
gitopsBaseBranch, gitopsCredentialsSecret, argoApplication), else from the
Argo CD Application's source. Without one the step escalates to a human, visibly.

A runbook's changes are templates: ``{incident}``, ``{namespace}``, ``{tenant}``,
``{module}``, ``{category}``, ``{traceId}``, ``{signals.<name>}`` (the signal's
value) and ``{appPath}``: the path of the Argo CD Application that deploys the
namespace (its ``spec.source.path``), else ``apps/{namespace}``. The incident's
record (``incidents/<ns>/<name>.md``) is always added beside them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reliability_center.actions.base import ActionContext, Escalate, Params, Result, action
from reliability_center.gateway import Ref
from reliability_center.gateway.tracking import ARGO_NAMESPACE


class PatchPlanParams(Params):
    title: str = Field(default="", max_length=200)
    repository: dict[str, Any] | None = None
    changes: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    argo_application: str | None = None


def _render(value: Any, context: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, sub in context.items():
            value = value.replace("{" + key + "}", sub)
        return value
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    return value


def application_source(ctx: ActionContext, app_ref: str | None) -> dict[str, Any]:
    """The Argo CD Application's source (repoURL, targetRevision, path), or {} when there is none."""
    if not app_ref:
        return {}
    namespace, _, name = app_ref.rpartition("/")
    app = ctx.read.get(Ref("Application", namespace or ARGO_NAMESPACE, name)) or {}
    spec = app.get("spec") or {}
    return spec.get("source") or next(iter(spec.get("sources") or []), {})


def repository_from(settings: dict[str, str]) -> dict[str, Any] | None:
    """The GitOps repository of a namespace's reliability-center-settings ConfigMap (None: not configured)."""
    if not settings.get("gitopsRepoURL"):
        return None
    return {
        "url": settings["gitopsRepoURL"],
        "provider": settings.get("gitopsProvider", "git"),
        "baseBranch": settings.get("gitopsBaseBranch", "main"),
        **({"credentialsSecret": settings["gitopsCredentialsSecret"]} if settings.get("gitopsCredentialsSecret") else {}),
    }


def incident_record(ctx: ActionContext) -> str:
    spec = ctx.incident.spec
    lines = [f"# Incident {ctx.incident.metadata.name} (traceId {ctx.write.trace_id})",
             f"category: {spec.category}", f"severity: {spec.severity}", f"tenant: {spec.tenant}",
             f"module: {spec.module or '-'}", f"summary: {spec.summary!r}", "proposedBy: reliability-center", ""]
    return "\n".join(lines)


@action("patch-plan", params=PatchPlanParams, levels=(3,), reversible=False, needs_settings=True,
        summary="Propose the change as a PatchPlan (pull request); merge is the human validation")
def run(ctx: ActionContext, params: PatchPlanParams) -> Result:
    settings = ctx.facts.settings
    app_ref = params.argo_application or settings.get("argoApplication")
    source = application_source(ctx, app_ref)
    repo = params.repository or repository_from(settings)
    if repo is None and source.get("repoURL"):
        revision = source.get("targetRevision") or "HEAD"
        repo = {"url": source["repoURL"], "provider": settings.get("gitopsProvider", "git"),
                "baseBranch": "main" if revision == "HEAD" else revision,
                **({"credentialsSecret": settings["gitopsCredentialsSecret"]}
                   if settings.get("gitopsCredentialsSecret") else {})}
    if repo is None:
        return Escalate("NoGitOpsRepository", "no GitOps repository configured (step params, "
                                              "reliability-center-settings gitopsRepoURL, or an Argo CD "
                                              "Application's source): a human must take over")
    name = ctx.incident.metadata.name
    context = {"incident": name, "namespace": ctx.namespace, "tenant": ctx.tenant, "traceId": ctx.write.trace_id,
               "module": ctx.incident.spec.module or "", "category": ctx.incident.spec.category,
               "appPath": (source.get("path") or f"apps/{ctx.namespace}").strip("/"),
               **{f"signals.{s.name}": f"{s.value:g}" for s in ctx.incident.spec.signals if s.value is not None}}
    record = {"path": f"incidents/{ctx.namespace}/{name}.md", "operation": "createFile",
              "content": incident_record(ctx)}
    changes = _render(params.changes, context) + [record]
    plan = {
        "apiVersion": "reliability.center/v1alpha1",
        "kind": "PatchPlan",
        "metadata": {"name": f"{name}-{ctx.step.name}"[:253],
                     "labels": {"reliability.center/incident": name[:63], "reliability.center/tenant": ctx.tenant
                                if ctx.tenant != "*" else "all"}},
        "spec": {
            "incidentRef": name,
            "repository": repo,
            "title": _render(params.title, context) or f"[{ctx.incident.spec.category}] {name}: level 3 fix",
            "description": ctx.incident.spec.summary,
            "changes": changes,
            **({"argoApplication": app_ref} if app_ref else {}),
        },
    }
    outcome = ctx.propose(plan)
    return Escalate("PatchPlanProposed", f"PatchPlan {plan['metadata']['name']} {outcome}: merging its pull request "
                                         f"is the human validation")
