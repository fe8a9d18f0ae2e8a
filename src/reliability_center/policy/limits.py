"""Rate limits, cooldowns, ineffective-remediation and storm guards, as pure functions.

Their state (admission history) lives in the cluster, one ConfigMap per
runbook and tenant in the Incident's namespace, so it survives operator
restarts and is shared by replicas; the gateway reads and writes it with
optimistic concurrency. A tenant's history holds only its own admissions, pruned
by time (what the limits look back on), so other tenants' incidents never push it
out, and it is bounded by the tenant's own limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reliability_center.api.runbook import Limits
from reliability_center.policy.writes import ALLOWED, Verdict

_UNITS = {"s": 1, "m": 60, "h": 3600}
HOUR = timedelta(hours=1)


def seconds(duration: str) -> int:
    """``30s``, ``5m``, ``2h`` → seconds (the CRD pattern guarantees the shape)."""
    found = re.fullmatch(r"([0-9]+)([smh])", duration)
    if not found:
        raise ValueError(f"not a duration: {duration!r}")
    return int(found.group(1)) * _UNITS[found.group(2)]


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass
class Admission:
    """One mitigation that was admitted: when, for which incident, with what fingerprint."""

    incident_uid: str
    time: str
    fingerprint: str
    mitigated: bool = False


@dataclass
class GuardState:
    """The admissions of one runbook for one tenant in one namespace (newest last, pruned by time: ``record``)."""

    admissions: list[Admission] = field(default_factory=list)

    def for_tenant(self, tenant: str) -> list[Admission]:
        return [a for a in self.admissions if a.fingerprint.split("/")[1] == tenant]


def fingerprint(category: str, tenant: str, module: str | None) -> str:
    """What makes two incidents 'the same incident firing again'."""
    return f"{category}/{tenant}/{module or '-'}"


def retention(limits: Limits) -> timedelta:
    """How far back the guards look: an hour (rate limit, re-fires), or the cooldown when it is longer."""
    return max(HOUR, timedelta(seconds=seconds(limits.cooldown)))


def admit(state: GuardState, limits: Limits, *, incident_uid: str, tenant: str, print_: str, now: str) -> Verdict:
    """May this Incident start its mitigation? Idempotent for an Incident already admitted."""
    if any(a.incident_uid == incident_uid for a in state.admissions):
        return ALLOWED
    moment = _parse(now)
    hour_ago = moment - HOUR
    history = state.for_tenant(tenant)
    mine = [a for a in history if _parse(a.time) > hour_ago]
    if len(mine) >= limits.max_runs_per_hour:
        return Verdict(False, "RateLimited",
                       f"{len(mine)} mitigations for tenant {tenant!r} in the last hour (limit {limits.max_runs_per_hour})")
    cooldown = seconds(limits.cooldown)
    if cooldown and history:  # a cooldown may be longer than the hour the rate limit looks back on
        last = max(_parse(a.time) for a in history)
        if moment - last < timedelta(seconds=cooldown):
            left = cooldown - int((moment - last).total_seconds())
            return Verdict(False, "CoolingDown", f"cooldown {limits.cooldown} for tenant {tenant!r}: {left}s left")
    refires = [a for a in mine if a.fingerprint == print_ and a.mitigated]
    if len(refires) > limits.max_refires:
        return Verdict(False, "IneffectiveRemediation",
                       f"{print_} fired again after {len(refires)} mitigations in the last hour: escalating")
    return ALLOWED


@dataclass
class Isolations:
    """The tenants isolated in one namespace, each with the incidents holding its isolation (uid → name)."""

    tenants: dict[str, dict[str, str]] = field(default_factory=dict)


def storm_guard(isolated_tenants: set[str], tenant: str, limits: Limits) -> Verdict:
    """Never isolate more than N tenants at once: past that, escalate to a human."""
    if tenant in isolated_tenants or len(isolated_tenants) < limits.max_isolated_tenants:
        return ALLOWED
    return Verdict(False, "StormGuard",
                   f"{len(isolated_tenants)} tenants already isolated ({', '.join(sorted(isolated_tenants))}); "
                   f"limit {limits.max_isolated_tenants}: escalating instead of isolating {tenant!r}")


def reserve_isolation(state: Isolations, tenant: str, uid: str, name: str, limits: Limits) -> tuple[Verdict, Isolations]:
    """Count and decide in one step: the caller swaps the new state in only if nobody changed it since."""
    verdict = storm_guard(set(state.tenants), tenant, limits)
    if not verdict.allowed:
        return verdict, state
    holders = {**state.tenants.get(tenant, {}), uid: name}
    return verdict, Isolations({**state.tenants, tenant: holders})


def release_isolation(state: Isolations, uid: str) -> Isolations:
    tenants = {t: {u: n for u, n in holders.items() if u != uid} for t, holders in state.tenants.items()}
    return Isolations({t: holders for t, holders in tenants.items() if holders})


def record(state: GuardState, admission: Admission, keep: timedelta = HOUR) -> GuardState:
    """Add an admission; forget those older than ``keep`` before it (``retention``): no count, only time, bounds
    the history, so a limit above any count still holds and nobody else's admissions push these out."""
    if any(a.incident_uid == admission.incident_uid for a in state.admissions):
        return state
    since = _parse(admission.time) - keep
    return GuardState([a for a in state.admissions if _parse(a.time) > since] + [admission])


def mark_mitigated(state: GuardState, incident_uid: str) -> GuardState:
    for a in state.admissions:
        if a.incident_uid == incident_uid:
            a.mitigated = True
    return state
