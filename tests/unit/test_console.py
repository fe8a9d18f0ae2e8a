"""The console's pure parts: what the list keeps and in which order, ages, escaping, the loopback check."""

from __future__ import annotations

import datetime

from reliability_center.console import render
from reliability_center.console.server import loopback_host


def incident(namespace: str, name: str, created: str, **spec) -> dict:
    status = spec.pop("status", {})
    return {"metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
            "spec": {"category": "perf", "tenant": "acme", "severity": "high", **spec}, "status": status}


ROWS = [render.row(incident("shop", "a", "2026-01-01T00:00:00Z", severity="low", status={"phase": "Mitigated"})),
        render.row(incident("shop", "b", "2026-01-01T00:02:00Z", severity="critical")),
        render.row(incident("ops", "c", "2026-01-01T00:01:00Z", tenant="globex", status={"phase": "Escalated",
                                                                                          "level": 2}))]


def names(rows: list[dict]) -> list[str]:
    return [r["name"] for r in rows]


def test_filters_are_exact_matches_and_q_is_part_of_the_name():
    assert names(render.select(ROWS, {"namespace": "shop"})) == ["b", "a"]
    assert names(render.select(ROWS, {"phase": "Detected"})) == ["b"]  # no status yet: Detected
    assert names(render.select(ROWS, {"tenant": "globex", "level": "2"})) == ["c"]
    assert names(render.select(ROWS, {"q": "c"})) == ["c"]
    assert render.select(ROWS, {"tenant": "acm"}) == []


def test_sorts_newest_first_by_default_and_severity_by_rank():
    assert names(render.select(ROWS, {})) == ["b", "c", "a"]
    assert names(render.select(ROWS, {"sort": "-age"})) == ["a", "c", "b"]  # oldest first
    assert names(render.select(ROWS, {"sort": "severity"})) == ["b", "c", "a"]  # critical, high, low
    assert names(render.select(ROWS, {"sort": "-name"})) == ["c", "b", "a"]
    assert names(render.select(ROWS, {"sort": "nonsense"})) == ["b", "c", "a"]  # an unknown key: by age


def test_age_is_kubectls_short_form():
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert render.age("2026-01-02T03:04:00Z", at) == "5s"
    assert render.age("2026-01-02T02:00:00Z", at) == "1h"
    assert render.age("2025-12-30T00:00:00Z", at) == "3d"
    assert render.age(None, at) == "?"


def test_every_value_is_escaped():
    hostile = render.row(incident("shop", "x", "2026-01-01T00:00:00Z", tenant='<script>alert(1)</script>"'))
    html = render.rows_html([hostile])
    assert "<script>" not in html and "&lt;script&gt;" in html and "&quot;" in html


def test_only_loopback_hosts_are_served_in_local_mode():
    assert loopback_host("127.0.0.1:8080") and loopback_host("localhost:1") and loopback_host("[::1]:80")
    assert not loopback_host("evil.example:8080") and not loopback_host("10.0.0.1:80")


def test_a_windows_next_opening_is_an_instant_in_its_own_zone():
    paris = {"start": "01:00", "end": "05:00", "timezone": "Europe/Paris", "days": ["mon", "tue", "wed", "thu", "fri"]}
    # Saturday 2026-03-28 12:00 UTC: the next weekday is Monday 30 March, after the spring-forward (UTC+2).
    opens = render.window_opens(paris, datetime.datetime(2026, 3, 28, 12, tzinfo=datetime.timezone.utc))
    assert opens is not None and opens.isoformat() == "2026-03-30T01:00:00+02:00"
    at = datetime.datetime(2026, 1, 6, 1, 30, tzinfo=datetime.timezone.utc)  # Tuesday 02:30 in Paris: open now
    assert render.window_opens(paris, at) == at
    html = render._window(paris, datetime.datetime(2026, 3, 28, 12, tzinfo=datetime.timezone.utc))
    assert '<time class="window-opens" datetime="2026-03-29T23:00:00+00:00">2026-03-30 01:00 Europe/Paris</time>' in html
    assert render.window_opens({"start": "01:00", "end": "01:00"}) is None  # an empty window never opens


def test_held_changes_are_per_tenant_with_before_written_and_now():
    import json

    def snapshot(name, tenant, target, before, after, at):
        return {"metadata": {"name": name, "creationTimestamp": at},
                "data": {"tenant": tenant, "target": json.dumps({"kind": "ConfigMap", "namespace": "shop", "name": target}),
                         "before": json.dumps(before), "after": json.dumps(after)}}

    snapshots = [snapshot("s2", "globex", "flags", {"/data/x.globex": "on"}, {"/data/x.globex": "off"}, "2026-01-01T00:01:00Z"),
                 snapshot("s1", "acme", "flags", {"/": {"$absent": True}, "/data/x.acme": {"$absent": True}},
                          {"/": {}, "/data/x.acme": "off"}, "2026-01-01T00:00:00Z"),
                 snapshot("s3", "acme", "secret-store", {"/data/k": "1"}, {"/data/k": "2"}, "2026-01-01T00:02:00Z")]
    current = {"ConfigMap/shop/flags": {"data": {"x.acme": "off", "x.globex": "on"}},
               "ConfigMap/shop/secret-store": "the apiserver refused to show it: 403"}
    rows = render.held_changes(snapshots, current)
    assert [(r["tenant"], r["target"], r["field"], r["before"], r["after"], r["now"]) for r in rows] == [
        ("acme", "ConfigMap/shop/flags", "/data/x.acme", {"$absent": True}, "off", "off"),  # the whole object's "/": not a field
        ("acme", "ConfigMap/shop/secret-store", "/data/k", "1", "2", "the apiserver refused to show it: 403"),
        ("globex", "ConfigMap/shop/flags", "/data/x.globex", "on", "off", "on")]  # someone set it back since
    html = render.changes_html(rows, "")
    assert "<em>absent</em>" in html and "the apiserver refused to show it: 403" in html
    assert "refused to show what" in render.changes_html([], "The apiserver refused to show what this incident changed")
