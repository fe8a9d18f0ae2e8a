"""Leader election over a ``coordination.k8s.io`` Lease: one replica acts, the others stand by.

Why a Lease rather than Kopf's peering: peering freezes an operator when it sees a
higher-priority peer, needs distinct priorities per pod, and a peer that freezes
late is not fenced (Kopf's docs, "Multi-pod operators"). A Lease renewed by its
holder, the way client-go and controller-runtime elect leaders, gives:

- one holder at a time: every change of the Lease is a compare-and-swap on its
  resourceVersion, so two candidates cannot both take it;
- a fence: the holder writes only while its last renewal is younger than
  ``renew_deadline``, shorter than ``lease_duration``; the gateway's client asks
  before every write. A standby takes over only once it has seen the Lease
  unchanged for ``lease_duration`` by its own clock (no clock is compared across
  machines), so the old holder has stopped writing by then. A holder that was
  paused (SIGSTOP, a long GC) wakes with a stale renewal and is fenced at its next
  write; the writes' own preconditions (resourceVersions, the holds' tests) make
  any write that was already on the wire fail rather than repeat.

Both replicas watch and queue; only the leader's workers take passes. A standby
that becomes leader starts from the cluster's state (status, holds, snapshots),
like an operator that restarts. The work a standby let pass (``on_lead``) is
caught up in a task of its own, retried until it succeeds, so that a failing
catch-up never stops the renewals. A leader that loses the Lease does not
campaign again: ``run`` returns and the process exits (operator/main.py), as
controller-runtime's manager does ("leader election lost"); a fresh process
starts as a standby, with nothing left over from its term.

Posts go to the leader. Both replicas serve the Alertmanager receiver and the forge webhooks, but a
standby's queues take no pass, so it answers 503. In a pod, the leader points the webhooks' Service
(``RC_LEADER_SERVICE``, selector-less) at itself: it writes that Service's one EndpointSlice with its own
address (``POD_IP``) once it leads, and empties it when it leaves cleanly, as Patroni keeps its primary's
Service endpoints. A leader that died leaves its address until its successor writes its own. The
controller-manager leaves the slice alone (``endpointslice.kubernetes.io/managed-by``), and kube-proxy
routes the Service by it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from reliability_center.api.common import now_micro
from reliability_center.gateway import Kube, Ref, records
from reliability_center.gateway.kube import Conflict, Fenced, Forbidden

log = logging.getLogger("reliability_center.leadership")

Move = Literal["create", "renew", "take", "wait"]

MANAGED_BY = "reliability-center"
"""The EndpointSlice's ``endpointslice.kubernetes.io/managed-by``: the controller-manager's controllers skip it."""


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0
    """Seconds a standby must see the Lease unchanged before it takes it (client-go's default)."""
    renew_deadline: float = 10.0
    """Seconds without a successful renewal after which the holder stops writing (< lease_duration)."""
    retry_period: float = 2.0
    """Seconds between two renewals, or two looks of a standby (< renew_deadline)."""

    def __post_init__(self) -> None:
        # client-go's NewLeaderElector refuses the same: a holder must stop writing before a standby may
        # take over, and must get more than one try at renewing before it stops.
        for name, value in (("leaseDuration", self.lease_duration), ("renewDeadline", self.renew_deadline),
                            ("retryPeriod", self.retry_period)):
            if not value > 0:
                raise ValueError(f"{name} must be greater than zero (got {value:g}s)")
        if self.renew_deadline >= self.lease_duration:
            raise ValueError(f"leaseDuration ({self.lease_duration:g}s) must be greater than renewDeadline "
                             f"({self.renew_deadline:g}s): a standby could take the Lease while the holder still writes")
        if self.retry_period >= self.renew_deadline:
            raise ValueError(f"renewDeadline ({self.renew_deadline:g}s) must be greater than retryPeriod "
                             f"({self.retry_period:g}s): the holder would stop writing before its next renewal")


@dataclass
class Observation:
    """What a candidate last saw of the Lease, by its own monotonic clock."""

    resource_version: str | None = None
    since: float = 0.0


def next_move(lease: dict[str, Any] | None, me: str, seen: Observation, now: float, timing: Timing) -> Move:
    """The one thing a candidate does next (pure: ``seen`` is updated by the caller)."""
    if lease is None:
        return "create"
    holder = (lease.get("spec") or {}).get("holderIdentity") or ""
    if holder == me:
        return "renew"
    if not holder:
        return "take"  # released by a holder that shut down cleanly
    if lease["metadata"]["resourceVersion"] != seen.resource_version:
        return "wait"  # it changed (a renewal): the holder is alive, look again later
    return "take" if now - seen.since >= timing.lease_duration else "wait"


def identity() -> str:
    """This replica: the pod's name when it has one, else host and process."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Route:
    """Where posts for this replica arrive: the Service's name, this pod's name and address, the ports served."""

    service: str
    pod: str
    ip: str
    ports: tuple[tuple[str, int], ...]
    """(name, port): the names are the Service's port names (``intake``, ``forge-hooks``)."""


def endpoint_slice(namespace: str, route: Route, *, here: bool) -> dict[str, Any]:
    """The Service's EndpointSlice: this pod's address when ``here`` (it leads), else no address at all."""
    endpoints = [{"addresses": [route.ip], "conditions": {"ready": True},
                  "targetRef": {"kind": "Pod", "namespace": namespace, "name": route.pod}}] if here else []
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{route.service}-leader", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": route.service,
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "addressType": "IPv6" if ":" in route.ip else "IPv4",
            "ports": [{"name": name, "port": port, "protocol": "TCP"} for name, port in route.ports],
            "endpoints": endpoints}


@dataclass
class Elector:
    kube: Kube
    """A client of its own, unfenced: the Lease's writes are how leadership is kept."""
    namespace: str
    name: str
    me: str
    timing: Timing = field(default_factory=Timing)
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    renewed: float = 0.0
    seen: Observation = field(default_factory=Observation)
    on_lead: list[Any] = field(default_factory=list)
    """Coroutines to run when this replica becomes the leader (work a standby let pass)."""
    stopped: bool = False
    route: Route | None = None
    """Where posts reach this replica, in a pod; None: no Service to point (a process outside the cluster)."""

    @property
    def ref(self) -> Ref:
        return Ref("Lease", self.namespace, self.name)

    def fence(self) -> None:
        """Before every write of the operator: only a leader with a fresh renewal may write."""
        if not self.leading.is_set() or time.monotonic() - self.renewed > self.timing.renew_deadline:
            raise Fenced(f"{self.me} is not the leader of {self.namespace}/{self.name}: it writes nothing")

    def attempt(self) -> bool:
        """One round: create, renew or take the Lease, or wait. True while this replica holds it."""
        lease = self.kube.get(self.ref)
        now = time.monotonic()
        if lease is not None and lease["metadata"]["resourceVersion"] != self.seen.resource_version:
            self.seen = Observation(lease["metadata"]["resourceVersion"], now)
        move = next_move(lease, self.me, self.seen, now, self.timing)
        if move == "wait":
            return False
        spec = {"holderIdentity": self.me, "leaseDurationSeconds": int(self.timing.lease_duration),
                "renewTime": now_micro()}
        try:
            if move == "create":
                records.create(self.kube, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                           "metadata": {"name": self.name, "namespace": self.namespace},
                                           "spec": {**spec, "acquireTime": now_micro(), "leaseTransitions": 0}})
            else:
                assert lease is not None
                old = lease.get("spec") or {}
                if move == "take":
                    spec.update(acquireTime=now_micro(), leaseTransitions=int(old.get("leaseTransitions") or 0) + 1)
                records.replace(self.kube, {**lease, "spec": {**old, **spec}})  # a CAS on its resourceVersion
        except Conflict:
            return False  # someone else moved it first
        self.renewed = now
        return True

    async def run(self) -> None:
        """Campaign, then renew; returns when leadership is lost (the caller ends the process) or ``stopped``."""
        catching_up: asyncio.Task[None] | None = None
        try:
            while not self.stopped:
                try:
                    held = await asyncio.to_thread(self.attempt)
                except Exception as exc:  # the apiserver may be away: the deadline decides, not one failure
                    log.warning("leader election %s/%s: %s", self.namespace, self.name, exc)
                    held = False
                if held and not self.leading.is_set():
                    log.info("leadership acquired", extra={"leader": self.me, "lease": f"{self.namespace}/{self.name}"})
                    self.leading.set()
                    catching_up = asyncio.get_running_loop().create_task(self.catch_up(), name="leader-catch-up")
                elif not held and self.leading.is_set() and time.monotonic() - self.renewed > self.timing.renew_deadline:
                    log.error("leadership lost", extra={"leader": self.me, "lease": f"{self.namespace}/{self.name}"})
                    self.leading.clear()
                    return
                await asyncio.sleep(self.timing.retry_period)
        finally:
            if catching_up is not None and not catching_up.done():
                catching_up.cancel()
                await asyncio.gather(catching_up, return_exceptions=True)

    async def catch_up(self) -> None:
        """The work a standby let pass, each part retried until it succeeds, while this replica leads."""
        for catch_up in self.on_lead:
            while self.leading.is_set():
                try:
                    await catch_up()
                    break
                except Exception as exc:  # retried: the renewals go on meanwhile, in their own loop
                    log.warning("catching up as the new leader failed: %s; again in %gs", exc, self.timing.retry_period,
                                extra={"leader": self.me, "lease": f"{self.namespace}/{self.name}"})
                    await asyncio.sleep(self.timing.retry_period)

    async def take_posts(self) -> None:
        """Once leading (``on_lead``): the webhooks' Service sends posts here. Without the right (an install
        older than it), said and left: posts may reach the standby (503), the catch-up after this must go on."""
        if self.route is None:
            return
        try:
            await asyncio.to_thread(point_service, self.kube, self.namespace, self.route, True)
        except Forbidden as exc:
            log.error("cannot point the Service %s at this replica: %s", self.route.service, exc)

    def release(self) -> None:
        """On a clean shutdown: let a standby take over at once instead of after lease_duration."""
        self.stopped = True  # no more campaigning: the Lease must not come back to a process that is leaving
        if not self.leading.is_set():
            return
        self.leading.clear()
        lease = self.kube.get(self.ref)
        if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.me:
            try:
                records.replace(self.kube, {**lease, "spec": {**lease["spec"], "holderIdentity": ""}})
            except Conflict:
                pass
        if self.route is not None:  # posts wait for the next leader rather than reach a process that is leaving
            try:
                point_service(self.kube, self.namespace, self.route, False)
            except (Conflict, Forbidden):
                pass  # the next leader wrote its own address meanwhile, or no right to: the next leader's write


def point_service(kube: Kube, namespace: str, route: Route, here: bool) -> None:
    """Point the Service's EndpointSlice at this pod (``here``), or at nothing if it still points here; a write
    only on the slice as it was read (a Conflict when another replica moved it first)."""
    desired = endpoint_slice(namespace, route, here=here)
    current = kube.get(Ref("EndpointSlice", namespace, desired["metadata"]["name"]))
    if current is None:
        if here:
            records.create(kube, desired)
        return
    pointed = {(e.get("targetRef") or {}).get("name") for e in current.get("endpoints") or []}
    if not here and route.pod not in pointed:
        return  # another replica's address (its successor's): not ours to take away
    if (current.get("endpoints") or [], current.get("ports")) != (desired["endpoints"], desired["ports"]):
        records.replace(kube, {**desired, "metadata": {**current["metadata"], **desired["metadata"]}})
    log.info("the webhooks' Service points %s", f"at {route.pod} ({route.ip})" if here else "nowhere",
             extra={"service": route.service})
