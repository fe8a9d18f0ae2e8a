"""The postmortem draft and the ``relctl gates`` table, without a cluster.

The draft is read back with a real Markdown parser (markdown-it-py, GFM tables on), so what is
checked is what a reader of the rendered page sees: its sections, table cells and list items.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt

from reliability_center.cli.show import format_gates
from reliability_center.engine.postmortem import render, threshold_proposals

SECTIONS = ["Summary", "Impact", "Detection", "Detection thresholds", "Timeline", "Actions by level",
            "Post-repair gates", "Pull requests", "Root cause", "Prevention", "Action items", "Key times"]
HOSTILE = "p99 | 2.5s\n# not a heading\n- not an item\n| x | y |\r\n*boom* _under_ [link](http://x) <b>"
#: What a reader sees of HOSTILE: one line, every character kept.
HOSTILE_SEEN = "p99 | 2.5s # not a heading - not an item | x | y | *boom* _under_ [link](http://x) <b>"


def write(step: str, target: str, before: str | None, after: str, time: str) -> dict[str, Any]:
    """A durable audit record, as the gateway writes it."""
    return {"time": time, "traceId": "tr-1", "tenant": "acme", "actor": "reliability-center", "action": "flags-off",
            "target": target, "step": step, "before": before, "after": after, "outcome": "applied", "message": ""}


def incident(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
        "metadata": {"name": "search-latency", "namespace": "shop"},
        "spec": {"category": "perf", "severity": "high", "tenant": "acme", "module": "search",
                 "summary": "search is slow", "signals": [
                     {"source": "prometheus", "name": "p99_latency", "value": 2.5, "threshold": 1.0,
                      "time": "2026-03-01T09:59:00Z"},
                     {"source": "alertmanager", "name": "errors", "time": "2026-03-01T09:57:48Z", "resolved": True,
                      "resolvedAt": "2026-03-01T10:30:00Z"}]},
        "status": {
            "phase": "Verifying", "traceId": "tr-1", "runbook": "perf",
            "runbookSpec": {"postmortem": ["Why did the index grow?", "Alert on queue depth"]},
            "steps": [
                {"name": "flags", "level": 1, "action": "feature-flags-off", "state": "Succeeded",
                 "targets": ["ConfigMap/shop/flags"]},
                {"name": "fix-index", "level": 3, "action": "patch-plan", "state": "Escalated", "reason": "Proposed"}],
            "timeline": [
                {"time": "2026-03-01T10:02:00Z", "event": "Detected", "message": "matched runbook perf"},
                {"time": "2026-03-01T10:02:07Z", "event": "flags-off:applied", "step": "flags",
                 "actor": "reliability-center", "target": "ConfigMap/shop/flags", "beforeDigest": "sha256:aa",
                 "afterDigest": "sha256:bb"}],
            "gates": [{"name": "audit-complete", "passed": True, "reason": "EveryWriteAudited",
                       "evidence": "1 write, 1 record"}],
            "times": {"detected": "2026-03-01T10:02:00Z", "firstAction": "2026-03-01T10:02:07Z",
                      "mitigated": "2026-03-01T11:05:09Z"},
            **status,
        },
    }


def read(markdown: str) -> dict[str, dict[str, list]]:
    """Per section (h1 and h2 titles): its table rows (header first) and list items, as plain text."""
    doc: dict[str, dict[str, list]] = {}
    section = doc.setdefault("", {"rows": [], "items": []})
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    for i, token in enumerate(tokens):
        if token.type != "inline":
            continue
        seen = "".join(c.content if c.type in ("text", "code_inline") else " " if c.type == "softbreak" else ""
                       for c in token.children or [])
        opener = tokens[i - 1].type
        if opener == "heading_open" and tokens[i - 1].tag in ("h1", "h2"):
            section = doc.setdefault(seen, {"rows": [], "items": []})
        elif opener in ("th_open", "td_open"):
            if tokens[i - 2].type == "tr_open":
                section["rows"].append([])
            section["rows"][-1].append(seen)
        elif opener == "paragraph_open" and tokens[i - 2].type == "list_item_open":
            section["items"].append(seen)
    return doc


def test_every_section_is_there_in_order_under_a_title_with_the_name_and_trace_id():
    doc = read(render(incident()))
    assert list(doc)[1:] == ["Postmortem: search-latency (traceId tr-1)", *SECTIONS]
    assert doc["Root cause"] == doc["Prevention"] == {"rows": [], "items": []}
    assert "_to be completed_" in render(incident()).split("## Root cause")[1].split("##")[0]


def test_key_times_are_measured_from_detection_and_mttd_from_the_earliest_signal():
    doc = read(render(incident()))
    # By hand: signals at 09:57:48 and 09:59:00, detected 10:02:00 -> 4 min 12 s; first action 10:02:07;
    # mitigated 11:05:09 -> 1 h 3 min 9 s; never resolved.
    assert doc["Key times"]["items"] == ["MTTD (first signal → detected): 4m12s", "Time to first action: 7s",
                                         "Time to mitigate: 1h3m9s", "Time to resolve: n/a"]
    assert "Duration: unknown (detected 2026-03-01T10:02:00Z → not resolved yet)" in doc["Impact"]["items"]

    resolved = incident(times={"detected": "2026-03-01T10:02:00Z", "resolved": "2026-03-02T10:02:01Z"})
    doc = read(render(resolved))
    assert doc["Key times"]["items"][1:] == ["Time to first action: n/a", "Time to mitigate: n/a",
                                             "Time to resolve: 24h0m1s"]
    assert ("Duration: 24h0m1s (detected 2026-03-01T10:02:00Z → resolved 2026-03-02T10:02:01Z)"
            in doc["Impact"]["items"])


def test_summary_impact_and_detection_come_from_the_spec():
    doc = read(render(incident()))
    assert doc["Summary"]["items"] == ["Summary: search is slow", "Category: perf, severity high", "Runbook: perf",
                                       "Phase: Verifying"]
    assert doc["Impact"]["items"][:3] == ["Tenants: acme", "Modules: search", "Namespace: shop"]
    everyone = incident()
    everyone["spec"].update(tenant="*", module=None)
    everyone["spec"]["signals"][0]["labels"] = {"module": "ocr"}
    assert read(render(everyone))["Impact"]["items"][:2] == ["Tenants: all tenants", "Modules: ocr"]
    assert doc["Detection"]["rows"] == [
        ["Signal", "Source", "Value / threshold", "Time", "Resolved"],
        ["p99_latency", "prometheus", "2.5 / 1", "2026-03-01T09:59:00Z", "no"],
        ["errors", "alertmanager", "- / -", "2026-03-01T09:57:48Z", "yes (2026-03-01T10:30:00Z)"]]


def test_action_items_are_the_runbooks_postmortem_list_as_checkboxes():
    markdown = render(incident())
    assert "- [ ] Why did the index grow?\n- [ ] Alert on queue depth\n" in markdown
    assert read(markdown)["Action items"]["items"] == ["[ ] Why did the index grow?", "[ ] Alert on queue depth"]
    assert read(render(incident(runbookSpec={})))["Action items"]["items"] == []


def test_hostile_text_from_alerts_stays_in_its_line_and_its_cell():
    hostile = incident(
        gates=[{"name": "rollback-tested", "passed": False, "reason": "DryRunFailed", "evidence": HOSTILE,
                "missing": ["snapshot a | b", "snapshot\nc"]}],
        timeline=[{"time": "2026-03-01T10:02:00Z", "event": "Detected", "message": HOSTILE}])
    hostile["spec"]["summary"] = HOSTILE
    hostile["spec"]["signals"][0]["name"] = HOSTILE
    markdown = render(hostile)
    doc = read(markdown)

    assert list(doc)[1:] == ["Postmortem: search-latency (traceId tr-1)", *SECTIONS]  # no heading injected
    assert doc["Summary"]["items"][0] == f"Summary: {HOSTILE_SEEN}"
    assert doc["Detection"]["rows"][1] == [HOSTILE_SEEN, "prometheus", "2.5 / 1", "2026-03-01T09:59:00Z", "no"]
    assert doc["Timeline"]["rows"][1] == ["2026-03-01T10:02:00Z", "-", "Detected", "", "-", "", HOSTILE_SEEN]
    assert doc["Post-repair gates"]["rows"][1] == [
        "rollback-tested", "no", "DryRunFailed", f"{HOSTILE_SEEN}; missing: snapshot a | b, snapshot c"]
    assert all(len(row) == len(rows[0]) for rows in (s["rows"] for s in doc.values()) for row in rows)


def test_audit_records_the_timeline_no_longer_holds_appear_once_each_in_time_order():
    audit = [write("flags", "ConfigMap/shop/old-flags", None, "sha256:01", "2026-03-01T10:02:03Z"),
             write("flags", "ConfigMap/shop/flags", "sha256:aa", "sha256:bb", "2026-03-01T10:02:07Z")]
    doc = read(render(incident(), audit=audit))
    assert [row[:5] for row in doc["Timeline"]["rows"][1:]] == [
        ["2026-03-01T10:02:00Z", "-", "Detected", "", "-"],
        ["2026-03-01T10:02:03Z", "flags", "flags-off:applied", "reliability-center", "ConfigMap/shop/old-flags"],
        ["2026-03-01T10:02:07Z", "flags", "flags-off:applied", "reliability-center", "ConfigMap/shop/flags"]]
    assert doc["Actions by level"]["items"] == [
        "flags (feature-flags-off): Succeeded; targets: ConfigMap/shop/flags",
        "ConfigMap/shop/old-flags: - → sha256:01 (flags-off:applied at 2026-03-01T10:02:03Z)",
        "ConfigMap/shop/flags: sha256:aa → sha256:bb (flags-off:applied at 2026-03-01T10:02:07Z)",
        "fix-index (patch-plan): Escalated (Proposed); targets: -"]
    assert "### Level 1" in render(incident()) and "### Level 3" in render(incident())


def test_pull_requests_come_from_the_plans_and_gates_from_the_status():
    plan = {"metadata": {"name": "fix-index-1"},
            "status": {"phase": "Merged", "pullRequest": {"url": "http://gitea.local/o/r/pulls/7"}}}
    doc = read(render(incident(), plans=[plan]))
    assert doc["Pull requests"]["rows"] == [["PatchPlan", "Phase", "Pull request"],
                                            ["fix-index-1", "Merged", "http://gitea.local/o/r/pulls/7"]]
    assert doc["Post-repair gates"]["rows"] == [["Gate", "Passed", "Reason", "Evidence / missing"],
                                                ["audit-complete", "yes", "EveryWriteAudited", "1 write, 1 record"]]


def test_relctl_gates_lists_every_gate_what_a_failing_one_misses_and_how_many_fail():
    status = {"phase": "Verifying", "gates": [
        {"name": "audit-complete", "passed": True, "reason": "EveryWriteAudited", "evidence": "3 writes, 3 records"},
        {"name": "rollback-tested", "passed": False, "reason": "DryRunMissing", "evidence": "1 of 2 snapshots",
         "missing": ["dry-run of rc-snap-b", "dry-run of\nrc-snap-c"]}]}
    assert format_gates(status) == (
        "GATE               PASSED  REASON             EVIDENCE\n"
        "audit-complete     yes     EveryWriteAudited  3 writes, 3 records\n"
        "gateway-only       -       (not evaluated)\n"
        "rollback-tested    no      DryRunMissing      1 of 2 snapshots\n"
        "    missing: dry-run of rc-snap-b\n"
        "    missing: dry-run of rc-snap-c\n"
        "slo-normal         -       (not evaluated)\n"
        "postmortem-shared  -       (not evaluated)\n"
        "not closed: 4 of 5 gates failing")


def test_relctl_gates_says_when_the_incident_closed_or_when_nothing_was_evaluated():
    passed = [{"name": n, "passed": True, "reason": "Ok"} for n in
              ("audit-complete", "gateway-only", "rollback-tested", "slo-normal", "postmortem-shared")]
    closed = format_gates({"phase": "Closed", "gates": passed, "times": {"closed": "2026-03-01T12:00:00Z"}})
    assert closed.splitlines()[-1] == "closed at 2026-03-01T12:00:00Z"
    assert [line.split()[1] for line in closed.splitlines()[1:-1]] == ["yes"] * 5
    assert format_gates({"phase": "Mitigating"}) == "gates not evaluated yet (phase Mitigating)"


# ------------------------------------------------------------------------------ detection thresholds


def am(name: str, time: str, refires: int = 0, fingerprint: str = "a1") -> dict[str, Any]:
    return {"source": "alertmanager", "name": name, "time": time, "fingerprint": fingerprint, "refires": refires,
            "labels": {"alertname": name}, "resolved": True}


def test_a_rule_that_fired_five_minutes_after_the_incident_was_known_is_proposed_to_fire_earlier():
    times = {"detected": "2026-03-01T10:00:05Z"}
    spec = {"signals": [am("PerfErrorRatioHigh", "2026-03-01T10:00:00Z"),
                        am("PerfQueueSaturated", "2026-03-01T10:05:00Z", fingerprint="b2"),  # 5 min after the first
                        am("integration_errors", "2026-03-01T10:04:59Z", fingerprint="c3"),  # 4m59s: not late
                        {"source": "prometheus", "name": "p99_latency", "time": "2026-03-01T11:00:00Z"}]}
    (proposal,) = threshold_proposals(spec, times)
    assert (proposal["alert"], proposal["factor"]) == ("PerfQueueSaturated", 0.8)
    assert "fired 5m0s after the incident was first known (2026-03-01T10:00:00+00:00)" in proposal["why"]
    # Known first by a person: the incident was created before any alert fired.
    (proposal,) = threshold_proposals({"signals": [am("OcrModelErrors", "2026-03-01T10:20:00Z")]},
                                      {"detected": "2026-03-01T10:00:00Z"})
    assert (proposal["alert"], proposal["factor"]) == ("OcrModelErrors", 0.8) and "20m0s" in proposal["why"]


def test_a_rule_that_resolved_and_fired_again_twice_is_proposed_to_fire_less_often():
    times = {"detected": "2026-03-01T10:00:00Z"}
    once = {"signals": [am("OcrModelErrors", "2026-03-01T10:00:00Z", refires=1)]}
    assert threshold_proposals(once, times) == []
    twice = {"signals": [am("OcrModelErrors", "2026-03-01T10:00:00Z", refires=2)]}
    (proposal,) = threshold_proposals(twice, times)
    assert (proposal["alert"], proposal["factor"]) == ("OcrModelErrors", 1.25)
    assert "fired again 2 times" in proposal["why"]
    # Late and flapping ask for opposite moves: nothing is proposed.
    both = {"signals": [am("PerfErrorRatioHigh", "2026-03-01T10:00:00Z"),
                        am("OcrModelErrors", "2026-03-01T10:30:00Z", refires=3, fingerprint="b2")]}
    assert threshold_proposals(both, times) == []


def test_the_draft_says_what_it_proposes_and_where():
    body = incident()
    body["spec"]["signals"] = [am("PerfErrorRatioHigh", "2026-03-01T10:00:00Z"),
                               am("PerfQueueSaturated", "2026-03-01T10:09:00Z", fingerprint="b2")]
    shown = render(body, rules_path="monitoring/rules.yaml").split("## Detection thresholds")[1].split("\n## ")[0]
    assert "proposed as an edit of `monitoring/rules.yaml` in this pull request" in shown
    assert "- `PerfQueueSaturated`: fired " in shown
    assert "not proposed as an edit" in render(body).split("## Detection thresholds")[1].split("\n## ")[0]
    assert "_no rule fired late or flapped_" in render(incident())
