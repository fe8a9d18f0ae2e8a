"""A decision's metric counts once, even when the turn that took it is redone.

A turn whose status write meets a newer Incident (someone labelled it meanwhile) is
thrown away and taken again from a fresh read: it decides the same things a second
time. Phase transitions, step results and durations, writes, refusals and the time to
mitigate are counted when the status that holds them is saved, not when they are
decided, so the redone turn does not count them twice (the incident moved to Mitigated
once).

The turn runs in this test's process against the real cluster, in a namespace the
session operator ignores; the counters read are this process's Prometheus registry,
compared before and after. The expected counts come from the saved Incident: its
timeline (each phase, each audited write and refusal), its steps' states and attempts.
"""

from __future__ import annotations

import uuid
from collections import Counter

from prometheus_client import REGISTRY

from reliability_center.gateway import Ref
from reliability_center.operator.context import settings
from reliability_center.operator.runner import StepRunner
from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, load_yaml
from tests.support.incidents import create, incident

ACTION = "feature-flags-off"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """The operator's counters this test reads, as they stand (to compare before and after a turn)."""

    def __init__(self, category: str, outcomes=("applied", "unchanged", "denied"), reasons=("ProtectedDataClass",)):
        self.values = {
            **{("step", state): sample("reliability_center_step_results_total", action=ACTION, level="1", state=state)
               for state in ("Succeeded", "Blocked", "Failed", "Escalated")},
            **{("write", o): sample("reliability_center_gateway_writes_total", action=ACTION, outcome=o) for o in outcomes},
            **{("refusal", r): sample("reliability_center_gateway_refusals_total", reason=r) for r in reasons},
            ("seconds", ACTION): sample("reliability_center_step_seconds_count", action=ACTION),
            ("mitigate", category): sample("reliability_center_time_to_mitigate_seconds_count", category=category),
        }

    def since(self, before: Counts) -> dict:
        return {k: v - before.values[k] for k, v in self.values.items() if v != before.values[k]}


def redone_turn(kube, ns: str, category: str, name: str) -> tuple[dict, dict]:
    """One reconcile from a read made stale before it runs; the saved status and the counters it moved."""
    create(ns, incident(name, category=category, module="billing"))
    read = get_json("incident", name, "-n", ns)
    kubectl("label", "incident", name, "-n", ns, "seen-by=a-human")  # the read is now stale
    runbooks = [get_json("runbook", f"rb-{category}")]
    before = Counts(category)
    StepRunner(kube, settings()).reconcile(read, runbooks)
    moved = Counts(category).since(before)
    return kube.get(Ref("Incident", ns, name))["status"], moved


def recorded(status: dict) -> dict:
    """What the saved status says happened, in the counters' terms."""
    expected: Counter = Counter()
    for entry in status["timeline"]:
        if entry.get("target") and entry["event"].startswith(f"{ACTION}:"):
            expected["write", entry["event"].split(":", 1)[1]] += 1  # each audited write or refusal
    for step in status["steps"]:
        if step["state"] != "Pending":
            expected["step", step["state"]] += 1
        expected["seconds", ACTION] += step.get("attempts", 0)  # each step call the saved status records
        if step["state"] == "Blocked":
            expected["refusal", step["reason"]] += 1
    if status.get("times", {}).get("mitigated"):
        expected["mitigate", status["runbook"].removeprefix("rb-")] += 1
    return dict(expected)


def test_a_turn_redone_after_a_conflict_counts_its_decisions_once(solo_namespace, kube):
    ns = solo_namespace
    apply_docs(ns, load_yaml("examples/protected-app/app.yaml"))
    category = f"m{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "stop-invoicing", "level": 1, "action": ACTION,
                            "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}}]})

    status, moved = redone_turn(kube, ns, category, "twice")

    assert status["phase"] == "Mitigated", status.get("conditions")
    phases = [e["event"].split(":", 1)[1] for e in status["timeline"] if e["event"].startswith("phase:")]
    assert phases.count("Mitigated") == 1, phases
    # Each phase the incident went through (its own timeline says which), counted as often as it happened.
    assert {p: sample("reliability_center_incident_phase_transitions_total", category=category, phase=p)
            for p in phases} == {p: phases.count(p) for p in phases}
    assert moved == recorded(status)
    # Spelled out: one step, called once in the saved status, one write applied, mitigated once.
    assert moved == {("step", "Succeeded"): 1, ("write", "applied"): 1, ("seconds", ACTION): 1,
                     ("mitigate", category): 1}, moved


def test_a_refusal_in_a_redone_turn_counts_once(solo_namespace, kube):
    ns = solo_namespace
    apply_docs(ns, load_yaml("examples/protected-app/app.yaml") + [
        {"apiVersion": "v1", "kind": "ConfigMap",  # a flags store that holds ledger data: refused at level 1
         "metadata": {"name": "flags-billing-ledger",
                      "labels": {"reliability.center/role": "flags", "reliability.center/module": "billing",
                                 "reliability.center/data-class": "ledger"}},
         "data": {"auto-invoicing": "true"}}])
    category = f"m{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "stop-invoicing", "level": 1, "action": ACTION,
                            "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}}]})

    status, moved = redone_turn(kube, ns, category, "refused")

    step = status["steps"][0]
    assert (step["state"], step["reason"]) == ("Blocked", "ProtectedDataClass"), step
    assert moved == recorded(status)
    # Spelled out: flags-billing written, the ledger store refused, once each; one refusal; one step call.
    assert moved == {("step", "Blocked"): 1, ("write", "applied"): 1, ("write", "denied"): 1,
                     ("refusal", "ProtectedDataClass"): 1, ("seconds", ACTION): 1}, moved
