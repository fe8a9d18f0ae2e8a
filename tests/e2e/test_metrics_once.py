"""A decision's metric counts once, even when the turn that took it is redone.

A turn whose status write meets a newer Incident (someone labelled it meanwhile) is
thrown away and taken again from a fresh read: it decides the same things a second
time. Phase transitions, step results and the time to mitigate are counted when the
status that holds them is saved, not when they are decided, so the redone turn does
not count them twice (the incident moved to Mitigated once).

The turn runs in this test's process against the real cluster, in a namespace the
session operator ignores; the counters read are this process's Prometheus registry.
"""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from reliability_center.gateway import Ref
from reliability_center.operator.context import settings
from reliability_center.operator.runner import StepRunner
from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, load_yaml
from tests.support.incidents import create, incident


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_turn_redone_after_a_conflict_counts_its_decisions_once(solo_namespace, kube):
    ns = solo_namespace
    apply_docs(ns, load_yaml("examples/protected-app/app.yaml"))
    category = f"m{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": [
                           {"name": "stop-invoicing", "level": 1, "action": "feature-flags-off",
                            "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}}]})
    create(ns, incident("twice", category=category, module="billing"))
    read = get_json("incident", "twice", "-n", ns)
    kubectl("label", "incident", "twice", "-n", ns, "seen-by=a-human")  # the read is now stale
    runbooks = [get_json("runbook", f"rb-{category}")]

    StepRunner(kube, settings()).reconcile(read, runbooks)

    status = kube.get(Ref("Incident", ns, "twice"))["status"]
    assert status["phase"] == "Mitigated", status.get("conditions")
    phases = [e["event"].split(":", 1)[1] for e in status["timeline"] if e["event"].startswith("phase:")]
    assert phases.count("Mitigated") == 1, phases
    # Each phase the incident went through (its own timeline says which), counted as often as it happened.
    assert {p: sample("reliability_center_incident_phase_transitions_total", category=category, phase=p)
            for p in phases} == {p: phases.count(p) for p in phases}
    assert sample("reliability_center_time_to_mitigate_seconds_count", category=category) == 1
    assert sample("reliability_center_step_results_total", action="feature-flags-off", level="1",
                  state="Succeeded") >= 1
