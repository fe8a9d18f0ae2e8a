"""Pydantic models of every custom resource: the one source the CRDs are generated from."""

from reliability_center.api.common import GROUP, VERSION, Condition
from reliability_center.api.incident import Incident, IncidentSpec, IncidentStatus
from reliability_center.api.patchplan import PatchPlan, PatchPlanSpec, PatchPlanStatus
from reliability_center.api.runbook import Runbook, RunbookSpec, RunbookStatus

__all__ = [
    "GROUP",
    "VERSION",
    "Condition",
    "Incident",
    "IncidentSpec",
    "IncidentStatus",
    "PatchPlan",
    "PatchPlanSpec",
    "PatchPlanStatus",
    "Runbook",
    "RunbookSpec",
    "RunbookStatus",
]
