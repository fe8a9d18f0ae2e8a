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
