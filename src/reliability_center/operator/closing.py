"""What closing an incident observes: its writes, their objects, its PatchPlans, Prometheus.

The verdicts are ``engine/gates.py``'s; this module only reads (the cluster, the durable audit
log, the Prometheus HTTP API) and proposes the postmortem through the gateway, like any Level 3
change: a PatchPlan whose pull request adds ``postmortems/<namespace>/<incident>.md``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from reliability_center.actions.patch_plan import repository_from
from reliability_center.api.approval import CREATED_BY, POSTMORTEM_STEP
from reliability_center.api.incident import Incident, IncidentStatus, PlanState
from reliability_center.api.patchplan import REPO_PATH
from reliability_center.api.runbook import Runbook, SLOCheck
from reliability_center.engine import gates as verdicts
from reliability_center.engine.approvals import Acknowledgement, Ballot, acknowledged
from reliability_center.engine.postmortem import render, threshold_proposals
from reliability_center.gateway import Kube, Ref, WriteContext, WriteGateway, audit
from reliability_center.gateway.holds import WHOLE, foreign_owners, gone_holds
from reliability_center.gateway.kube import FIELD_MANAGER, Fenced, Invalid, describe, transient
from reliability_center.gateway.leaves import ABSENT
from reliability_center.gateway.writes import INCIDENT_UID_LABEL, STEP_ANNOTATION, taken_holds
from reliability_center.operator.admission import AdmissionCheck
from reliability_center.operator.govern import ADMISSION_FRESH


INCIDENT_LABEL = "reliability.center/incident"
PURPOSE_LABEL = "reliability.center/purpose"
#: Seconds the Prometheus query may take.
PROMETHEUS_TIMEOUT = 5.0


def plans_of(kube: Kube, namespace: str, incident: str) -> list[dict[str, Any]]:
    found = kube.list("PatchPlan", namespace, f"{INCIDENT_LABEL}={incident[:63]}")
    return [p for p in found if (p.get("spec") or {}).get("incidentRef") == incident]


def plan_states(plans: list[dict[str, Any]]) -> list[PlanState]:
    out = []
    for plan in sorted(plans, key=lambda p: p["metadata"]["name"]):
        status = plan.get("status") or {}
        purpose = (plan["metadata"].get("labels") or {}).get(PURPOSE_LABEL, "fix")
        out.append(PlanState(name=plan["metadata"]["name"], phase=status.get("phase") or "Pending",
                             pull_request=(status.get("pullRequest") or {}).get("url"),
                             purpose="postmortem" if purpose == "postmortem" else "fix"))
    return out


def held_writes(kube: Kube, namespace: str, uid: str) -> list[verdicts.HeldWrite]:
    """The incident's writes that hold fields, from their snapshots (read from the cluster, not status)."""
    return [write for write, _ in _snapshots(kube, namespace, uid)]


def _snapshots(kube: Kube, namespace: str, uid: str) -> list[tuple[verdicts.HeldWrite, dict[str, str]]]:
    """Each write that holds fields, with its snapshot's data, oldest first."""
    out = []
    for cm in kube.list("ConfigMap", namespace, f"{INCIDENT_UID_LABEL}={uid}"):
        data = cm.get("data") or {}
        target, before, after = json.loads(data["target"]), json.loads(data["before"]), json.loads(data["after"])
        out.append((verdicts.HeldWrite(
            snapshot=cm["metadata"]["name"],
            step=(cm["metadata"].get("annotations") or {}).get(STEP_ANNOTATION, ""),
            target=str(Ref(target["kind"], target["namespace"], target["name"])),
            paths=tuple(sorted(p for p in after if p != WHOLE)),
            created=before.get(WHOLE) == ABSENT,
            taken_at=cm["metadata"].get("creationTimestamp", "")), data))
    return sorted(out, key=lambda pair: (pair[0].taken_at, pair[0].snapshot))


def slo_query(slo: SLOCheck, incident: Incident, namespace: str) -> str:
    """The runbook's query over its whole duration: its worst value there must be on the right side."""
    query = slo.query
    for key, value in {"tenant": incident.spec.tenant, "module": incident.spec.module or "",
                       "namespace": namespace, "category": incident.spec.category}.items():
        query = query.replace("{" + key + "}", value)
    worst = "max_over_time" if slo.comparison == "below" else "min_over_time"
    return f"{worst}(({query})[{slo.for_}:])"


def query_prometheus(url: str, query: str) -> tuple[list[float] | None, str]:
    """One instant query through the HTTP API: the values of the vector (None and why when it failed)."""
    if not url:
        return None, "no Prometheus configured (RC_PROMETHEUS_URL)"
    try:
        response = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=PROMETHEUS_TIMEOUT)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"Prometheus at {url}: {exc}"
    if body.get("status") != "success":
        return None, f"Prometheus refused the query: {body.get('errorType')}: {body.get('error')}"
    result = body["data"]["result"]
    if body["data"].get("resultType") == "scalar":
        result = [{"value": result}]
    return [float(series["value"][1]) for series in result], ""


def acknowledgements(kube: Kube, namespace: str, incident: str) -> list[Ballot]:
    """The Approvals saying where the incident's postmortem was shared (``relctl postmortem-shared``)."""
    return [Ballot.of(a) for a in kube.list("Approval", namespace)
            if (a.get("spec") or {}).get("incident") == incident
            and (a.get("spec") or {}).get("step") == POSTMORTEM_STEP and (a.get("spec") or {}).get("sharedAt")]


def acknowledgement(kube: Kube, check: AdmissionCheck, body: dict[str, Any], resolved_at: str | None,
                    operator: str) -> Acknowledgement:
    """The acknowledgements that the postmortem was shared, weighed as votes are (operator/govern.py):
    none counts unless the apiserver vouches for who made it, asked afresh before one counts."""
    meta = body["metadata"]
    ballots = acknowledgements(kube, meta["namespace"], meta["name"])
    if not ballots:
        return Acknowledgement(None, [])
    creator = (meta.get("annotations") or {}).get(CREATED_BY)
    verdict = check.verdict()
    if verdict.in_force:
        weighed = acknowledged(ballots, creator, operator, meta["uid"], resolved_at,
                               unvouched_until=check.unvouched_until)
        if weighed.counted is not None:
            verdict = check.verdict(max_age=ADMISSION_FRESH)  # never count on an old answer
    if not verdict.in_force:
        weighed = acknowledged(ballots, creator, operator, meta["uid"], resolved_at, unvouched=verdict.message)
    return weighed


def observe(kube: Kube, status: IncidentStatus, incident: Incident, body: dict[str, Any], runbook: Runbook | None,
            plans: list[PlanState], prometheus_url: str, postmortem_error: str,
            acknowledgement: Acknowledgement | None = None) -> verdicts.Observations:
    namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
    snapshots = _snapshots(kube, namespace, uid)
    held = [write for write, _ in snapshots]
    objects: dict[str, dict[str, Any] | None] = {}
    foreign: dict[str, dict[str, list[str]] | None] = {}
    lost: dict[str, list[str]] = {}
    for write, data in snapshots:
        if write.target not in objects:
            kind, ns, name = write.target.split("/", 2)
            objects[write.target] = kube.get(Ref(kind, ns, name))
        current = objects[write.target]
        foreign[write.snapshot] = None if current is None else foreign_owners(
            current, [{"op": "replace", "path": p} for p in write.paths], FIELD_MANAGER, since=write.taken_at)
        if current is not None:  # a hold removed by someone leaves our value with nothing to restore it
            gone = gone_holds(current, taken_holds(data), json.loads(data["after"])).lost
            if gone:
                lost[write.snapshot] = gone
    rollback = next(({"status": c.status, "reason": c.reason, "message": c.message}
                     for c in status.conditions if c.type == "RollbackTested"), None)
    slo = runbook.spec.slo if runbook else None
    query = values = None
    error = ""
    if slo is not None:
        query = slo_query(slo, incident, namespace)
        values, error = query_prometheus(prometheus_url, query)
    return verdicts.Observations(
        steps=status.steps, held=held, records=audit.read_log(kube, namespace, uid), foreign=foreign, lost=lost,
        rollback=rollback, plans=plans, slo=slo, slo_query=query, slo_values=values, slo_error=error,
        postmortem_error=postmortem_error, acknowledgement=acknowledgement, shadow=status.mode == "shadow",
        runbook=runbook.metadata.name if runbook else "")


def rehearse(gateway: WriteGateway, write: WriteContext, snapshots: list[str]) -> tuple[bool, str]:
    """Dry-run every inverse on the apiserver (nothing is written): would the rollback apply?

    Only an answer decides: an apiserver that was overloaded or away (429, 5xx, a timeout), or a
    lease lost meantime, says nothing about the inverses, so that error is raised and the runner
    retries the turn with backoff (``runner.retryable``), the restore waiting for it."""
    failures = []
    for snapshot in snapshots:
        try:
            result = gateway.restore(write, snapshot, action="rollback-test", dry_run=True)
        except Exception as exc:
            if transient(exc) or isinstance(exc, Fenced):
                raise
            failures.append(f"{snapshot}: {describe(exc)}")  # a refusal of the dry-run is the finding
            continue
        failures += [f"{result.target}{path}: changed by someone else since" for path in result.conflicts]
    if failures:
        return False, f"{len(failures)} of {len(snapshots)} inverses would not apply: " + "; ".join(failures)[:900]
    return True, f"{len(snapshots)} inverses dry-run on the apiserver: all apply"


def unproposable(name: str, namespace: str) -> str:
    """Why a namespace without a GitOps repository gets no postmortem pull request."""
    return ("no GitOps repository configured (reliability-center-settings gitopsRepoURL): the postmortem "
            f"cannot be proposed; `relctl postmortem {name} -n {namespace}` prints it; once it is shared, someone "
            f"other than the incident's creator closes this gate with `relctl postmortem-shared {name} -n "
            f"{namespace} --where URL`")


def propose_postmortem(gateway: WriteGateway, write: WriteContext, body: dict[str, Any],
                       settings: dict[str, str], plans: list[dict[str, Any]], records: list[dict[str, Any]]) -> str:
    """Open the postmortem as a PatchPlan (the same guards and forges as any Level 3 change).
    Returns why it could not be proposed ('' when it was)."""
    meta = body["metadata"]
    repo = repository_from(settings)
    if repo is None:
        return unproposable(meta["name"], meta["namespace"])
    plan = postmortem_plan(body, settings, repo, plans, records)
    try:
        gateway.propose(write, plan, action="postmortem")
    except Invalid as exc:
        if len(plan["spec"]["changes"]) == 1:
            raise
        # Helm never upgrades crds/: a PatchPlan CRD older than the operator refuses alertThreshold. The
        # postmortem goes without the threshold edits, and its draft says why.
        why = f"the apiserver refused them ({str(exc)[:200]}): are the CRDs older than the operator?"
        gateway.propose(write, postmortem_plan(body, settings, repo, plans, records, refused=why), action="postmortem")
    return ""


def postmortem_plan(body: dict[str, Any], settings: dict[str, str], repo: dict[str, Any],
                    plans: list[dict[str, Any]], records: list[dict[str, Any]],
                    refused: str | None = None) -> dict[str, Any]:
    """The postmortem PatchPlan: the draft, and, when the settings name the alerting rules file in Git
    (alertRulesPath), an edit of the threshold of each rule that fired late or flapped, for the reviewer
    (``refused``: why not, the draft alone)."""
    meta, spec = body["metadata"], body["spec"]
    name, rules_path = meta["name"], (settings.get("alertRulesPath") or None) if refused is None else None
    if rules_path and (not re.fullmatch(REPO_PATH, rules_path) or any(
            part in ("", "..") or part.startswith(".") for part in rules_path.split("/"))):
        # What the PatchPlan CRD would refuse: the postmortem goes without the edits, and says why.
        rules_path, refused = None, f"the settings' alertRulesPath {rules_path[:80]!r} is not a file path in the repository"
    proposals = threshold_proposals(spec, (body.get("status") or {}).get("times") or {}) if rules_path else []
    thresholds = [{"path": rules_path, "operation": "alertThreshold",
                   "value": {"alert": p["alert"], "factor": p["factor"]}} for p in proposals]
    return {
        "apiVersion": "reliability.center/v1alpha1",
        "kind": "PatchPlan",
        "metadata": {"name": f"{name}-postmortem"[:253], "namespace": meta["namespace"],
                     "labels": {INCIDENT_LABEL: name[:63], PURPOSE_LABEL: "postmortem"}},
        "spec": {"incidentRef": name, "repository": repo,
                 "title": f"Postmortem: {name} ({spec['category']}, tenant {spec['tenant']})"[:256],
                 "description": "The postmortem draft of the incident. Complete the root cause and prevention "
                                "sections, then merge: the merge closes the incident's last post-repair gate."
                                + (f" It also proposes threshold edits in {rules_path} (its section Detection "
                                   "thresholds says why): revert that file in the pull request to drop them."
                                   if thresholds else ""),
                 "changes": [{"path": f"postmortems/{meta['namespace']}/{name}.md", "operation": "createFile",
                              "content": render(body, plans, records, rules_path, refused)[:262144]}, *thresholds[:99]]},
    }
