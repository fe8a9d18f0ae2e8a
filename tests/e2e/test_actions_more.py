"""Level 1 actions beyond the seed playbooks' paths: OpenFeature flags, SAFE_MODE off,
shared ingestion for all tenants, restores, field ownership, metrics and JSON logs."""

from __future__ import annotations

import json
import uuid

import pytest

from reliability_center.gateway.holds import Edit, locate
from tests.conftest import METRICS_PORT, OPERATOR_LOG
from tests.support.cluster import apply_docs, apply_runbook, get_json, kubectl, wait_for
from tests.support.incidents import app_content, changed, create, incident, resolve, settle_app, steps, wait_phase
from tests.support.jobs import IDEMPOTENT, failed_job

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]


def runbook(steps_: list[dict]) -> str:
    category = f"a{uuid.uuid4().hex[:8]}"
    apply_runbook(category, {"steps": steps_})
    wait_for(lambda: get_json("runbook", f"rb-{category}").get("status", {}).get("conditions"), what="runbook")
    return category


def test_openfeature_flags_are_turned_off_by_flipping_the_default_variant(app):
    apply_docs(app, [{"apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
                      "metadata": {"name": "search-flags", "labels": {"reliability.center/role": "flags",
                                                                     "reliability.center/module": "search"},
                                   "annotations": {"reliability.center/critical-flags": "search-core"}},
                      "spec": {"flagSpec": {"flags": {
                          "search-core": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                          "defaultVariant": "on"},
                          "search-suggestions": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                                 "defaultVariant": "on"},
                          "no-off-variant": {"state": "ENABLED", "variants": {"a": "x", "b": "y"},
                                             "defaultVariant": "a"}}}}}])
    category = runbook([{"name": "flags", "level": 1, "action": "feature-flags-off", "takeOwnership": True,
                         "params": {"backend": "openfeature", "modules": ["search"]}}])
    create(app, incident("of", category=category, tenant="*"))
    st = wait_phase(app, "of", "Mitigated")
    flags = get_json("featureflag", "search-flags", "-n", app)["spec"]["flagSpec"]["flags"]
    assert flags["search-suggestions"]["defaultVariant"] == "off"
    assert flags["search-suggestions"]["state"] == "ENABLED"  # flagd treats DISABLED as an error
    assert flags["search-core"]["defaultVariant"] == "on"  # critical
    assert flags["no-off-variant"]["defaultVariant"] == "a"  # no safe off variant: left alone
    resolve(app, "of")
    wait_phase(app, "of", "Verifying")
    flags = get_json("featureflag", "search-flags", "-n", app)["spec"]["flagSpec"]["flags"]
    assert flags["search-suggestions"]["defaultVariant"] == "on"
    assert steps(st)["flags"] == "Succeeded"


def test_human_in_the_loop_is_skipped_when_safe_mode_does_not_allow_it(app):
    kubectl("patch", "configmap", "reliability-center-settings", "-n", app, "--type=merge",
            "-p", '{"data":{"SAFE_MODE":"false"}}')
    settle_app(app)
    before = app_content(app)
    category = runbook([{"name": "hitl", "level": 1, "action": "human-in-the-loop", "params": {"modules": ["ocr"]}}])
    create(app, incident("hitl", category=category))
    st = wait_phase(app, "hitl", "Mitigated")
    assert st["steps"][0]["state"] == "Skipped" and st["steps"][0]["reason"] == "SafeModeOff"
    assert changed(before, app_content(app)) == set()


@pytest.mark.app_at_rest(False)  # it writes workloads: their pods must exist
def test_pausing_ingestion_for_every_tenant_suspends_cronjobs_and_scales_all_to_zero_then_restores(app):
    apply_docs(app, [{"apiVersion": "batch/v1", "kind": "CronJob",
                      "metadata": {"name": "ingest-batch", "labels": {"reliability.center/role": "ingestion",
                                                                     "reliability.center/module": "ocr"}},
                      "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                          "restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.invalid/i:1"}]}}}}}}])
    settle_app(app)
    before = app_content(app)
    category = runbook([{"name": "pause", "level": 1, "action": "pause-ingestion", "params": {"modules": ["ocr"]},
                          "takeOwnership": True}])
    create(app, incident("pause-all", category=category, tenant="*"))
    wait_phase(app, "pause-all", "Mitigated")
    assert get_json("cronjob", "ingest-batch", "-n", app)["spec"]["suspend"] is True
    for d in ("ingest-ocr-acme", "ingest-ocr-globex", "ingest-ocr-initech", "ingest-ocr-shared"):
        assert get_json("deployment", d, "-n", app)["spec"]["replicas"] == 0
    resolve(app, "pause-all")
    wait_phase(app, "pause-all", "Verifying")
    assert changed(before, app_content(app)) == set()  # replicas and suspend are back as they were


def test_every_field_the_operator_wrote_is_owned_by_its_field_manager(app):
    create(app, incident("xt", category="cross-tenant", module="exports"))
    st = wait_phase(app, "xt", "Escalated")  # level 1 done; the mandatory PatchPlan went to a human
    targets = {e["target"] for e in st["timeline"] if e.get("target") and e["event"].endswith(":applied")}
    assert targets
    for target in targets:
        kind, _, name = target.split("/")
        obj = get_json(kind.lower(), name, "-n", app, "--show-managed-fields")
        managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
        # One fixed field manager (what Argo CD's managedFieldsManagers names), writing by patch.
        assert "reliability-center" in managers and not managers & {"kubectl-patch", "kubectl-client-side-apply"}
    cm = get_json("configmap", "flags-exports", "-n", app, "--show-managed-fields")
    ours = [m for m in cm["metadata"]["managedFields"] if m["manager"] == "reliability-center"]
    assert [m["operation"] for m in ours] == ["Update"]
    # It owns exactly the keys it wrote and their hold annotations, nothing the app's own manager set.
    assert set(ours[0]["fieldsV1"]["f:data"]) == {"f:bulk-export.tenant.acme", "f:cross-tenant-export.tenant.acme"}
    held = {k for k in ours[0]["fieldsV1"]["f:metadata"]["f:annotations"]}
    assert held == {"f:" + locate(Edit(f"/data/{k}", None).key)[0]
                    for k in ("bulk-export.tenant.acme", "cross-tenant-export.tenant.acme")}


def test_the_operator_logs_structured_json(app):
    create(app, incident("bill", category="billing", module="billing"))
    st = wait_phase(app, "bill", "Mitigated")
    lines = [json.loads(line) for line in OPERATOR_LOG.read_text().splitlines() if line.strip().startswith("{")]
    # This incident's own audit lines (found by its trace id), not whatever the last line of a shared log is.
    ours = [p for p in lines if (p.get("audit") or {}).get("traceId") == st["traceId"]]
    assert ours, "the incident's audit lines carry their record as JSON fields"
    assert {(p["audit"]["action"], p["audit"]["target"]) for p in ours} == {
        ("feature-flags-off", f"ConfigMap/{app}/flags-billing")}
    for line in ours:
        assert {"traceId", "tenant", "actor", "action", "target", "before", "after", "outcome"} <= set(line["audit"])
        assert line["audit"]["tenant"] == "acme" and line["timestamp"]


def metric(text: str, family: str, /, **labels: str) -> float:
    """One sample of the Prometheus text format (0 when the series does not exist yet)."""
    wanted = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(family + wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_operator_serves_prometheus_metrics_that_count_this_incident(app):
    import httpx

    def scrape() -> str:
        return httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text

    # A category of its own: the series labelled by category count this incident alone; those labelled
    # by action are shared with the session's other incidents, so they are checked to have moved.
    category = runbook([{"name": "stop-invoicing", "level": 1, "action": "feature-flags-off",
                         "params": {"modules": ["billing"], "flags": ["auto-invoicing"]}}])
    own = [("reliability_center_incident_phase_transitions_total", {"category": category, "phase": "Mitigated"}),
           ("reliability_center_time_to_mitigate_seconds_count", {"category": category}),
           ("reliability_center_time_to_first_action_seconds_count", {"category": category})]
    shared = [("reliability_center_step_results_total",
               {"action": "feature-flags-off", "level": "1", "state": "Succeeded"}),
              ("reliability_center_gateway_writes_total", {"action": "feature-flags-off", "outcome": "applied"}),
              # The incidents' work queue, by client-go's names: this incident was added and passed over.
              ("workqueue_adds_total", {"name": "incidents"}),
              ("workqueue_queue_duration_seconds_count", {"name": "incidents"}),
              ("workqueue_work_duration_seconds_count", {"name": "incidents"})]
    before = scrape()
    create(app, incident("bill", category=category, module="billing"))
    wait_phase(app, "bill", "Mitigated")
    after = wait_for(lambda: (t := scrape()) and all(metric(t, n, **l) > metric(before, n, **l) for n, l in own + shared)
                     and t, timeout=10, what="the counters to move")
    assert [metric(after, n, **l) for n, l in own] == [1, 1, 1]
    # The gauge counts the incidents in each phase now (from the operator's index): this one.
    assert metric(after, "reliability_center_incidents", category=category, phase="Mitigated") == 1
    # Both queues report, each under its name (the PatchPlans' queue has been idle: zeros, but served).
    for name in ("incidents", "patchplans"):
        assert f'workqueue_depth{{name="{name}"}}' in after and f'workqueue_retries_total{{name="{name}"}}' in after


@pytest.mark.app_at_rest(False)  # it writes workloads: their pods must exist
def test_a_field_another_manager_owns_is_left_to_it_unless_the_step_declares_takeownership(app):
    """Replicas belong to the app's field manager (test-setup, by server-side apply) and the HPA."""
    settle_app(app)
    before = app_content(app)
    refused = runbook([{"name": "pause", "level": 1, "action": "pause-ingestion", "params": {"modules": ["ocr"]}}])
    create(app, incident("refused", category=refused, module="ocr"))
    st = wait_phase(app, "refused", "Escalated")
    step = st["steps"][0]
    assert step["state"] == "Blocked" and step["reason"] == "FieldManagedElsewhere", step
    assert "/spec/replicas from test-setup (Apply)" in step["message"]
    assert changed(before, app_content(app)) == set()
    events = [e for e in get_json("events", "-n", app)["items"] if e["reason"] == "AuditRefused"]
    assert any("FieldManagedElsewhere" in e["message"] and "ingest-ocr-acme" in e["message"] for e in events)
    # Declared: the field is taken, and the audit says from whom.
    taken = runbook([{"name": "pause", "level": 1, "action": "pause-ingestion", "params": {"modules": ["ocr"]},
                      "takeOwnership": True}])
    create(app, incident("taken", category=taken, module="ocr"))
    st = wait_phase(app, "taken", "Mitigated")
    write = next(e for e in st["timeline"] if e["event"] == "pause-ingestion:applied")
    assert "took over /spec/replicas from test-setup (Apply)" in write["message"]
    assert get_json("deployment", "ingest-ocr-acme", "-n", app)["spec"]["replicas"] == 0


def test_replays_of_failed_jobs_with_the_longest_names_allowed_are_accepted_by_the_apiserver(namespace):
    # Seen before: <name>-replay-<hash> reached 68 characters, over the 63 of the job-name label the
    # apiserver puts on a Job, and the step failed InvalidChange.
    longest = ["ingest-" + "x" * 55 + str(i) for i in range(2)]  # 63 characters, the most a Job's name may have
    for name in longest:
        failed_job(namespace, name, {"reliability.center/module": "ingest", **IDEMPOTENT})
    category = runbook([{"name": "replay", "level": 1, "action": "replay-jobs",
                         "params": {"selector": "reliability.center/module=ingest", "maxReplays": 2}}])
    create(namespace, incident("long", category=category))
    st = wait_phase(namespace, "long", {"Mitigated", "Failed"})
    assert steps(st) == {"replay": "Succeeded"}, st["steps"]
    jobs = {j["metadata"]["labels"]["reliability.center/replay-of"]: j["metadata"]["name"]
            for j in get_json("jobs", "-n", namespace)["items"]
            if "reliability.center/replay-of" in j["metadata"]["labels"]}
    assert sorted(jobs) == longest and all(len(name) <= 63 for name in jobs.values()), jobs
