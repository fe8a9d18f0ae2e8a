"""A PatchPlan proposal redone by a retried turn (the plan exists already) is recorded as the proposal it is:
a record the audit-complete gate accepts (seen in the demo: 'record patch-plan …: lacks before' kept an
incident from closing)."""

from __future__ import annotations

from typing import Any

from reliability_center.engine import record_kinds
from reliability_center.gateway import audit
from reliability_center.gateway.kube import Conflict
from reliability_center.gateway.writes import WriteContext, WriteGateway

INCIDENT = {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
            "metadata": {"name": "bill", "namespace": "shop", "uid": "u-1"}}
PLAN = {"apiVersion": "reliability.center/v1alpha1", "kind": "PatchPlan",
        "metadata": {"name": "bill-patch-plan", "namespace": "shop"}, "spec": {"title": "fix"}}


class ExistsAlready:
    def create(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        raise Conflict("patchplans.reliability.center \"bill-patch-plan\" already exists")


def test_a_proposal_found_made_by_an_earlier_attempt_is_recorded_as_a_complete_proposal(monkeypatch) -> None:
    emitted: list[audit.AuditRecord] = []
    monkeypatch.setattr(audit, "emit", lambda kube, incident, record, durable: emitted.append(record))
    ctx = WriteContext(incident=INCIDENT, trace_id="t" * 32, tenant="acme", step="patch-plan", level=3)
    result = WriteGateway(ExistsAlready()).propose(ctx, {**PLAN, "metadata": dict(PLAN["metadata"])},  # type: ignore[arg-type]
                                                    action="patch-plan")
    assert result.outcome == "proposed"
    durable = emitted[0].durable()  # what the durable log keeps, and the gate reads
    assert record_kinds.kind_of(durable["outcome"]) is record_kinds.PROPOSAL
    assert record_kinds.lacking(durable) == []
