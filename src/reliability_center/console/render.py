"""The console's HTML, rendered on the server from the objects as the apiserver returned them.

Every value is escaped; no inline script or style (the Content-Security-Policy forbids both): behaviour
comes from /static/console.js, looks from /static/console.css.
"""

from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any, get_args
from urllib.parse import quote, urlencode

from reliability_center.api.incident import GateName
from reliability_center.api.runbook import Window, zone
from reliability_center.engine.progress import next_opening
from reliability_center.gateway.holds import WHOLE
from reliability_center.gateway.leaves import ABSENT, read

#: The list's columns: (query key, heading). Each is a filter (``?phase=Mitigated``) and a sort (``?sort=-age``).
COLUMNS = [("namespace", "Namespace"), ("name", "Name"), ("phase", "Phase"), ("category", "Category"),
           ("tenant", "Tenant"), ("severity", "Severity"), ("level", "Level"), ("age", "Age"),
           ("runbook", "Runbook")]
FILTERS = ("namespace", "phase", "category", "tenant", "severity", "level", "runbook")
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def parse_time(value: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat((value or "").replace("Z", "+00:00"))
    except ValueError:
        return None


def age(created: str | None, at: datetime.datetime | None = None) -> str:
    """kubectl's short age: 45s, 12m, 3h, 2d."""
    since = parse_time(created)
    if since is None:
        return "?"
    seconds = max(0, int(((at or now()) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def row(obj: dict[str, Any]) -> dict[str, Any]:
    """What the list shows of one incident."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    return {"namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "phase": status.get("phase") or "Detected", "category": spec.get("category", ""),
            "tenant": spec.get("tenant", ""), "severity": spec.get("severity", ""),
            "level": status.get("level") if status.get("level") is not None else "",
            "created": meta.get("creationTimestamp"), "runbook": status.get("runbook") or "",
            "rv": meta.get("resourceVersion", "")}


def digest(rows: list[dict[str, Any]]) -> str:
    """Which versions of which incidents a page shows: the live feed sends nothing until they change."""
    import hashlib

    seen = sorted(f"{r['namespace']}/{r['name']}@{r['rv']}" for r in rows)
    return hashlib.sha256("\n".join(seen).encode()).hexdigest()[:32]


def select(rows: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    """The rows the URL's filters keep (each an exact match; ``q``: part of the name), in its sort order."""
    kept = [r for r in rows
            if all(str(r[k]) == query[k] for k in FILTERS if query.get(k))
            and (query.get("q") or "") in r["name"]]
    sort = query.get("sort") or "age"
    key, reverse = sort.lstrip("-"), sort.startswith("-")
    if key not in {c for c, _ in COLUMNS}:
        key, reverse = "age", False
    if key == "age":  # by age: the youngest (the latest created) first
        key, reverse = "created", not reverse
    if key == "severity":
        return sorted(kept, key=lambda r: (SEVERITY_ORDER.get(r["severity"], 9), r["namespace"], r["name"]),
                      reverse=reverse)
    return sorted(kept, key=lambda r: (str(r[key] or ""), r["namespace"], r["name"]), reverse=reverse)


def incident_href(namespace: str, name: str) -> str:
    return f"/incidents/{quote(namespace, safe='')}/{quote(name, safe='')}"


def rows_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<tr><td colspan="9" class="empty">No incident you may read matches these filters.</td></tr>'
    at = now()
    return "".join(row_html(r, at) for r in rows)


def row_html(r: dict[str, Any], at: datetime.datetime | None = None) -> str:
    at = at or now()
    return (f'<tr data-name="{e(r["namespace"])}/{e(r["name"])}"><td>{e(r["namespace"])}</td>'
            f'<td><a href="{e(incident_href(r["namespace"], r["name"]))}">{e(r["name"])}</a></td>'
            f'<td class="phase phase-{e(r["phase"].lower())}">{e(r["phase"])}</td>'
            f'<td>{e(r["category"])}</td><td>{e(r["tenant"])}</td><td>{e(r["severity"])}</td><td>{e(r["level"])}</td>'
            f'<td title="{e(r["created"])}">{e(age(r["created"], at))}</td><td>{e(r["runbook"])}</td></tr>')


def page(title: str, body: str, who: str) -> str:
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e(title)} · Reliability Center</title>"
            "<link rel=\"stylesheet\" href=\"/static/console.css\">"
            "<script src=\"/static/console.js\" defer></script></head><body>"
            "<header><nav><a class=\"home\" href=\"/\">Reliability Center</a> <a href=\"/\">Incidents</a> "
            "<a href=\"/runbooks\">Runbooks</a></nav>"
            f"<span class=\"who\">acting as <strong>{e(who)}</strong></span></header>"
            f"<main>{body}</main></body></html>")


def notice(kind: str, text: str) -> str:
    role = "alert" if kind == "error" else "status"
    return f'<p class="notice {kind}" role="{role}">{e(text)}</p>'


def list_page(rows: list[dict[str, Any]], query: dict[str, str], refused: dict[str, str], who: str,
              shown: str = "") -> str:
    def sort_link(key: str, heading: str) -> str:
        current = query.get("sort") or "age"
        target = f"-{key}" if current == key else key
        mark = " ▲" if current == key else " ▼" if current == f"-{key}" else ""
        return f'<a href="/?{e(urlencode({**query, "sort": target}))}">{e(heading)}{mark}</a>'

    inputs = "".join(
        f'<label>{e(heading)} <input name="{key}" value="{e(query.get(key, ""))}"></label>'
        for key, heading in COLUMNS if key in FILTERS)
    filters = (f'<form class="filters" method="get" action="/">{inputs}'
               f'<label>Name contains <input name="q" value="{e(query.get("q", ""))}"></label>'
               f'<input type="hidden" name="sort" value="{e(query.get("sort", "age"))}">'
               '<button type="submit">Filter</button> <a href="/">Clear</a></form>')
    warnings = "".join(notice("error", f"Namespace {ns}: the apiserver refused to list its incidents: {message}")
                       for ns, message in sorted(refused.items()))
    head = "".join(f'<th scope="col">{sort_link(k, h)}</th>' for k, h in COLUMNS)
    feed = f"/events?{urlencode({**query, 'shown': shown})}"
    return page("Incidents", f"<h1>Incidents</h1>{filters}{warnings}"
                f'<p class="live" id="live" data-feed="{e(feed)}" role="status">Live updates: connecting…</p>'
                f'<table class="incidents"><thead><tr>{head}</tr></thead><tbody id="rows">{rows_html(rows)}</tbody>'
                "</table>", who)


def _json(value: Any) -> str:
    return e(json.dumps(value, sort_keys=True, indent=1))


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'


def _approval(namespace: str, name: str, step: dict[str, Any], csrf: str) -> str:
    approval = step.get("approval") or {}
    plan = (step.get("evidence") or {}).get("plan") or {}
    changes = "".join(f"<tr><td>{e(c.get('target'))}</td><td><pre>{_json(c.get('before'))}</pre></td>"
                      f"<td><pre>{_json(c.get('after'))}</pre></td></tr>" for c in plan.get("changes") or [])
    votes = "".join(f"<li>{e(v.get('decision'))} by <strong>{e(v.get('user'))}</strong> at {e(v.get('at'))}: "
                    + ("counted" if v.get("counted") else f"not counted ({e(v.get('reason'))})") + "</li>"
                    for v in approval.get("votes") or [])
    out = (f'<div class="approval"><p>Plan <code>{e(approval.get("planDigest"))}</code>, '
           f'{len(plan.get("changes") or [])} changes; needs {e(approval.get("needed", 1))} approval(s); '
           f'escalates at {e(approval.get("deadline") or "-")}.</p>'
           f'<table class="plan"><thead><tr><th scope="col">Target</th><th scope="col">Before</th>'
           f'<th scope="col">After</th></tr></thead><tbody>{changes}</tbody></table>'
           + (f"<p>Dry-run: {e(plan.get('dryRun'))}</p>" if plan.get("dryRun") else "")
           + f"<h4>Votes</h4><ul>{votes or '<li>none yet</li>'}</ul>"
           + f"<p>{e('Approved.' if approval.get('approved') else approval.get('missing') or 'Waiting.')}</p>")
    if step.get("state") == "AwaitingApproval" and approval.get("planDigest"):
        action = e(incident_href(namespace, name) + "/decide")
        out += (f'<form method="post" action="{action}" class="decide">{_csrf(csrf)}'
                f'<input type="hidden" name="step" value="{e(step["name"])}">'
                f'<input type="hidden" name="digest" value="{e(approval["planDigest"])}">'
                f'<label>Comment (for the audit trail) <input name="comment" maxlength="1000"></label>'
                '<button type="submit" name="decision" value="Approve">Approve this plan</button> '
                '<button type="submit" name="decision" value="Reject" class="danger">Reject</button></form>')
    return out + "</div>"


def held_changes(snapshots: list[dict[str, Any]], current: dict[str, dict[str, Any] | str | None]
                 ) -> list[dict[str, Any]]:
    """What the incident changed, per tenant: one row per held field of each snapshot (the durable record a write
    takes before it writes): its value before, what the step wrote, and now. ``current``: each target (``Kind/ns/name``)
    as the person read it, None when it is gone, or the apiserver's refusal (a sentence)."""
    rows = []
    for cm in sorted(snapshots, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"])):
        data = cm.get("data") or {}
        target = json.loads(data["target"])
        name = f"{target['kind']}/{target['namespace']}/{target['name']}"
        before, after = json.loads(data["before"]), json.loads(data["after"])
        live = current.get(name)
        for path in sorted(p for p in after if p != WHOLE):
            now_value = live if isinstance(live, str) else ABSENT if live is None else read(live, path)
            rows.append({"tenant": data.get("tenant", ""), "target": name, "field": path,
                         "before": before.get(path, ABSENT), "after": after[path], "now": now_value,
                         "refused": isinstance(live, str)})
    return sorted(rows, key=lambda r: r["tenant"])


def _value(value: Any) -> str:
    return "<em>absent</em>" if value == ABSENT else f"<code>{e(json.dumps(value))}</code>"


def changes_html(rows: list[dict[str, Any]], refused: str) -> str:
    if refused:
        return f"<h2>What changed, per tenant</h2>{notice('error', refused)}"
    if not rows:
        return "<h2>What changed, per tenant</h2><p>No step of this incident holds a field (nothing to restore).</p>"
    body = "".join(f'<tr data-field="{e(r["target"])}{e(r["field"])}"><td>{e(r["tenant"])}</td><td>{e(r["target"])}</td>'
                   f'<td><code>{e(r["field"])}</code></td><td class="before">{_value(r["before"])}</td>'
                   f'<td class="after">{_value(r["after"])}</td>'
                   f'<td class="now">{e(r["now"]) if r["refused"] else _value(r["now"])}</td></tr>' for r in rows)
    return ('<h2>What changed, per tenant</h2><table class="changes"><thead><tr><th scope="col">Tenant</th>'
            '<th scope="col">Object</th><th scope="col">Field</th><th scope="col">Before</th>'
            f'<th scope="col">Written</th><th scope="col">Now</th></tr></thead><tbody>{body}</tbody></table>')


def incident_page(body: dict[str, Any], csrf: str, who: str, flash: str = "", error: str = "",
                  postmortem: str = "", windows: dict[str, dict[str, Any]] | None = None, changes: str = "") -> str:
    """The page around ``incident_body``, which the live feed (``/incidents/NS/NAME/events``) replaces as the
    Incident changes."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    feed = incident_href(namespace, name) + "/events?" + urlencode({"shown": meta.get("resourceVersion", "")})
    return page(name, f'<p class="crumbs"><a href="/?{e(urlencode({"namespace": namespace}))}">Incidents in '
                      f'{e(namespace)}</a></p><h1>{e(name)}</h1>'
                + (notice("error", error) if error else "") + (notice("ok", flash) if flash else "")
                + '<p class="live" id="incident-live" role="status">Live updates: connecting…</p>'
                + f'<div id="incident" data-feed="{e(feed)}">'
                + incident_body(body, csrf, postmortem, windows, changes) + "</div>", who)


def incident_body(body: dict[str, Any], csrf: str, postmortem: str = "",
                  windows: dict[str, dict[str, Any]] | None = None, changes: str = "") -> str:
    """``windows``: each step's Level 2 window, from the Runbook (when the person may read it)."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    namespace, name = meta["namespace"], meta["name"]
    parts: list[str] = []
    facts = [("Phase", status.get("phase") or "Detected"), ("Level", status.get("level")),
             ("Severity", spec.get("severity")), ("Tenant", spec.get("tenant")), ("Category", spec.get("category")),
             ("Module", spec.get("module")), ("Runbook", status.get("runbook")), ("Mode", status.get("mode")),
             ("Trace", status.get("traceId")), ("Opened", meta.get("creationTimestamp")),
             ("Resolved", "yes" if spec.get("resolved") else "no")]
    parts.append('<dl class="facts">' + "".join(f'<dt>{e(k)}</dt><dd class="fact-{e(k.lower())}">'
                                                f"{e(v if v is not None else '-')}</dd>"
                                                for k, v in facts) + "</dl>")
    if spec.get("summary"):
        parts.append(f'<p class="summary">{e(spec["summary"])}</p>')
    if status.get("phase") != "Closed" and not spec.get("resolved"):
        parts.append(f'<form method="post" action="{e(incident_href(namespace, name) + "/resolve")}" class="resolve">'
                     f'{_csrf(csrf)}<button type="submit">Resolve: restore what Levels 1 and 2 changed</button></form>')
    parts.append(changes)
    steps = status.get("steps") or []
    parts.append("<h2>Steps</h2>" if steps else "<h2>Steps</h2><p>No step has run yet.</p>")
    for level in sorted({s.get("level", 0) for s in steps}):
        parts.append(f"<h3>Level {e(level)}</h3>")
        for step in (s for s in steps if s.get("level", 0) == level):
            evidence = {k: v for k, v in (step.get("evidence") or {}).items() if k != "plan"}
            parts.append(
                f'<section class="step" id="step-{e(step["name"])}"><h4>{e(step["name"])} '
                f'<span class="state state-{e(str(step.get("state", "")).lower())}">{e(step.get("state"))}</span></h4>'
                f'<p>{e(step.get("action"))}{": " + e(step.get("reason")) if step.get("reason") else ""}'
                f'{" — " + e(step.get("message")) if step.get("message") else ""}</p>'
                + (f"<p>Targets: {e(', '.join(step.get('targets') or []))}</p>" if step.get("targets") else "")
                + (f'<p class="window">Window: {_window(windows[step["name"]])}</p>'
                   if step["name"] in (windows or {}) else "")
                + (f"<details><summary>Evidence</summary><pre>{_json(evidence)}</pre></details>" if evidence else "")
                + (_approval(namespace, name, step, csrf) if step.get("approval") else "")
                + "</section>")
    gates = {g["name"]: g for g in status.get("gates") or []}
    gate_rows = []
    for gate_name in get_args(GateName):
        gate = gates.get(gate_name)
        if gate is None:
            gate_rows.append(f"<tr><td>{e(gate_name)}</td><td>not evaluated yet</td><td></td><td></td></tr>")
            continue
        missing = "".join(f"<li>{e(m)}</li>" for m in gate.get("missing") or [])
        gate_rows.append(f"<tr><td>{e(gate_name)}</td><td>{'passed' if gate.get('passed') else 'not passed'}"
                         f"{': ' + e(gate.get('reason')) if gate.get('reason') else ''}</td>"
                         f"<td>{e(gate.get('evidence'))}</td><td>{'<ul>' + missing + '</ul>' if missing else ''}</td></tr>")
    parts.append('<h2>Gates</h2><table class="gates"><thead><tr><th scope="col">Gate</th><th scope="col">Verdict</th>'
                 '<th scope="col">Evidence</th><th scope="col">Missing</th></tr></thead><tbody>'
                 + "".join(gate_rows) + "</tbody></table>")
    plans = status.get("plans") or []
    parts.append("<h2>PatchPlans</h2>" + ("<p>None.</p>" if not plans else ""))
    for plan in plans:
        link = (f' <a href="{e(plan["pullRequest"])}" rel="noreferrer">pull request</a>'
                if str(plan.get("pullRequest") or "").startswith(("https://", "http://")) else "")
        rollback = ""
        if plan.get("phase") not in ("RollingBack", "RolledBack", "Rejected"):
            rollback = (f'<form method="post" class="inline" action="/patchplans/{e(quote(namespace, safe=""))}/'
                        f'{e(quote(plan["name"], safe=""))}/rollback">{_csrf(csrf)}'
                        '<button type="submit">Roll back</button></form>')
        parts.append(f'<p class="plan">{e(plan["name"])} ({e(plan.get("purpose", "fix"))}): '
                     f'<strong>{e(plan.get("phase"))}</strong>{link} {rollback}</p>')
    timeline = "".join(f"<tr><td>{e(t.get('time'))}</td><td>{e(t.get('step') or '-')}</td><td>{e(t.get('event'))}</td>"
                       f"<td>{e(t.get('actor') or '')}</td><td>{e(t.get('target') or '')}</td>"
                       f"<td>{e(t.get('message') or '')}</td></tr>" for t in status.get("timeline") or [])
    parts.append('<h2>Timeline</h2><table class="timeline"><thead><tr><th scope="col">Time</th><th scope="col">Step</th>'
                 '<th scope="col">Event</th><th scope="col">Actor</th><th scope="col">Target</th>'
                 f'<th scope="col">Message</th></tr></thead><tbody>{timeline}</tbody></table>')
    if postmortem:
        parts.append(f"<h2>Postmortem draft</h2><details><summary>Markdown</summary><pre>{e(postmortem)}</pre></details>")
    return "".join(parts)


def window_opens(window: dict[str, Any], at: datetime.datetime | None = None) -> datetime.datetime | None:
    """The window's next opening (``at`` itself when open), in the window's own zone; None when it does not open
    within a year or the runbook's window does not parse (the operator reports that on the Runbook)."""
    try:
        parsed = Window.model_validate(window)
    except ValueError:
        return None
    opens = next_opening(parsed, (at or now()).isoformat())
    return None if opens is None else opens.astimezone(zone(parsed.timezone))


def _window(window: dict[str, Any], at: datetime.datetime | None = None) -> str:
    """The window in its own zone (server-side text); its next opening as an instant that console.js also shows
    in the viewer's zone (the browser knows it, the server does not)."""
    days = ", ".join(window.get("days") or []) or "every day"
    freezes = "".join(f"<li>frozen {e(f.get('start'))} to {e(f.get('end'))}: {e(f.get('reason'))}</li>"
                      for f in window.get("freeze") or [])
    opens = window_opens(window, at)
    when = ("does not open within a year" if opens is None else
            f'next opens <time class="window-opens" datetime="{e(opens.astimezone(datetime.timezone.utc).isoformat())}">'
            f'{e(opens.strftime("%Y-%m-%d %H:%M"))} {e(window.get("timezone", "UTC"))}</time>')
    return (f"may start {e(window.get('start'))}–{e(window.get('end'))} {e(window.get('timezone', 'UTC'))} "
            f"(the window's own zone), {e(days)}; {when}" + (f"<ul>{freezes}</ul>" if freezes else ""))


def runbooks_page(runbooks: list[dict[str, Any]], used: dict[str, int], who: str, error: str = "") -> str:
    """Each Runbook: readiness, what it matches, its steps by level (approval, window), guards, and the incidents
    (that the person may list) which followed it."""
    parts = ["<h1>Runbooks</h1>", notice("error", error) if error else ""]
    if not runbooks and not error:
        parts.append("<p>No Runbook is installed.</p>")
    for runbook in sorted(runbooks, key=lambda r: r["metadata"]["name"]):
        name, spec, status = runbook["metadata"]["name"], runbook.get("spec") or {}, runbook.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        verdict = ("ready" if ready.get("status") == "True" else "not ready") + (
            f": {ready.get('reason')} — {ready.get('message')}" if ready else ": not validated by the operator yet")
        match = spec.get("match") or {}
        parts.append(f'<section class="runbook" id="rb-{e(name)}"><h2>{e(name)}</h2>'
                     f'<p>{e(verdict)}</p><p>Matches category <code>{e(match.get("category"))}</code>'
                     + (f", severities {e(', '.join(match['severities']))}" if match.get("severities") else "")
                     + f'. <a href="/?{e(urlencode({"runbook": name}))}">{used.get(name, 0)} incident(s) you may '
                       f"read followed it</a>.</p>")
        steps = spec.get("steps") or []
        for level in sorted({st.get("level", 0) for st in steps}):
            items = []
            for st in (x for x in steps if x.get("level", 0) == level):
                approval = st.get("approval") or {}
                governed = ""
                if approval:
                    who_may = ", ".join(approval.get("approvers") or []) or "anyone with the approve verb"
                    governed = (f"; approval by {e(approval.get('minApprovals', 1))} of {e(who_may)}, escalates after "
                                f"{e(approval.get('timeout', '4h'))}"
                                + (f"; {_window(approval['window'])}" if approval.get("window") else ""))
                items.append(f"<li><strong>{e(st.get('name'))}</strong>: {e(st.get('action'))}"
                             f"{' — ' + e(st.get('description')) if st.get('description') else ''}{governed}</li>")
            parts.append(f"<h3>Level {e(level)}</h3><ul>{''.join(items)}</ul>")
        guards = "".join(f"<li><strong>{e(g.get('name'))}</strong>: {e(g.get('description'))} "
                         f"(enforced by {e(g.get('enforcedBy', 'policy'))})</li>" for g in spec.get("guards") or [])
        parts.append((f"<h3>Guards</h3><ul>{guards}</ul>" if guards else "") + "</section>")
    return page("Runbooks", "".join(parts), who)


def same_site_again(path: str) -> str:
    """Opens ``path`` again from this origin (a meta refresh: no script), so the session cookie goes along."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"0; url={e(path)}\"><title>Opening…</title></head>"
            f"<body><p><a href=\"{e(path)}\">Open this page of the console</a>.</p></body></html>")


def error_page(status: int, text: str, who: str = "?") -> str:
    return page("Error", f"<h1>{e(status)}</h1>{notice('error', text)}<p><a href=\"/\">Incidents</a></p>", who)
