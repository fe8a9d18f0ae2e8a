"""WriteGateway: policy → snapshot → JSON patch with holds (or dry-run) → audit → inverse.

A write names only the fields a step changes: a JSON patch under the field
manager ``reliability-center`` whose ``test`` operations make it a
compare-and-swap on exactly those fields and their hold annotations
(``gateway/holds.py``). So a write never removes what another incident, step
or manager set, and a restore puts back only what this step holds, once no
other incident holds it. Concurrent steps' patches of one object go out as one
(``gateway/batch.py``, group commit), each step's part still its own.

Crash safety comes from determinism: the snapshot's name derives from the
incident, step and target, and the holder's id on the object from that name, so
a step retried after a crash finds itself holding the fields already and writes
nothing more; the audit Event has a deterministic name. The snapshot, with the
path, value and value before of every field its step holds (``holds``), is
written before the write: what the object's short marks do not carry
(``gateway/holds.py``), a release reads from it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from reliability_center.api.incident import TimelineEntry
from reliability_center.api.patchplan import MADE_BY_LABEL, MADE_BY_OPERATOR
from reliability_center.api.runbook import Limits
from reliability_center.engine import gates
from reliability_center.gateway import audit, records
from reliability_center.gateway.batch import GroupCommit, Part, Writer
from reliability_center.gateway.holds import (WHOLE, Edit, HeldElsewhere, Hold, ReleasePlan, WritePlan, created_by,
                                              foreign_owners, gone_holds, holder_id, holder_label, holds, is_holder_id,
                                              landed, plan_once, plan_release, plan_write, same, whole_hold,
                                              whole_record)
from reliability_center.gateway.kube import FIELD_MANAGER, Conflict, Kube, NotFound, Ref
from reliability_center.gateway.leaves import ABSENT, digest, leaves, read
from reliability_center.gateway.tracking import managing_application, release_ops
from reliability_center.policy.limits import Isolations, release_isolation, reserve_isolation
from reliability_center.policy.writes import ALLOWED, Verdict, check_namespace, check_place, check_write

log = logging.getLogger("reliability_center.gateway")

SNAPSHOT_LABEL = "reliability.center/snapshot"
HOLDER_LABEL = "reliability.center/holder"
"""A snapshot's holder id (``holds.holder_id``, in hex): how the holder ids on an object find their snapshots."""
INCIDENT_UID_LABEL = "reliability.center/incident-uid"
STEP_ANNOTATION = "reliability.center/step"
ACTOR = "system:reliability-center"
#: Attempts of one write when its tests fail because the object moved since it was read.
ATTEMPTS = 8


@dataclass(frozen=True)
class WriteContext:
    """Who writes, for which incident and step, at which level, in which mode."""

    incident: dict[str, Any]  # the Incident body (for owner references and the audit Event)
    trace_id: str
    tenant: str
    step: str
    level: int
    shadow: bool = False
    take_ownership: bool = False
    """The runbook step declares it may take fields another field manager owns."""
    server_dry_run: bool = True
    """In shadow mode (or while a governed step is planned), also dry-run each write on the apiserver."""

    @property
    def namespace(self) -> str:
        return self.incident["metadata"]["namespace"]


class PolicyDenied(Exception):
    def __init__(self, verdict: Verdict, entry: TimelineEntry):
        super().__init__(verdict.message)
        self.verdict = verdict
        self.entry = entry


@dataclass
class WriteResult:
    target: str
    outcome: str  # applied, unchanged, dry-run, created, exists, proposed
    snapshot: str | None
    entry: TimelineEntry
    after: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    """The written fields' values before (None: the object did not exist); set on dry-runs, for a plan's diff."""


@dataclass
class RestoreResult:
    target: str
    restored: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Fields other incidents still hold: they stay until the last of them resolves."""
    conflicts: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """Fields whose hold annotation someone removed, still at the value the step set: left as they are."""
    entry: TimelineEntry | None = None
    recorded: TimelineEntry | None = None
    """The write's own record, made here: it landed, but the turn that made it was cut off before its records
    reached the durable log (``Audited``)."""
    dropped: bool = False
    """The snapshot told of a write that never landed: it was deleted, nothing restored (``Audited``)."""


@dataclass(frozen=True)
class Audited:
    """For a restore (``WriteGateway.restore``): the writes its incident's durable log records, (step, target)
    (``engine.gates.written``), the snapshots the restored step's status lists, and the action it wrote as."""

    written: set[tuple[str, str]]
    reported: set[str]
    action: str


def taken_holds(data: dict[str, str]) -> dict[str, Hold]:
    """The holds a snapshot's write left on its object (none recorded by snapshots older than this record)."""
    return {key: Hold.parse(json.dumps(body)) for key, body in json.loads(data.get("holds") or "{}").items()}


def snapshot_name(ctx: WriteContext, target: Ref) -> str:
    key = f"{ctx.incident['metadata']['uid']}|{ctx.step}|{target}"
    return f"rc-snap-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


class _Holders:
    """The other holders an object names, each looked up once: whether it still exists (its snapshot goes
    with its Incident, by owner reference) and what it recorded. A holder id is found by its snapshot's
    label; a snapshot name (the first layout's holders) by name."""

    def __init__(self, kube: Kube, namespace: str):
        self.kube, self.namespace = kube, namespace
        self.found: dict[str, list[dict[str, Any]]] = {}

    def snapshots(self, holder: str) -> list[dict[str, Any]]:
        if holder not in self.found:
            if is_holder_id(holder):
                self.found[holder] = self.kube.list("ConfigMap", self.namespace,
                                                    f"{HOLDER_LABEL}={holder_label(holder)}")
            else:
                found = self.kube.get(Ref("ConfigMap", self.namespace, holder))
                self.found[holder] = [found] if found is not None else []
        return self.found[holder]

    def alive(self, holder: str) -> bool:
        return bool(self.snapshots(holder))

    def recorded(self, holder: str, key: str) -> Hold | None:
        return next((taken[key] for s in self.snapshots(holder) if key in (taken := taken_holds(s.get("data") or {}))),
                    None)

    def name(self, holder: str) -> str:
        """The holder as people know it: its snapshot's name, when it was looked up."""
        return ", ".join(s["metadata"]["name"] for s in self.found.get(holder) or []) or holder


def judged_labels(read: dict[str, Any], ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ops`` (none: nothing to send), first testing that the object's labels are still those the write policy
    judged on ``read`` (``WriteGateway._check``). A write planned on an earlier answer about the object (the
    writers' shared read, gateway/batch.py; a caller's listing) is refused if the object was labelled since as
    protected data or another tenant's, then read, judged and planned again."""
    return [{"op": "test", "path": "/metadata/labels", "value": (read.get("metadata") or {}).get("labels")}, *ops] \
        if ops else []


def _recorded(plan: WritePlan) -> Any:
    """What a write's snapshot records: a batch sends the write only if its plan there still means this."""
    return plan.before, plan.after, sorted(plan.held), {k: replace(h, holders=()) for k, h in plan.holds.items()}


def _released(plan: ReleasePlan) -> Any:
    """What a release reports (its audit record): a batch sends it only if its plan there still says this."""
    return plan.restored, plan.kept, plan.conflicts, plan.delete


class WriteGateway:
    def __init__(self, kube: Kube, operator_namespace: str = ""):
        self.kube = kube
        #: Writes and releases of one object by concurrent steps go out together (gateway/batch.py).
        self.commits = GroupCommit(kube)
        #: The operator's own namespace: never written through the gateway (policy.writes.check_place).
        self.operator_namespace = operator_namespace

    # -- the forward path ----------------------------------------------------------
    def apply(self, ctx: WriteContext, desired: dict[str, Any], *, action: str, seen: dict[str, Any] | None = None,
              items: list[tuple[str, Any]] | None = None, removals: list[tuple[str, Any]] | None = None,
              restore: bool = True) -> WriteResult:
        """Hold the fields ``desired`` (a partial object) sets, the list ``items`` (pointer, item) added
        and the ``removals`` (pointer, item) taken out; create the object when it does not exist.

        ``seen`` is the object as the caller just listed it: it saves a read. If the
        object moved since, the patch's tests fail and the write is planned again
        from a fresh read. ``restore=False`` is for a change never undone (a restart
        marker: removing it would restart the target again): no hold, no snapshot.
        """
        target = Ref.of(desired)
        edits = [Edit(WHOLE, None)] + [Edit(p, v) for p, v in leaves(desired).items()] + \
                [Edit(p, v, item=True) for p, v in items or []] + \
                [Edit(p, v, item=True, remove=True) for p, v in removals or []]
        # On its way to a held write: a group commit of this object about to go waits for it (gateway/batch.py).
        with self.commits.writing(target) as writer:
            current = seen if seen is not None else self.commits.read(target, writer)
            for attempt in range(ATTEMPTS):
                try:
                    if current is None and not restore:
                        raise NotFound(f"{target} not found")
                    if current is None:
                        return self._create_held(ctx, desired, action, target)
                    if not restore:
                        return self._patch_once(ctx, current, edits[1:], action, target)
                    return self._patch(ctx, current, edits, action, target, writer)
                except Conflict:
                    if attempt == ATTEMPTS - 1:
                        raise
                    current = self.commits.read(target, writer, fresh=True)  # moved since it was read: plan again
        raise AssertionError("unreachable")

    def _patch(self, ctx: WriteContext, current: dict[str, Any], edits: list[Edit], action: str,
               target: Ref, writer: Writer) -> WriteResult:
        self._check(ctx, action, target, current, read=True)
        holder = snapshot_name(ctx, target)
        others = _Holders(self.kube, ctx.namespace)
        try:
            plan = plan_write(current, edits, holder, alive=others.alive, recorded=others.recorded)
        except HeldElsewhere as clash:
            verdict = Verdict(False, "HeldByAnotherIncident",
                              f"{target}{clash.path} is held at {json.dumps(clash.value)} by another incident "
                              f"({', '.join(map(others.name, clash.holders))}): overriding it would undo that "
                              "incident's change")
            raise PolicyDenied(verdict, self._refusal(ctx, action, str(target), verdict)) from None
        taken = self._owned_elsewhere(ctx, action, target, current, plan.ops)
        before = {k: v for k, v in plan.before.items() if k != WHOLE}
        after = {k: v for k, v in plan.after.items() if k != WHOLE}
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   digest(before), digest(after), "")
        if ctx.shadow:
            if plan.ops and ctx.server_dry_run:
                self.kube.json_patch(target, plan.ops, dry_run=True)
            message = "shadow mode: would change" if plan.ops else "shadow: no change"
            return WriteResult(str(target), "dry-run", None, self._audit(ctx, record, "dry-run", message), after,
                               before)
        if not plan.held:
            return WriteResult(str(target), "unchanged", None,
                               self._audit(ctx, record, "unchanged", "already in the desired state"), after)
        taken_now = self._snapshot(ctx, target, current, holder, plan.before, plan.after, plan.holds)
        if plan.ops:
            def part(obj: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
                again = plan_write(obj, edits, holder, alive=others.alive, recorded=others.recorded)
                return judged_labels(current, again.ops), _recorded(again)

            try:  # with the writes of other steps to this object, in one patch (gateway/batch.py)
                self.commits.send(writer, Part(part, _recorded(plan)), current)
            except Conflict:
                if taken_now:  # its "before" may be stale: the next attempt takes it again
                    self.kube.delete(Ref("ConfigMap", ctx.namespace, holder))
                raise
        # A retry after a crash finds its own holds: the same outcome, so the same audit Event.
        outcome = "created" if not plan.ops and created_by(current, holder) else "applied"
        joined = ["the object" if k == WHOLE else k for k in plan.joined]
        notes = ([f"joined the hold of other incidents on {', '.join(joined)}"] if joined else []) + \
                ([f"took over {taken}"] if taken else [])
        message = "; ".join(notes)
        return WriteResult(str(target), outcome, holder, self._audit(ctx, record, outcome, message), after)

    def _patch_once(self, ctx: WriteContext, current: dict[str, Any], edits: list[Edit], action: str,
                    target: Ref) -> WriteResult:
        self._check(ctx, action, target, current, read=True)
        ops = plan_once(current, edits)
        self._owned_elsewhere(ctx, action, target, current, ops)
        after = {e.label: e.value for e in edits}
        # Found already set (an earlier attempt's write), its before is its after: a write record carries both.
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   digest({e.label: read(current, e.path) for e in edits}), digest(after), "")
        if ctx.shadow:
            if ops and ctx.server_dry_run:
                self.kube.json_patch(target, ops, dry_run=True)
            return WriteResult(str(target), "dry-run", None, self._audit(ctx, record, "dry-run", "shadow mode"), after,
                               {e.label: read(current, e.path) for e in edits})
        if ops:
            self.kube.json_patch(target, judged_labels(current, ops))
        # Values are deterministic (trace and step): found already set, it was this step's earlier attempt.
        return WriteResult(str(target), "applied", None, self._audit(ctx, record, "applied", "not restored on resolve"),
                           after)

    def _create_held(self, ctx: WriteContext, desired: dict[str, Any], action: str, target: Ref) -> WriteResult:
        """Create the object, held whole by this step: the last holder's restore deletes it."""
        self._check(ctx, action, target, desired)
        holder = snapshot_name(ctx, target)
        obj = copy.deepcopy(desired)
        key, value = whole_hold(holder)
        obj["metadata"].setdefault("annotations", {})[key] = value
        after = leaves(desired)
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   digest({WHOLE: ABSENT}), digest(after), "")
        if ctx.shadow:
            if ctx.server_dry_run:
                self.kube.create(obj, dry_run=True)
            return WriteResult(str(target), "dry-run", None, self._audit(ctx, record, "dry-run", "shadow mode: would create"),
                               after)
        self._snapshot(ctx, target, None, holder, {WHOLE: ABSENT}, after, whole_record(holder))
        self.kube.create(obj)  # Conflict when it exists: the caller reads it and joins its hold
        return WriteResult(str(target), "created", holder, self._audit(ctx, record, "created", ""), after)

    def create(self, ctx: WriteContext, obj: dict[str, Any], *, action: str) -> WriteResult:
        """Create a new object that is never restored (a replay Job); adopt it if a retried step made it."""
        self._check(ctx, action, Ref.of(obj), obj)
        return self._create(ctx, obj, action, before=digest({WHOLE: ABSENT}), outcome="created")

    def propose(self, ctx: WriteContext, plan: dict[str, Any], *, action: str) -> WriteResult:
        """Create a PatchPlan owned by the Incident: a proposal in Git, the only thing level 3 may do."""
        if plan.get("kind") != "PatchPlan":
            raise ValueError("level 3 may only propose a PatchPlan")
        meta = ctx.incident["metadata"]
        # Marked as ours: admission then keeps its spec from everyone else (a namespace's editors included).
        plan["metadata"]["labels"] = {**(plan["metadata"].get("labels") or {}), MADE_BY_LABEL: MADE_BY_OPERATOR}
        plan["metadata"]["ownerReferences"] = [{"apiVersion": ctx.incident["apiVersion"], "kind": "Incident",
                                                "name": meta["name"], "uid": meta["uid"]}]
        return self._create(ctx, plan, action, before=None, outcome="proposed")

    def _create(self, ctx: WriteContext, obj: dict[str, Any], action: str, *, before: str | None,
                outcome: str) -> WriteResult:
        target = Ref.of(obj)
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   before, digest(leaves(obj)), "")
        if ctx.shadow:
            if ctx.server_dry_run:
                self.kube.create(obj, dry_run=True)
            return WriteResult(str(target), "dry-run", None, self._audit(ctx, record, "dry-run", "shadow mode"),
                               leaves(obj))
        try:
            self.kube.create(obj)
        except Conflict:
            # Made by an earlier attempt of this step (a turn redone after a status conflict). A proposal
            # found so is still that proposal (it has no before), not a write that found its object.
            outcome = outcome if outcome == "proposed" else "exists"
        return WriteResult(str(target), outcome, None, self._audit(ctx, record, outcome, ""))

    def _owned_elsewhere(self, ctx: WriteContext, action: str, target: Ref, current: dict[str, Any],
                         ops: list[dict[str, Any]]) -> str:
        """Fields of another field manager this write would change: refused, unless the step takes them.

        A JSON patch never conflicts the way a server-side apply does; it would silently take a
        field from Argo CD or Helm. So the owners are read from managedFields, and taking their
        fields is a decision the runbook step declares (``takeOwnership``), audited when made.
        """
        owners = foreign_owners(current, ops, FIELD_MANAGER)
        if not owners:
            return ""
        fields = "; ".join(f"{path} from {', '.join(managers)}" for path, managers in sorted(owners.items()))
        if ctx.take_ownership:
            return fields
        verdict = Verdict(False, "FieldManagedElsewhere",
                          f"{target}: {fields}: the step does not declare takeOwnership, so the fields of "
                          "another field manager are left to it")
        raise PolicyDenied(verdict, self._refusal(ctx, action, str(target), verdict))

    def refuse(self, ctx: WriteContext, action: str, target: str, verdict: Verdict) -> TimelineEntry:
        """Audit a write the step decided not to make (a target out of the incident's tenant scope)."""
        return self._refusal(ctx, action, target, verdict)

    def _check(self, ctx: WriteContext, action: str, target: Ref, obj: dict[str, Any], *,
               restoring: bool = False, read: bool = False) -> None:
        """The write policy on the labels of ``obj`` (the object as read, or as it will be made). ``read``: an
        earlier answer about the object (the writers' shared read, a caller's listing), so a refusal is judged
        again on a fresh read (an allowed write is kept honest by its patch's test of the labels:
        ``judged_labels``)."""
        def judge(obj: dict[str, Any]) -> Verdict:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            verdict = check_place(kind=target.kind, target=str(target), target_namespace=target.namespace,
                                  target_labels=labels, operator_namespace=self.operator_namespace,
                                  restoring=restoring)
            return verdict if not verdict.allowed else \
                check_write(level=ctx.level, incident_tenant=ctx.tenant, target=str(target), target_labels=labels)

        verdict = judge(obj)
        if not verdict.allowed and read:
            verdict = judge(self.commits.read(target, fresh=True) or {})
        if not verdict.allowed:
            raise PolicyDenied(verdict, self._refusal(ctx, action, str(target), verdict))

    def _refusal(self, ctx: WriteContext, action: str, target: str, verdict: Verdict) -> TimelineEntry:
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, target, ctx.step, None, None, "denied",
                                   f"{verdict.reason}: {verdict.message}")
        return audit.emit(self.kube, ctx.incident, record, durable=not ctx.shadow)

    def _audit(self, ctx: WriteContext, record: audit.AuditRecord, outcome: str, message: str) -> TimelineEntry:
        final = audit.AuditRecord(**{**record.__dict__, "outcome": outcome, "message": message})
        return audit.emit(self.kube, ctx.incident, final, durable=not ctx.shadow)

    def _snapshot(self, ctx: WriteContext, target: Ref, current: dict[str, Any] | None, holder: str,
                  before: dict[str, Any], after: dict[str, Any], taken: dict[str, Hold]) -> bool:
        """Create the durable snapshot before the first write; returns whether it was taken just now.

        Its name is the holder's name on the object. An earlier attempt's snapshot is
        kept: it saw the state before this step's first write. ``taken``: the holds the
        write leaves on the object, so that a hold someone removes is noticed (``restore``).
        """
        meta = ctx.incident["metadata"]
        snapshot = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": holder,
                "namespace": ctx.namespace,
                "labels": {SNAPSHOT_LABEL: "true", "reliability.center/incident": meta["name"][:63],
                           INCIDENT_UID_LABEL: meta["uid"], HOLDER_LABEL: holder_label(holder_id(holder))},
                "annotations": {"reliability.center/trace-id": ctx.trace_id, STEP_ANNOTATION: ctx.step},
                "ownerReferences": [{"apiVersion": ctx.incident["apiVersion"], "kind": "Incident",
                                     "name": meta["name"], "uid": meta["uid"]}],
            },
            "data": {
                "target": json.dumps({"kind": target.kind, "namespace": target.namespace, "name": target.name,
                                      "apiVersion": (current or {}).get("apiVersion", "")}),
                "before": json.dumps(before, sort_keys=True),
                "after": json.dumps(after, sort_keys=True),
                "holds": json.dumps({key: json.loads(hold.wire()) for key, hold in taken.items()}, sort_keys=True),
                "tenant": ctx.tenant,
                "traceId": ctx.trace_id,
            },
        }
        try:
            self.kube.create(snapshot)
        except Conflict:  # an earlier attempt of this step took it, before its first write
            self._complete(Ref("ConfigMap", ctx.namespace, holder), snapshot)
            return False
        return True

    def _complete(self, ref: Ref, snapshot: dict[str, Any]) -> None:
        """An earlier attempt's snapshot keeps what it saw; fields this attempt holds that it did not
        (the object moved in between) are added, and its holder label if it predates it: a release
        reads each field's path and value from here, and other incidents find it by that label."""
        for _ in range(ATTEMPTS):
            found = self.kube.get(ref)
            if found is None:
                return
            data, wanted = found.get("data") or {}, snapshot["data"]
            merged = {name: json.dumps({**json.loads(wanted[name]), **json.loads(data.get(name) or "{}")},
                                       sort_keys=True) for name in ("before", "after", "holds")}
            labels = found["metadata"].get("labels") or {}
            if all(json.loads(merged[n]) == json.loads(data.get(n) or "{}") for n in merged) and \
                    labels.get(HOLDER_LABEL) == snapshot["metadata"]["labels"][HOLDER_LABEL]:
                return
            found["metadata"]["labels"] = {**labels, HOLDER_LABEL: snapshot["metadata"]["labels"][HOLDER_LABEL]}
            try:
                self.kube.replace({**found, "data": {**data, **merged}})
                return
            except Conflict:
                continue

    # -- the storm guard ---------------------------------------------------------------
    def reserve_isolation(self, ctx: WriteContext, limits: Limits) -> tuple[Verdict, list[str]]:
        """Count the namespace's isolated tenants and add this one in one compare-and-swap.

        Counting from a listing and then acting let concurrent incidents all pass a
        limit of 3; here the count and the decision are one write of the ledger, and a
        second writer's swap fails and decides again on the new count.
        """
        meta = ctx.incident["metadata"]
        verdict = ALLOWED

        def change(state: Isolations) -> Isolations:
            nonlocal verdict
            verdict, new = reserve_isolation(state, ctx.tenant, meta["uid"], meta["name"], limits)
            if not verdict.allowed:  # isolations held by incidents deleted unresolved do not count
                state = Isolations({t: live for t, h in state.tenants.items()
                                    if (live := {u: n for u, n in h.items() if self._incident_alive(ctx, u, n)})})
                verdict, new = reserve_isolation(state, ctx.tenant, meta["uid"], meta["name"], limits)
            return new

        if ctx.shadow:  # decide, write nothing
            return verdict, sorted(change(records.read_isolations(self.kube, ctx.namespace)).tenants)
        state = records.update_isolations(self.kube, ctx.namespace, change)
        return verdict, sorted(state.tenants)

    def release_isolation(self, ctx: WriteContext) -> None:
        uid = ctx.incident["metadata"]["uid"]
        records.update_isolations(self.kube, ctx.namespace, lambda state: release_isolation(state, uid), create=False)

    def _incident_alive(self, ctx: WriteContext, uid: str, name: str) -> bool:
        found = self.kube.get(Ref("Incident", ctx.namespace, name))
        return found is not None and found["metadata"]["uid"] == uid

    # -- the inverse -----------------------------------------------------------------
    def restore(self, ctx: WriteContext, snapshot: str, *, action: str, dry_run: bool = False,
                audited: Audited | None = None) -> RestoreResult:
        """Let go of what this step holds on the snapshot's target.

        A field goes back to its value before the first incident changed it, once no
        other incident holds it, and only if it still holds the value we set; a field
        someone else changed since is left alone and reported as a conflict. The
        JSON patch carries a ``test`` per field, so the check and the write are atomic.

        The target is read from the snapshot, so it passes the same checks as a write, and must
        lie in the incident's namespace: PolicyDenied (audited) otherwise.

        ``audited``: first, while the hold is there to tell, a write no status reported and the durable log lacks
        gets its record when it landed, and its snapshot is dropped when it never did
        (``engine.gates.unrecorded_write``).
        """
        data = (self.kube.get(Ref("ConfigMap", ctx.namespace, snapshot)) or {}).get("data")
        if not data:
            raise NotFound(f"snapshot {snapshot} is gone")
        spec = json.loads(data["target"])
        target = Ref(spec["kind"], spec["namespace"], spec["name"])
        scope = check_namespace(incident_namespace=ctx.namespace, target=str(target), target_namespace=target.namespace)
        if not scope.allowed:
            verdict = Verdict(False, scope.reason, f"snapshot {snapshot}: {scope.message}")
            raise PolicyDenied(verdict, self._refusal(ctx, action, str(target), verdict))
        before, after = json.loads(data["before"]), json.loads(data["after"])
        taken = taken_holds(data)
        with self.commits.writing(target, dry_run=dry_run) as writer:
            result = self._release(ctx, snapshot, target, action, before, after, taken, writer,
                                   None if dry_run else audited)
        if result.dropped:
            return result
        if not dry_run and result.restored and not result.kept and not result.lost:
            self._give_back(target)
        if result.lost:
            outcome = "hold-lost"
        elif result.conflicts:
            outcome = "conflict"
        elif dry_run:
            outcome = "restore-tested"
        else:
            outcome = "restored" if result.restored or not result.kept else "kept"
        parts = []
        if result.kept:
            parts.append(f"still held by other incidents: {', '.join(result.kept)}")
        if result.conflicts:
            parts.append(f"left alone (changed by someone else since): {', '.join(result.conflicts)}")
        if result.lost:
            parts.append(f"left at the value this step set, its hold annotation removed by someone: "
                         f"{', '.join(result.lost)}")
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   digest(after), digest(before), outcome, "; ".join(parts))
        result.entry = record.timeline() if dry_run else audit.emit(self.kube, ctx.incident, record)
        return result

    def _release(self, ctx: WriteContext, snapshot: str, target: Ref, action: str, before: dict[str, Any],
                 after: dict[str, Any], taken: dict[str, Hold], writer: Writer,
                 audited: Audited | None) -> RestoreResult:
        """Plan and send the release of ``snapshot``'s holds on ``target`` (``restore``), again on a Conflict."""
        result = RestoreResult(str(target))
        recorded = None
        for attempt in range(ATTEMPTS):
            result = RestoreResult(str(target), recorded=recorded)
            alive = _Holders(self.kube, ctx.namespace).alive
            # The last answer about the object, shared with its other writers (gateway/batch.py); read afresh
            # to tell whether a write landed, and after a Conflict.
            fresh = attempt > 0 or audited is not None
            current = self.commits.read(target, writer, fresh=fresh)
            if audited is not None:  # once: a record made stays made, a snapshot dropped stays dropped
                written_as, decision = audited.action, gates.unrecorded_write(
                    ctx.step, str(target), audited.written, snapshot in audited.reported,
                    landed(current, snapshot, taken, after))
                audited = None
                if decision == gates.DROP:
                    with contextlib.suppress(NotFound):
                        self.kube.delete(Ref("ConfigMap", ctx.namespace, snapshot))
                    return RestoreResult(str(target), dropped=True)
                if decision == gates.RECORD and current is not None:  # (landed: it holds fields there)
                    # Durable before the release below takes away the hold, the only other sign that it landed.
                    recorded = result.recorded = self._record_landed(ctx, target, snapshot, current, before, after,
                                                                     written_as)
            if current is None:
                (result.restored if WHOLE in before else result.conflicts).append(WHOLE)
                break
            self._check(ctx, action, target, current, restoring=True, read=not fresh)
            plan = plan_release(current, snapshot, alive, taken=taken)

            def release(obj: dict[str, Any], alive=alive, judged=current) -> tuple[list[dict[str, Any]], Any]:
                again = plan_release(obj, snapshot, alive, taken=taken)
                return judged_labels(judged, again.ops), _released(again)

            gone = gone_holds(current, taken, after)  # holds not on the object any more: nothing to release
            result.restored, result.kept = plan.restored + gone.back, plan.kept
            result.conflicts, result.lost = plan.conflicts + gone.changed, gone.lost
            try:
                intact = all(same(read(current, p), v) for p, v in after.items() if p != WHOLE)
                if plan.delete and intact:
                    self.kube.delete(target, resource_version=current["metadata"]["resourceVersion"],
                                     dry_run=writer.key.dry_run)
                    break
                if plan.delete:  # ours, but changed by someone since: left in place, our hold let go
                    result.restored.remove(WHOLE)
                    result.conflicts.append(WHOLE)
                if plan.ops:  # with the releases (or rehearsals) of other steps on this object, in one patch
                    self.commits.send(writer, Part(release, _released(plan)), current)
                break
            except Conflict:
                if attempt == ATTEMPTS - 1:
                    raise
        return result

    def _record_landed(self, ctx: WriteContext, target: Ref, snapshot: str, current: dict[str, Any],
                       before: dict[str, Any], after: dict[str, Any], written_as: str) -> TimelineEntry:
        """The record the write's turn would have made (``_patch``, ``_create_held``), from its snapshot: the same
        deterministic key (step, action, target, outcome, digest after), so never a second one; appended now."""
        created = created_by(current, snapshot)
        values_before = {WHOLE: ABSENT} if created else {k: v for k, v in before.items() if k != WHOLE}
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, written_as, str(target), ctx.step,
                                   digest(values_before), digest({k: v for k, v in after.items() if k != WHOLE}),
                                   "created" if created else "applied",
                                   f"recorded at the restore, from snapshot {snapshot}: the turn that made this "
                                   "write was cut off before its records reached the durable audit log")
        return audit.emit(self.kube, ctx.incident, record, at_once=True)

    def _give_back(self, target: Ref) -> None:
        """An object Argo CD syncs, with nothing of ours held on it any more: drop our managedFields entry,
        so that an ``ignoreDifferences`` by manager no longer hides these fields from Git
        (``gitops/argocd.py``). Its own request: beside a change, the apiserver would record ours again.
        Read again when the list moved (the controller-manager records its status of a Deployment whose
        replicas just came back, shifting the entries): this is the last restore, none would retry it."""
        for attempt in range(ATTEMPTS):
            current = self.commits.read(target, fresh=attempt > 0)  # first, as the restore's batch left it
            if current is None or managing_application(current, "") is None or holds(current):
                return
            ops = release_ops(current)
            if not ops:
                return
            try:
                self.kube.json_patch(target, ops)
                return
            except Conflict:
                continue
        log.warning("%s kept changing while its fields were given back to Git; left owned by %s", target,
                    FIELD_MANAGER)

    def snapshots(self, ctx: WriteContext) -> dict[str, list[str]]:
        """Every snapshot this incident took, by step (oldest first): what its resolution restores.

        Read from the cluster, not from status: a write whose status update was lost
        (a crash, a conflict) is restored all the same.
        """
        uid = ctx.incident["metadata"]["uid"]
        found = self.kube.list("ConfigMap", ctx.namespace, f"{INCIDENT_UID_LABEL}={uid}")
        out: dict[str, list[str]] = {}
        for cm in sorted(found, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"])):
            step = (cm["metadata"].get("annotations") or {}).get(STEP_ANNOTATION, "")
            out.setdefault(step, []).append(cm["metadata"]["name"])
        return out


__all__ = ["PolicyDenied", "RestoreResult", "WriteContext", "WriteGateway", "WriteResult"]
