"""The post-repair gates (the seed's checklist after a repair): pure verdicts over observations.

An incident that is resolved (``Verifying``) reaches ``Closed`` only when all five pass:

1. ``audit-complete``: every write of every step has a durable audit record, and every durable
   record carries what its kind needs (``engine/record_kinds.py``: a write its trace id, tenant,
   actor, action, target and before/after digests; a vote or a refusal what was decided and why).
2. ``gateway-only``: on every object the incident changed, the fields it set are owned by our field
   manager: no other writer changed them since our write (managedFields name who did).
3. ``rollback-tested``: the Level 1 inverses were dry-run on the apiserver before they were needed;
   each Level 3 fix PatchPlan that merged reached ``Verified`` (its revert applies cleanly).
4. ``slo-normal``: the runbook's PromQL check held on the right side of its threshold for its duration.
5. ``postmortem-shared``: the postmortem pull request is merged; in a namespace without a GitOps
   repository, someone other than the incident's creator acknowledged where it was shared (an
   Approval of step ``postmortem`` with ``spec.sharedAt``, admission stamping who).

The observations are gathered by ``operator/closing.py``; nothing here reads the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reliability_center.api.incident import Gate, PlanState, StepStatus
from reliability_center.api.runbook import SLOCheck
from reliability_center.engine import record_kinds
from reliability_center.engine.approvals import Acknowledgement

GATES = ("audit-complete", "gateway-only", "rollback-tested", "slo-normal", "postmortem-shared")
#: PatchPlan phases after the merge of its pull request.
MERGED = frozenset({"Merged", "Synced", "Verified"})


@dataclass(frozen=True)
class HeldWrite:
    """One write that holds fields, as its snapshot ConfigMap records it."""

    snapshot: str
    step: str
    target: str
    paths: tuple[str, ...]
    created: bool
    """The object did not exist before: the incident created it (its restore deletes it)."""
    taken_at: str


@dataclass(frozen=True)
class Observations:
    steps: list[StepStatus]
    held: list[HeldWrite]
    records: list[dict[str, Any]]
    foreign: dict[str, dict[str, list[str]] | None]
    """By snapshot: the fields of its write that another field manager changed since (path → managers,
    from the object's managedFields); None when the object is gone."""
    rollback: dict[str, str] | None
    """The ``RollbackTested`` condition (status, reason, message), set when the inverses were dry-run."""
    plans: list[PlanState]
    slo: SLOCheck | None
    slo_query: str | None
    slo_values: list[float] | None
    """The values of the SLO query over its duration; None when Prometheus could not answer."""
    slo_error: str = ""
    postmortem_error: str = ""
    lost: dict[str, list[str]] = field(default_factory=dict)
    """By snapshot: the fields its write set whose hold annotation someone removed, still at the value it
    set (so its restore left them, and nothing will restore them)."""
    acknowledgement: Acknowledgement | None = None
    """In a namespace without a GitOps repository (no postmortem pull request): the acknowledgements
    that the postmortem was shared, weighed; None where a repository is configured."""
    shadow: bool = False
    field_manager: str = "reliability-center"
    runbook: str = ""
    """The runbook whose ``spec.slo`` the SLO gate checks: named where the gate says what would pass it."""


def gate(name: str, passed: bool, reason: str, evidence: str, missing: Iterable[str] = ()) -> Gate:
    missing = list(missing)
    return Gate(name=name, passed=passed, reason=reason, evidence=evidence[:4096],  # type: ignore[arg-type]
                missing=[m[:512] for m in missing[:50]])


def written(records: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(step, target) of each write the durable records tell of. A target found already as wanted
    ("unchanged") has its record as much as one written."""
    return {(str(r.get("step")), str(r.get("target"))) for r in records
            if record_kinds.kind_of(r.get("outcome")) in (record_kinds.WRITE, record_kinds.PROPOSAL)}


#: What a restore does first with a write its snapshot tells of (``unrecorded_write``).
RECORDED = "recorded"
"""The durable log has its record: nothing to add."""
RECORD = "record"
"""It landed unrecorded: its record is appended (from its snapshot) before its hold is let go."""
DROP = "drop"
"""It never landed: its snapshot goes, with nothing to record or restore."""
LEAVE = "leave"
"""Left to ``audit-complete``, which names the record missing: one its turn appended and someone removed since,
or one of a write nobody can tell landed."""


def unrecorded_write(step: str, target: str, recorded: set[tuple[str, str]], reported: bool,
                     landed: bool | None) -> str:
    """What a restore does with the write of ``step`` to ``target`` before it lets its hold go. ``recorded``:
    ``written(records)``; ``reported``: the step's status lists the write's snapshot; ``landed``: whether the
    object carries the write (its hold), None when it cannot be told (``gateway.holds.landed``).

    Why: a turn's records reach the durable log in one write at its end, before its status
    (``gateway/audit.one_append``). A turn cut off after its writes landed, and resolved before anyone took it
    again, never appends them, and after the release the object no longer shows the write; a snapshot made by
    a turn cut off before its write (or whose write the apiserver refused) tells of a write that never
    happened. Neither is in any status. Decided while the hold is still there, ``audit-complete`` then asks for
    a record of exactly the writes that happened, and still names one someone removed from the log."""
    if (step, target) in recorded:
        return RECORDED
    if reported or landed is None:
        return LEAVE  # reported: its record was appended before that status, so it was removed since
    return RECORD if landed else DROP


def audit_complete(obs: Observations) -> Gate:
    missing: list[str] = []
    found = written(obs.records)
    restores = {(r.get("step"), r.get("target")) for r in obs.records if str(r.get("action", "")).startswith("restore:")}
    for write in obs.held:
        if (write.step, write.target) not in found:
            missing.append(f"step {write.step}: no audit record of the write to {write.target}")
    for step in obs.steps:
        for target in step.targets:
            if (step.name, target) not in found:
                missing.append(f"step {step.name}: no audit record of the write to {target}")
        if step.state == "Restored":
            for write in (w for w in obs.held if w.step == step.name):
                if (step.name, write.target) not in restores:
                    missing.append(f"step {step.name}: no audit record of the restore of {write.target}")
    for record in obs.records:
        lacking = record_kinds.lacking(record)
        if lacking:
            missing.append(f"record {record.get('action')} {record.get('target')}: lacks {', '.join(lacking)}")
    missing = list(dict.fromkeys(missing))
    writes = len({(w.step, w.target) for w in obs.held} | {(s.name, t) for s in obs.steps for t in s.targets})
    evidence = f"{writes} writes, {len(obs.records)} durable audit records"
    if missing:
        return gate("audit-complete", False, "AuditRecordsMissing", evidence, missing)
    return gate("audit-complete", True, "EveryWriteAudited", evidence)


def gateway_only(obs: Observations) -> Gate:
    missing: list[str] = []
    checked = 0
    for write in obs.held:
        owners = obs.foreign.get(write.snapshot)
        if owners is None:
            if not write.created:
                missing.append(f"{write.target} was deleted by someone else after step {write.step} changed it")
            continue
        checked += len(write.paths)
        for path, managers in sorted(owners.items()):
            missing.append(f"{write.target}{path} changed by {', '.join(managers)} after step {write.step} set it")
    evidence = f"{checked} fields on {len(obs.held)} written objects checked in managedFields"
    if missing:
        return gate("gateway-only", False, "WrittenOutsideTheGateway", evidence, missing)
    return gate("gateway-only", True, "OnlyTheGatewayWrote", evidence + f": all owned by {obs.field_manager}")


def rollback_tested(obs: Observations) -> Gate:
    missing: list[str] = []
    parts: list[str] = []
    for write in obs.held:
        for path in obs.lost.get(write.snapshot, []):
            missing.append(f"{write.target}{'' if path == '/' else path}: its hold annotation was removed, so the "
                           f"restore left it at the value step {write.step} set (HoldLost); put it back by hand "
                           "once it is no longer needed")
    if obs.held and not obs.shadow:
        if obs.rollback is None:
            missing.append("the inverses were never dry-run before the resolve")
        elif obs.rollback["status"] != "True":
            missing.append(f"dry-run of the inverses failed: {obs.rollback['message']}")
        else:
            parts.append(obs.rollback["message"])
    else:
        parts.append("no level 1 change to roll back")
    for plan in (p for p in obs.plans if p.purpose == "fix"):
        if plan.phase == "Verified":
            parts.append(f"PatchPlan {plan.name} Verified (its revert applies cleanly)")
        elif plan.phase in ("Rejected", "RolledBack"):
            parts.append(f"PatchPlan {plan.name} {plan.phase}: nothing of it is deployed")
        else:
            missing.append(f"PatchPlan {plan.name} is {plan.phase}, not Verified: its revert is not proven")
    if missing:
        reason = "HoldLost" if obs.lost else "RollbackNotProven"
        return gate("rollback-tested", False, reason, "; ".join(parts), missing)
    return gate("rollback-tested", True, "RollbackProven", "; ".join(parts))


def slo_normal(obs: Observations) -> Gate:
    slo = obs.slo
    if slo is None:
        return gate("slo-normal", True, "NoSLODeclared", "the runbook declares no SLO check (spec.slo)")
    evidence = f"{obs.slo_query} {slo.comparison} {slo.threshold:g} for {slo.for_}"
    passes = f"the worst value over {slo.for_} is {slo.comparison} {slo.threshold:g}"
    query = f"runbook {obs.runbook}'s spec.slo.query" if obs.runbook else "the runbook's spec.slo.query"
    if obs.slo_values is None:
        return gate("slo-normal", False, "PrometheusUnavailable", evidence, [
            f"{obs.slo_error or 'no answer'}: it passes once the operator can query Prometheus (RC_PROMETHEUS_URL) "
            f"and {passes}"])
    if not obs.slo_values:
        # Why (nothing to compare) and what would pass it: a gate that cannot pass says so, not just "no".
        return gate("slo-normal", False, "NoData", evidence, [
            f"Prometheus has no series for the query over the last {slo.for_}: the app does not export the metric "
            f"it reads for this namespace and module, or Prometheus does not scrape it. It passes once it does and "
            f"{passes} (or once {query} reads a metric the app exports)"])
    ok = all((v < slo.threshold) if slo.comparison == "below" else (v > slo.threshold) for v in obs.slo_values)
    shown = ", ".join(f"{v:g}" for v in obs.slo_values[:10])
    if not ok:
        return gate("slo-normal", False, "SLONotMet", f"{evidence}: worst over the range {shown}",
                    [f"the SLO has not held for {slo.for_} (worst {shown})"])
    return gate("slo-normal", True, "SLOMet", f"{evidence}: worst over the range {shown}")


def postmortem_shared(obs: Observations) -> Gate:
    plan = next((p for p in obs.plans if p.purpose == "postmortem"), None)
    ack = obs.acknowledgement
    if plan is None and ack is not None:
        if ack.counted is not None:
            return gate("postmortem-shared", True, "PostmortemAcknowledged",
                        f"shared at {ack.counted.shared_at}, acknowledged by {ack.counted.user} "
                        f"(Approval {ack.counted.name}, {ack.counted.at or '?'})")
        return gate("postmortem-shared", False, "PostmortemNotAcknowledged", "no GitOps repository, so no postmortem "
                    "pull request; no acknowledgement that counts of where the postmortem was shared",
                    [obs.postmortem_error or "no acknowledgement that the postmortem was shared", *ack.not_counted])
    if plan is None:
        return gate("postmortem-shared", False, "PostmortemNotProposed", "no postmortem pull request yet",
                    [obs.postmortem_error or "the postmortem pull request is being opened"])
    where = f"PatchPlan {plan.name} ({plan.pull_request or 'no pull request yet'})"
    if plan.phase in MERGED:
        return gate("postmortem-shared", True, "PostmortemMerged", f"{where} {plan.phase}")
    return gate("postmortem-shared", False, "PostmortemNotMerged", f"{where} {plan.phase}",
                [f"the postmortem pull request is {plan.phase}: a reviewer merges it"])


def evaluate(obs: Observations) -> list[Gate]:
    return [audit_complete(obs), gateway_only(obs), rollback_tested(obs), slo_normal(obs), postmortem_shared(obs)]


def carried(old: list[Gate], new: list[Gate], now: str) -> list[Gate]:
    """The new verdicts, keeping the time each was reached: ``checkedAt`` moves only when a verdict
    changes (an unchanged verdict is not written again), ``passedAt`` when a gate first passed."""
    before = {g.name: g for g in old}
    out = []
    for fresh in new:
        prior = before.get(fresh.name)
        same = prior is not None and prior.model_dump(exclude={"checked_at", "passed_at"}) == \
            fresh.model_dump(exclude={"checked_at", "passed_at"})
        fresh.checked_at = prior.checked_at if same and prior else now
        if fresh.passed:
            fresh.passed_at = (prior.passed_at if prior and prior.passed else None) or now
        out.append(fresh)
    return out


def all_passed(gates: list[Gate]) -> bool:
    return len(gates) == len(GATES) and all(g.passed for g in gates)
