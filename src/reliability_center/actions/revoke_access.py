"""Revoke access after security review (seed, cross-tenant, level 2): narrow a RoleBinding.

The RoleBinding that gave the access is named by the step; the subjects it
names are removed from it, in the incident's namespace, through the gateway: snapshotted, held, audited, and put back
on resolve at the index each had. ``roleRef`` is immutable, so narrowing ``subjects`` is the
whole change. Each subject is taken out as one held list item, so two incidents may
each remove a subject of the same binding and each keeps its removal until its
own resolve. Naming no subject removes them all (the apiserver then drops the
empty list; the restore makes it again).

The binding's subjects usually belong to whoever made it (kubectl, Helm, Argo
CD): the step needs ``takeOwnership: true``. The operator needs ``bind`` on
the referenced role to update the binding at all (Kubernetes' escalation check).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from reliability_center.actions.base import ActionContext, Failed, Params, Result, Skipped, Succeeded, action
from reliability_center.gateway.kube import Ref

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
RBAC_GROUP = "rbac.authorization.k8s.io"



class Subject(Params):
    kind: Literal["User", "Group", "ServiceAccount"]
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63,
                                  description="ServiceAccount only; default: the incident's namespace.")

    @model_validator(mode="after")
    def _namespace_only_for_service_accounts(self) -> Subject:
        if self.namespace and self.kind != "ServiceAccount":
            raise ValueError(f"a {self.kind} subject has no namespace")
        return self


class RevokeParams(Params):
    role_binding: str = Field(pattern=DNS_LABEL, max_length=63)
    subjects: list[Subject] = Field(default_factory=list, max_length=100,
                                    description="The subjects to remove; empty: every subject.")


def matches(bound: dict[str, Any], wanted: Subject, namespace: str) -> bool:
    """Does the binding's subject name the same principal? (apiGroup is implied by the kind; a RoleBinding's
    ServiceAccount subject without a namespace is the binding's, as the apiserver reads it.)"""
    if bound.get("kind") != wanted.kind or bound.get("name") != wanted.name:
        return False
    return wanted.kind != "ServiceAccount" or (bound.get("namespace") or namespace) == (wanted.namespace or namespace)


def narrow(bound: list[dict[str, Any]], remove: list[Subject], namespace: str) -> tuple[list, list]:
    """(kept, removed) subjects of a binding, in their order; no subject named removes them all."""
    if not remove:
        return [], list(bound)
    kept, removed = [], []
    for subject in bound:
        (removed if any(matches(subject, w, namespace) for w in remove) else kept).append(subject)
    return kept, removed


def principal(subject: dict[str, Any], namespace: str | None = None) -> str:
    """The user name the apiserver authenticates the subject as (``namespace``: the binding's)."""
    if subject.get("kind") == "ServiceAccount":
        return f"system:serviceaccount:{subject.get('namespace') or namespace}:{subject.get('name')}"
    return f"{subject.get('kind')}:{subject.get('name')}"


@action("revoke-access", params=RevokeParams, levels=(2,),
        summary="Remove subjects from the RoleBinding that gave the access")
def run(ctx: ActionContext, params: RevokeParams) -> Result:
    binding = ctx.read.get(Ref("RoleBinding", ctx.namespace, params.role_binding))
    if binding is None:
        return Failed("RoleBindingNotFound", f"RoleBinding {ctx.namespace}/{params.role_binding} does not exist: "
                                             "nothing to revoke, or it was named wrong")
    kept, removed = narrow(binding.get("subjects") or [], params.subjects, ctx.namespace)
    if not removed and "subjects" not in binding:
        return Skipped("NotBound", f"RoleBinding {params.role_binding} binds no subject: nothing to revoke")
    # Each subject is taken out as one held item: another incident may take out another subject of
    # the same binding, and each is put back, at its index, on its own incident's resolve.
    outcome = ctx.apply({"apiVersion": f"{RBAC_GROUP}/v1", "kind": "RoleBinding",
                         "metadata": {"name": params.role_binding}}, seen=binding,
                        removals=[("/subjects", s) for s in removed])
    if outcome == "unchanged":
        asked = ", ".join(principal({**s.model_dump(), "namespace": s.namespace or ctx.namespace})
                          for s in params.subjects)
        return Skipped("NotBound", f"RoleBinding {params.role_binding} does not bind {asked}: nothing to revoke")
    role = binding.get("roleRef") or {}
    return Succeeded(f"RoleBinding {params.role_binding}: {len(removed)} subjects removed, {len(kept)} kept",
                     {"roleBinding": params.role_binding, "roleRef": f"{role.get('kind')}/{role.get('name')}",
                      "removed": [principal(s, ctx.namespace) for s in removed],
                      "kept": [principal(s, ctx.namespace) for s in kept]})
