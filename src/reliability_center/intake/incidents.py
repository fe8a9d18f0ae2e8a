"""Plans → Incidents: create under the deterministic name, or merge signals into the open episode.

Synchronous (the kube client is): the server runs ``Incidents.apply`` on its own threads.
Writes go through the gateway's doors for the operator's own objects (``records``): a
create, and a replace of the object as read (its resourceVersion makes it a compare-and-swap).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from reliability_center.api.common import now_iso, now_micro
from reliability_center.gateway import records
from reliability_center.gateway.kube import Conflict, Kube, Ref
from reliability_center.intake.config import IntakeConfig
from reliability_center.intake.mapping import (GROUP_LABEL, SOURCE, SOURCE_LABEL, Plan, Refused, merge_signals,
                                               rate_limited)

ATTEMPTS = 10  # compare-and-swap rounds before a 503 (Alertmanager retries it)
RUNBOOKS_TTL = 5.0  # seconds a list of Runbooks that matched is trusted; a miss always lists again


@dataclass
class Outcome:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)
    #: Partitions refused on their own (a name taken by another category): (namespace/name, why).
    failed: list[tuple[str, Refused]] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)  # outcome → alerts, for the metric
    dropped: int = 0

    def add(self, outcome: str, what: str, plan: Plan, dropped: int = 0) -> None:
        getattr(self, outcome).append(what)
        self.alerts[outcome] = self.alerts.get(outcome, 0) + len(plan.signals) - dropped
        self.dropped += dropped + plan.dropped

    def fail(self, what: str, refusal: Refused, plan: Plan) -> None:
        self.failed.append((what, refusal))
        self.alerts["failed"] = self.alerts.get("failed", 0) + len(plan.signals)

    @property
    def accepted(self) -> bool:
        return bool(self.created or self.updated or self.unchanged or self.unhandled)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("created", "updated", "unchanged", "unhandled")}
        if self.failed:
            out["failed"] = [{"incident": what, "error": why.reason, "message": why.message}
                             for what, why in self.failed]
        if self.dropped:
            out["dropped"] = self.dropped
            out["note"] = f"{self.dropped} alert(s) not recorded: an Incident holds at most 50 signals"
        return out


def _closed(incident: dict[str, Any]) -> bool:
    return (incident.get("status") or {}).get("phase") == "Closed"


def _answers(runbook: dict[str, Any], plan: Plan) -> bool:
    """Whether this Runbook would take the plan's Incident (engine/matching.py, without readiness:
    an Incident waits for a Runbook that is not Ready yet, it is not unhandled)."""
    match = (runbook.get("spec") or {}).get("match") or {}
    labels = {SOURCE_LABEL: SOURCE, GROUP_LABEL: plan.group}
    return (match.get("category") == plan.category
            and (not match.get("severities") or plan.severity in match["severities"])
            and all(labels.get(k) == v for k, v in (match.get("labels") or {}).items()))


class Incidents:
    def __init__(self, kube: Kube, config: IntakeConfig | None = None):
        self.kube, self.config = kube, config or IntakeConfig()
        self._runbooks: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._lock = threading.Lock()
        self._namespace_locks: dict[str, threading.Lock] = {}

    def _opening(self, namespace: str) -> threading.Lock:
        """One lock per namespace around the rate limit's count and the create (only the leader writes)."""
        with self._lock:
            return self._namespace_locks.setdefault(namespace, threading.Lock())

    def apply(self, plans: list[Plan]) -> Outcome:
        """Each plan on its own: one that fails never keeps the others of the post from being handled.

        A refusal (a name taken) is that partition's answer in ``failed``, as retrying cannot change
        it; an apiserver failure is raised once every other plan was tried (a 503: Alertmanager's
        retry of the whole post merges the handled partitions into themselves, changing nothing).
        """
        out = Outcome()
        retry: Exception | None = None
        for plan in plans:
            try:
                self._one(plan, out)
            except Refused as exc:
                out.fail(f"{plan.namespace}/{plan.base_name}", exc, plan)
            except Exception as exc:  # noqa: BLE001  (raised below, once the other plans had their turn)
                retry = retry or exc
        if retry is not None:
            raise retry
        return out

    # -- one plan ------------------------------------------------------------------
    def _one(self, plan: Plan, out: Outcome) -> None:
        where = f"{plan.namespace}/{plan.base_name}"
        for _ in range(ATTEMPTS):
            current, last = self._current(plan)
            if current is not None:
                if self._update(plan, current, out):
                    return
                continue  # deleted or closed meanwhile: look again
            if not plan.firing:
                out.add("unchanged", where, plan)  # only resolves, and nothing open: nothing to open
                return
            if not self._handled(plan):
                self._unhandled(plan)
                out.add("unhandled", f"{plan.namespace}/{plan.category}/{plan.tenant}", plan)
                return
            name = plan.name(last + 1)
            with self._opening(plan.namespace):  # the count and the create at once: no two posts share a slot
                made = self.kube.list("Incident", plan.namespace, f"{SOURCE_LABEL}={SOURCE}")
                limited = rate_limited(made, plan, self.config, datetime.now(timezone.utc))
                if limited is not None:
                    raise limited
                try:
                    records.create(self.kube, plan.manifest(name))
                except Conflict:  # a peer (or a retry) created it first: look again, and merge into it
                    continue
            out.add("created", f"{plan.namespace}/{name}", plan)
            return
        raise Conflict(f"Incident {where} kept changing")

    def _current(self, plan: Plan) -> tuple[dict[str, Any] | None, int]:
        """The open episode of the plan's group (None: none is open) and the last episode number.

        One read by name in the usual case (the first episode, open); the group's list only
        once it has been closed, as later episodes are only made then.
        """
        base = self.kube.get(Ref("Incident", plan.namespace, plan.base_name))
        if base is None:
            return None, 0
        if not plan.owns(base):
            raise Refused(409, "NameTaken", f"Incident {plan.namespace}/{plan.base_name} exists and is not this "
                                            "alert group's")
        if not _closed(base):
            return base, 1
        mine = [i for i in self.kube.list("Incident", plan.namespace, f"{GROUP_LABEL}={plan.group}") if plan.owns(i)]
        episodes = {plan.episode(i["metadata"]["name"]) or 0: i for i in mine}
        open_ = [n for n, i in episodes.items() if not _closed(i)]
        return (episodes[max(open_)] if open_ else None), max(episodes, default=1)

    def _update(self, plan: Plan, incident: dict[str, Any], out: Outcome) -> bool:
        """Merge the plan's signals (compare-and-swap); False when the Incident is gone or closed meanwhile."""
        ref = Ref("Incident", plan.namespace, incident["metadata"]["name"])
        for _ in range(ATTEMPTS):
            existing = incident["spec"].get("signals") or []
            merged, dropped = merge_signals(existing, plan.signals)
            if merged == existing:
                out.add("unchanged", f"{ref.namespace}/{ref.name}", plan, dropped)
                return True
            meta = {k: v for k, v in incident["metadata"].items() if k != "managedFields"}
            try:
                records.replace(self.kube, {**incident, "metadata": meta,
                                            "spec": {**incident["spec"], "signals": merged}})
            except Conflict:
                fresh = self.kube.get(ref)
                if fresh is None or _closed(fresh):
                    return False
                incident = fresh
                continue
            out.add("updated", f"{ref.namespace}/{ref.name}", plan, dropped)
            return True
        raise Conflict(f"Incident {ref} kept changing")

    # -- runbooks ------------------------------------------------------------------
    def _handled(self, plan: Plan) -> bool:
        with self._lock:
            listed_at, runbooks = self._runbooks
        if time.monotonic() - listed_at < RUNBOOKS_TTL and any(_answers(rb, plan) for rb in runbooks):
            return True
        runbooks = self.kube.list("Runbook")
        with self._lock:
            self._runbooks = (time.monotonic(), runbooks)
        return any(_answers(rb, plan) for rb in runbooks)

    def _unhandled(self, plan: Plan) -> None:
        """A Warning Event on the target Namespace: the alert was allowed, but no Runbook would act on it."""
        first = plan.signals[0]
        labels = ", ".join(f"{k}={v}" for k, v in first["labels"].items())
        message = (f"no Runbook handles category={plan.category} severity={plan.severity} tenant={plan.tenant}"
                   f"{f' module={plan.module}' if plan.module else ''}: {len(plan.signals)} alert(s) "
                   f"({first['name']}); labels: {labels}")[:1024]
        # One Event per group and place: Alertmanager's re-sends and retries post it once.
        key = hashlib.sha256(f"{plan.group_key}\n{plan.category}\n{plan.tenant}".encode()).hexdigest()[:12]
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{plan.namespace}.unhandled-alert.{key}", "namespace": plan.namespace,
                         "labels": {SOURCE_LABEL: SOURCE, GROUP_LABEL: plan.group}},
            "involvedObject": {"apiVersion": "v1", "kind": "Namespace", "name": plan.namespace,
                               "namespace": plan.namespace},
            "reason": "UnhandledAlert", "type": "Warning", "message": message,
            "source": {"component": "reliability-center"},
            "reportingComponent": "reliability-center",
            "reportingInstance": self.kube.identity or "reliability-center",
            "action": "Intake", "eventTime": now_micro(),
            "firstTimestamp": now_iso(), "lastTimestamp": now_iso(), "count": 1,
        }
        try:
            records.create(self.kube, event)
        except Conflict:
            pass  # already posted for this group
