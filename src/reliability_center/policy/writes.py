"""May this write happen? Protected data classes, tenant scope, autonomy level, the incident's namespace."""

from __future__ import annotations

from dataclasses import dataclass

TENANT_LABEL = "reliability.center/tenant"
MODULE_LABEL = "reliability.center/module"
ROLE_LABEL = "reliability.center/role"
DATA_CLASS_LABEL = "reliability.center/data-class"

#: Data the operator never writes at level 1 or 2 (seed: ledger, accounting, billing, tax, payment).
PROTECTED_DATA_CLASSES = frozenset({"ledger", "billing", "accounting", "tax", "payment", "tenant-data"})


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = "Allowed"
    message: str = ""


ALLOWED = Verdict(True)


def check_write(*, level: int, incident_tenant: str, target: str, target_labels: dict[str, str]) -> Verdict:
    """The policy check every gateway write passes first."""
    if level not in (1, 2):
        return Verdict(False, "LevelNotAutomated",
                       f"level {level} changes are proposed in Git, never applied by the operator ({target})")
    data_class = target_labels.get(DATA_CLASS_LABEL)
    if data_class in PROTECTED_DATA_CLASSES:
        return Verdict(False, "ProtectedDataClass",
                       f"{target} holds {data_class} data: only a level 3 PatchPlan may change it")
    owner = target_labels.get(TENANT_LABEL)
    if owner and incident_tenant != "*" and owner != incident_tenant:
        return Verdict(False, "TenantScope",
                       f"{target} belongs to tenant {owner!r}, not to the incident's tenant {incident_tenant!r}")
    return ALLOWED


def check_namespace(*, incident_namespace: str, target: str, target_namespace: str | None) -> Verdict:
    """An incident acts in its own namespace only, whatever a record read back says (a restore's target
    comes from a snapshot ConfigMap: a forged one must not steer the operator into another namespace)."""
    if target_namespace == incident_namespace:
        return ALLOWED
    return Verdict(False, "OutsideIncidentNamespace",
                   f"{target} is outside the incident's namespace {incident_namespace!r}: "
                   "an incident acts only in its own namespace")


#: Namespaces the operator never writes in, whatever RBAC grants: the cluster's own (kube-system runs the
#: control plane's add-ons, CoreDNS and on EKS aws-auth; kube-public and kube-node-lease are the cluster's).
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

#: revoke-access narrows only the RoleBindings this label opts in (value "true"): the operator's `bind`
#: would otherwise let it rewrite any binding of the namespaces it serves, its own included.
REVOCABLE_LABEL = "reliability.center/revocable"


def check_place(*, kind: str, target: str, target_namespace: str | None, target_labels: dict[str, str],
                operator_namespace: str, restoring: bool = False) -> Verdict:
    """Where a gateway write may land, whatever RBAC says: never a cluster-scoped object, a system
    namespace or the operator's own namespace (its credentials, locks and leader Lease); a RoleBinding only
    if its label opts it in. ``restoring``: putting back what a write took out (a RoleBinding's removed
    subjects) needs no opt-in: taking the label off must not keep a revoked subject out for ever."""
    if not target_namespace:
        return Verdict(False, "ClusterScoped", f"{target} is cluster-scoped: the operator writes only in the "
                                               "namespaces it serves")
    if target_namespace in SYSTEM_NAMESPACES:
        return Verdict(False, "SystemNamespace", f"{target} is in {target_namespace}, a system namespace: "
                                                 "the operator never writes there")
    if operator_namespace and target_namespace == operator_namespace:
        return Verdict(False, "OperatorNamespace", f"{target} is in the operator's own namespace "
                                                   f"{operator_namespace!r}: it never acts on itself")
    if kind == "RoleBinding" and not restoring and target_labels.get(REVOCABLE_LABEL) != "true":
        return Verdict(False, "RoleBindingNotOptedIn",
                       f"{target} does not carry the label {REVOCABLE_LABEL}=true: revoke-access narrows only "
                       "the RoleBindings their owners opted in")
    return ALLOWED
