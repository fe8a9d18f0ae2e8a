"""Phase: Verifying → Closed. Once resolved and restored, the post-repair gates: the postmortem
proposed (or, without a GitOps repository, acknowledged as shared), the five verdicts of
``engine/gates.py`` on what ``operator/closing.py`` observes, each change in the timeline;
Closed when all pass, else when to look again."""

from __future__ import annotations

from collections.abc import Callable

from reliability_center.actions.patch_plan import repository_from
from reliability_center.api.common import now_iso
from reliability_center.api.incident import Gate, IncidentStatus
from reliability_center.api.runbook import Runbook
from reliability_center.engine import gates as verdicts
from reliability_center.engine.approvals import Acknowledgement
from reliability_center.gateway import Kube, WriteGateway, audit
from reliability_center.operator import closing, metrics
from reliability_center.operator.admission import AdmissionCheck
from reliability_center.operator.draft import Draft
from reliability_center.operator.follow_plans import follow_plans
from reliability_center.operator.settings import GateSettings


def verify(draft: Draft, *, pinned: Callable[[IncidentStatus], Runbook], kube: Kube, gateway: WriteGateway, admission: AdmissionCheck,
           identity: Callable[[], str], namespace_settings: Callable[[str], dict[str, str]],
           settings: GateSettings) -> float | None:
    """Resolved: evaluate the post-repair gates; Closed when all pass. Returns when to look again."""
    if draft.shadow:
        return None  # nothing was changed: nothing to verify
    before = {g.name: (g.passed, g.reason) for g in draft.status.gates}
    runbook = pinned(draft.status) if draft.status.runbook_spec else None
    raw = closing.plans_of(kube, draft.ref.namespace, draft.ref.name)
    follow_plans(draft, kube, raw)
    error = ""
    acknowledgement = None
    proposed = any(p.purpose == "postmortem" for p in draft.status.plans)
    ns_settings = {} if proposed else namespace_settings(draft.ref.namespace)
    if not proposed and repository_from(ns_settings) is None:
        error = closing.unproposable(draft.ref.name, draft.ref.namespace)  # no draft to render: no gates twice
        # No pull request to merge: a person's acknowledgement of where it was shared closes the gate.
        acknowledgement = closing.acknowledgement(kube, admission, draft.body, draft.status.times.resolved, identity())
        counted = acknowledgement.counted
        if counted is not None and before.get("postmortem-shared") != (True, "PostmortemAcknowledged"):
            draft.act(counted.user, "postmortem-shared", f"Approval/{draft.ref.namespace}/{counted.name}",
                      "counted", f"postmortem shared at {counted.shared_at}")
    elif not proposed:
        draft.status.gates = gates(draft, kube, runbook, settings, "")  # the draft shows the gates as they stand
        records_ = audit.read_log(kube, draft.ref.namespace, draft.body["metadata"]["uid"])
        body = {**draft.body, "spec": draft.incident.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
                "status": draft.status.model_dump(by_alias=True, exclude_none=True, mode="json")}
        error = closing.propose_postmortem(gateway, draft.write_context("postmortem", 3), body, ns_settings, raw,
                                           records_)
        if not error:
            draft.note("postmortem:proposed", f"PatchPlan {draft.ref.name}-postmortem")
            follow_plans(draft, kube, closing.plans_of(kube, draft.ref.namespace, draft.ref.name))
    draft.status.gates = gates(draft, kube, runbook, settings, error, acknowledgement)
    for gate in draft.status.gates:
        if before.get(gate.name) != (gate.passed, gate.reason):
            draft.count(metrics.GATES.labels(gate.name, str(gate.passed).lower()).inc)
            draft.note(f"gate:{gate.name}", f"{'passed' if gate.passed else 'failing'} ({gate.reason}): "
                                            f"{gate.evidence}")
    if verdicts.all_passed(draft.status.gates):
        draft.status.times.closed = now_iso()
        draft.condition("Closed", "True", "GatesPassed", "every post-repair gate passed")
        draft.condition("Ready", "True", "Closed", "closed: every post-repair gate passed")
        draft.phase("Closed")
        return None
    failing = [g for g in draft.status.gates if not g.passed]
    draft.condition("Closed", "False", "GatesFailing",
                    "; ".join(f"{g.name}: {g.reason}" for g in failing)[:1024])
    # Only the SLO and a field left by a lost hold (a person puts it back) change on their own;
    # PatchPlan changes wake the incident.
    by_name = {g.name: g for g in draft.status.gates}
    recheck = not by_name["slo-normal"].passed or by_name["rollback-tested"].reason == "HoldLost"
    return settings.interval if recheck else None


def gates(draft: Draft, kube: Kube, runbook: Runbook | None, settings: GateSettings, postmortem_error: str,
          acknowledgement: Acknowledgement | None = None) -> list[Gate]:
    obs = closing.observe(kube, draft.status, draft.incident, draft.body, runbook, draft.status.plans,
                          settings.prometheus_url, postmortem_error, acknowledgement)
    return verdicts.carried(draft.status.gates, verdicts.evaluate(obs), now_iso())
