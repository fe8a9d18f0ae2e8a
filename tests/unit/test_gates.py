"""The post-repair gates' verdicts, from observations built here (no cluster)."""

from __future__ import annotations

from reliability_center.api.incident import Gate, PlanState, StepStatus
from reliability_center.api.runbook import SLOCheck
from reliability_center.engine import gates
from reliability_center.engine.approvals import Acknowledgement, Ballot, acknowledged

TARGET = "ConfigMap/shop/flags"
WRITE = gates.HeldWrite("rc-snap-1", "degrade", TARGET, ("/data/invoicing",), False, "2026-11-28T10:00:00Z")
RECORD = {"time": "2026-11-28T10:00:00Z", "traceId": "t1", "tenant": "acme", "actor": "system:reliability-center",
          "action": "feature-flags-off", "target": TARGET, "step": "degrade", "before": "sha256:a",
          "after": "sha256:b", "outcome": "applied"}
RESTORE = {**RECORD, "action": "restore:feature-flags-off", "outcome": "restored", "time": "2026-11-28T10:05:00Z"}




def observations(**changes) -> gates.Observations:
    base = dict(
        steps=[StepStatus(name="degrade", level=1, action="feature-flags-off", state="Restored", targets=[TARGET])],
        held=[WRITE], records=[RECORD, RESTORE], foreign={"rc-snap-1": {}},
        rollback={"status": "True", "reason": "DryRunApplies", "message": "1 inverses dry-run: all apply"},
        plans=[PlanState(name="inc-postmortem", phase="Merged", purpose="postmortem", pull_request="http://pr/1")],
        slo=SLOCheck(query="err", threshold=0.05, **{"for": "1m"}), slo_query="max_over_time((err)[1m:])",
        slo_values=[0.01])
    return gates.Observations(**{**base, **changes})


def verdict(name: str, obs: gates.Observations) -> Gate:
    return next(g for g in gates.evaluate(obs) if g.name == name)


def test_all_five_pass_on_a_clean_repair():
    result = gates.evaluate(observations())
    assert [g.name for g in result] == list(gates.GATES)
    assert all(g.passed for g in result), [g for g in result if not g.passed]
    assert gates.all_passed(result)


def test_audit_complete_names_the_write_without_a_record():
    gate = verdict("audit-complete", observations(records=[RESTORE]))
    assert not gate.passed and gate.reason == "AuditRecordsMissing"
    assert f"step degrade: no audit record of the write to {TARGET}" in gate.missing


def test_audit_complete_needs_the_restore_record_and_every_field():
    gate = verdict("audit-complete", observations(records=[{**RECORD, "traceId": ""}]))
    assert not gate.passed
    assert any("no audit record of the restore" in m for m in gate.missing)
    assert any("lacks traceId" in m for m in gate.missing)


VOTE = {"time": "2026-11-28T10:01:00Z", "traceId": "t1", "tenant": "acme", "actor": "alice", "action": "approval",
        "target": "Approval/shop/inc-switch-x1", "step": "switch", "before": None, "after": None,
        "outcome": "counted", "message": "approval counted (inc-switch-x1)"}
REFUSAL = {"time": "2026-11-28T10:00:01Z", "traceId": "t1", "tenant": "acme", "actor": "system:reliability-center",
           "action": "feature-flags-off", "target": "ConfigMap/shop/flags-globex", "step": "degrade", "before": None,
           "after": None, "outcome": "denied", "message": "TenantScope: left out: belongs to tenant 'globex'"}


def test_a_vote_and_a_refusal_are_complete_records_of_a_decision_without_digests():
    """Neither changed the cluster: no before/after to carry, and the gate does not ask for one."""
    gate = verdict("audit-complete", observations(records=[RECORD, REFUSAL, VOTE, RESTORE]))
    assert gate.passed, gate.missing
    assert gate.evidence == "1 writes, 4 durable audit records"


def test_each_kind_of_record_is_checked_for_what_it_must_carry():
    records = [RECORD, RESTORE, {**VOTE, "message": ""}, {**REFUSAL, "traceId": ""}, {**RECORD, "before": None},
               {**RECORD, "outcome": "teleported"}, {**RESTORE, "after": None}]
    gate = verdict("audit-complete", observations(records=records))
    assert not gate.passed
    assert gate.missing == [
        "record approval Approval/shop/inc-switch-x1: lacks message",
        "record feature-flags-off ConfigMap/shop/flags-globex: lacks traceId",
        f"record feature-flags-off {TARGET}: lacks before",
        f"record feature-flags-off {TARGET}: lacks a known outcome (not 'teleported')",
        f"record restore:feature-flags-off {TARGET}: lacks after"]


def test_no_outcome_belongs_to_two_kinds():
    from reliability_center.engine import record_kinds

    outcomes = [o for kind in record_kinds.KINDS for o in kind.outcomes]
    assert len(outcomes) == len(set(outcomes))
    assert record_kinds.kind_of("counted") is record_kinds.DECISION
    assert record_kinds.kind_of("denied") is record_kinds.REFUSAL
    assert record_kinds.kind_of("proposed") is record_kinds.PROPOSAL


def test_a_target_found_already_as_wanted_has_its_record():
    unchanged = {**RECORD, "outcome": "unchanged", "message": "already in the desired state"}
    gate = verdict("audit-complete", observations(held=[], records=[unchanged]))
    assert gate.passed, gate.missing


def test_gateway_only_names_the_manager_that_changed_our_field_after_us():
    obs = observations(foreign={"rc-snap-1": {"/data/invoicing": ["kubectl-edit (Update)"]}})
    gate = verdict("gateway-only", obs)
    assert not gate.passed and gate.reason == "WrittenOutsideTheGateway"
    assert gate.missing == [f"{TARGET}/data/invoicing changed by kubectl-edit (Update) after step degrade set it"]


def test_gateway_only_accepts_objects_we_created_and_deleted_but_not_ours_deleted_by_others():
    created = gates.HeldWrite("rc-snap-2", "isolate", "NetworkPolicy/shop/iso", ("/spec/podSelector",), True, "x")
    gate = verdict("gateway-only", observations(foreign={"rc-snap-1": {}, "rc-snap-2": None}, held=[WRITE, created]))
    assert gate.passed, gate
    deleted = verdict("gateway-only", observations(foreign={"rc-snap-1": None}))
    assert not deleted.passed and "deleted by someone else" in deleted.missing[0]


def test_foreign_owners_since_our_write_reads_managed_fields_by_time():
    from reliability_center.gateway.holds import foreign_owners

    def obj(manager: str, time: str) -> dict:
        return {"metadata": {"managedFields": [
            {"manager": "test-setup", "operation": "Apply", "time": "2026-11-28T09:00:00Z",
             "fieldsV1": {"f:data": {"f:invoicing": {}}}},
            {"manager": manager, "operation": "Update", "time": time, "fieldsV1": {"f:data": {"f:invoicing": {}}}}]}}

    ops = [{"op": "replace", "path": "/data/invoicing"}]
    since = "2026-11-28T10:00:00Z"
    assert foreign_owners(obj("kubectl-edit", "2026-11-28T10:02:00Z"), ops, "reliability-center", since=since) == \
        {"/data/invoicing": ["kubectl-edit (Update)"]}
    assert foreign_owners(obj("reliability-center", since), ops, "reliability-center", since=since) == {}


def test_rollback_tested_needs_the_dry_run_and_verified_fix_plans():
    assert not verdict("rollback-tested", observations(rollback=None)).passed
    refused = verdict("rollback-tested", observations(rollback={"status": "False", "reason": "DryRunRefused",
                                                                "message": "1 of 1 inverses would not apply"}))
    assert not refused.passed and "would not apply" in refused.missing[0]
    proposed = observations(plans=[PlanState(name="fix", phase="Proposed")])
    gate = verdict("rollback-tested", proposed)
    assert not gate.passed and gate.missing == ["PatchPlan fix is Proposed, not Verified: its revert is not proven"]
    assert verdict("rollback-tested", observations(plans=[PlanState(name="fix", phase="Verified")])).passed
    assert verdict("rollback-tested", observations(held=[], rollback=None)).passed  # nothing to roll back


def test_rollback_tested_fails_while_a_field_a_lost_hold_left_stays_at_our_value():
    gate = verdict("rollback-tested", observations(lost={"rc-snap-1": ["/data/invoicing"]}))
    assert not gate.passed and gate.reason == "HoldLost"
    assert gate.missing == [f"{TARGET}/data/invoicing: its hold annotation was removed, so the restore left it at "
                            "the value step degrade set (HoldLost); put it back by hand once it is no longer needed"]
    assert verdict("rollback-tested", observations(lost={})).passed  # put back by hand: nothing left


def test_slo_gate_compares_the_worst_value_and_says_why():
    assert not verdict("slo-normal", observations(slo_values=[0.2])).passed
    assert verdict("slo-normal", observations(slo_values=[0.2])).reason == "SLONotMet"
    assert verdict("slo-normal", observations(slo_values=[])).reason == "NoData"
    down = verdict("slo-normal", observations(slo_values=None, slo_error="connection refused"))
    assert down.reason == "PrometheusUnavailable" and down.missing == [
        "connection refused: it passes once the operator can query Prometheus (RC_PROMETHEUS_URL) and the worst "
        "value over 1m is below 0.05"]
    above = SLOCheck(query="availability", threshold=0.99, comparison="above", **{"for": "5m"})
    assert verdict("slo-normal", observations(slo=above, slo_values=[0.995])).passed
    assert not verdict("slo-normal", observations(slo=above, slo_values=[0.98])).passed
    assert verdict("slo-normal", observations(slo=None)).reason == "NoSLODeclared"


def test_a_slo_gate_without_data_says_why_it_cannot_pass_and_what_would_pass_it():
    gate = verdict("slo-normal", observations(slo_values=[], runbook="perf"))
    assert (gate.passed, gate.reason) == (False, "NoData")
    assert gate.evidence == "max_over_time((err)[1m:]) below 0.05 for 1m"  # the exact query asked
    assert gate.missing == [
        "Prometheus has no series for the query over the last 1m: the app does not export the metric it reads for "
        "this namespace and module, or Prometheus does not scrape it. It passes once it does and the worst value "
        "over 1m is below 0.05 (or once runbook perf's spec.slo.query reads a metric the app exports)"]


def test_postmortem_gate_waits_for_the_merge():
    open_ = verdict("postmortem-shared", observations(plans=[PlanState(name="pm", phase="Proposed",
                                                                        purpose="postmortem")]))
    assert not open_.passed and open_.reason == "PostmortemNotMerged"
    none = verdict("postmortem-shared", observations(plans=[], postmortem_error="no GitOps repository configured"))
    assert not none.passed and none.missing == ["no GitOps repository configured"]


def ack(user: str, at: str = "2026-11-28T11:00:00Z", uid: str = "uid-1", name: str = "") -> Ballot:
    return Ballot(name or f"inc-postmortem-{user}", user, ("rc-approvers",), "Approve", "", at, 0, uid,
                  "https://wiki.example.com/pm/inc")


def acknowledgement(*ballots: Ballot, unvouched: str = "", creator: str | None = "bob") -> Acknowledgement:
    return acknowledged(list(ballots), creator, "system:reliability-center", "uid-1", "2026-11-28T10:30:00Z",
                        unvouched=unvouched)


def test_without_a_repository_someone_other_than_the_creator_acknowledging_where_it_was_shared_passes():
    obs = observations(plans=[], postmortem_error="no GitOps repository configured (...): `relctl postmortem-shared "
                                                  "inc -n shop --where URL`",
                       acknowledgement=acknowledgement(ack("bob"), ack("alice")))
    gate = verdict("postmortem-shared", obs)
    assert gate.passed and gate.reason == "PostmortemAcknowledged"
    assert gate.evidence == ("shared at https://wiki.example.com/pm/inc, acknowledged by alice "
                             "(Approval inc-postmortem-alice, 2026-11-28T11:00:00Z)")
    assert gates.all_passed(gates.evaluate(obs))


def test_the_creators_own_acknowledgement_or_one_the_apiserver_does_not_vouch_for_never_closes_the_gate():
    error = "no GitOps repository configured: `relctl postmortem-shared inc -n shop --where URL`"
    cases = {
        "created the incident": acknowledgement(ack("bob")),
        "admission is off": acknowledgement(ack("alice"), unvouched="admission is off"),
        "another incident": acknowledgement(ack("alice", uid="uid-0")),
        "before the incident was resolved": acknowledgement(ack("alice", at="2026-11-28T10:00:00Z")),
        "operator's own identity": acknowledgement(ack("system:reliability-center")),
        "creator was not recorded": acknowledgement(ack("alice"), creator=None),
    }
    for why, weighed in cases.items():
        gate = verdict("postmortem-shared", observations(plans=[], postmortem_error=error, acknowledgement=weighed))
        assert not gate.passed and gate.reason == "PostmortemNotAcknowledged", why
        assert gate.missing[0] == error, why  # says exactly what would make it pass
        assert len(gate.missing) == 2 and why in gate.missing[1], (why, gate.missing)
    nobody = verdict("postmortem-shared", observations(plans=[], postmortem_error=error,
                                                       acknowledgement=acknowledgement()))
    assert not nobody.passed and nobody.missing == [error]


def test_carried_keeps_checked_at_while_a_verdict_stands_and_passed_at_once_passed():
    first = gates.carried([], gates.evaluate(observations(slo_values=[0.2])), "T1")
    second = gates.carried(first, gates.evaluate(observations(slo_values=[0.2])), "T2")
    assert {g.name: g.checked_at for g in second} == {g: "T1" for g in gates.GATES}
    third = gates.carried(second, gates.evaluate(observations()), "T3")
    slo = next(g for g in third if g.name == "slo-normal")
    assert slo.passed and slo.checked_at == "T3" and slo.passed_at == "T3"
    audit = next(g for g in third if g.name == "audit-complete")
    assert audit.passed_at == "T1"


def test_a_plan_seen_verified_went_through_merged_and_synced():
    """The incident's timeline names every phase of its PatchPlans, also those no pass saw."""
    from reliability_center.operator.follow_plans import passed_through

    assert passed_through(None, "Verified") == ["Proposed", "Merged", "Synced", "Verified"]
    assert passed_through("Proposed", "Synced") == ["Merged", "Synced"]
    assert passed_through("Verified", "RolledBack") == ["RollingBack", "RolledBack"]
    assert passed_through("Proposed", "Rejected") == ["Rejected"]
    assert passed_through(None, "Pending") == ["Pending"]
