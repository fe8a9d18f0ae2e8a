"""WriteGateway: policy → snapshot → server-side apply (or dry-run) → audit → inverse.

Crash safety comes from determinism: a snapshot's name derives from the
incident, step and target and is created only once, so a retried step reuses
the state seen *before* its first write; an apply of the same desired state is
a no-op; the audit Event has a deterministic name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from reliability_center.api.incident import TimelineEntry
from reliability_center.gateway import audit
from reliability_center.gateway.kube import Conflict, Kube, NotFound, Ref
from reliability_center.gateway.leaves import ABSENT, digest, leaves, read
from reliability_center.policy.writes import Verdict, check_write

SNAPSHOT_LABEL = "reliability.center/snapshot"
ACTOR = "system:reliability-center"


@dataclass(frozen=True)
class WriteContext:
    """Who writes, for which incident and step, at which level, in which mode."""

    incident: dict[str, Any]  # the Incident body (for owner references and the audit Event)
    trace_id: str
    tenant: str
    step: str
    level: int
    shadow: bool = False

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
    outcome: str  # applied, unchanged, dry-run, created, exists
    snapshot: str | None
    entry: TimelineEntry
    after: dict[str, Any] | None = None


@dataclass
class RestoreResult:
    target: str
    restored: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    entry: TimelineEntry | None = None


def snapshot_name(ctx: WriteContext, target: Ref) -> str:
    key = f"{ctx.incident['metadata']['uid']}|{ctx.step}|{target}"
    return f"rc-snap-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


class WriteGateway:
    def __init__(self, kube: Kube):
        self.kube = kube

    # -- the forward path ----------------------------------------------------------
    def apply(self, ctx: WriteContext, desired: dict[str, Any], *, action: str,
              seen: dict[str, Any] | None = None) -> WriteResult:
        """Server-side apply ``desired`` (a partial object) to an existing object, or create it if absent.

        ``seen`` is the object as the caller just listed it: it saves a read, and its
        resourceVersion goes into the apply as a precondition, so a change made since
        makes the apply fail (Conflict) instead of snapshotting a stale "before".
        """
        target = Ref.of(desired)
        try:
            return self._apply(ctx, desired, action, target, seen)
        except Conflict:
            if seen is None:
                raise
            return self._apply(ctx, desired, action, target, None)  # changed since the list: read it afresh

    def _apply(self, ctx: WriteContext, desired: dict[str, Any], action: str, target: Ref,
               seen: dict[str, Any] | None) -> WriteResult:
        current = seen if seen is not None else self.kube.get(target)
        labels = ((current or desired).get("metadata") or {}).get("labels") or {}
        self._check(ctx, action, str(target), labels)
        wanted = leaves(desired)
        before = {p: read(current, p) for p in wanted} if current else {"/": ABSENT}
        after = wanted
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   digest(before), digest(after), "")

        if ctx.shadow:
            result = self.kube.apply(desired, dry_run=True)
            changed = current is None or any(read(result, p) != read(current, p) for p in wanted)
            entry = self._audit(ctx, record, "dry-run", "shadow mode: would change" if changed else "shadow: no change")
            return WriteResult(str(target), "dry-run", None, entry, after)

        snap, before, taken_now = self._snapshot(ctx, target, current, before, after)
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   digest(before), digest(after), "")
        if current is not None and all(before[p] == after[p] for p in wanted) and snap is None:
            entry = self._audit(ctx, record, "unchanged", "already in the desired state")
            return WriteResult(str(target), "unchanged", None, entry, after)
        if current is not None:
            desired = {**desired, "metadata": {**desired["metadata"],
                                               "resourceVersion": current["metadata"]["resourceVersion"]}}
        try:
            self.kube.apply(desired)
        except Conflict:
            if taken_now and snap:  # its "before" is stale: the retry takes a new one
                self.kube.delete(Ref("ConfigMap", ctx.namespace, snap))
            raise
        entry = self._audit(ctx, record, "applied" if current is not None else "created", "")
        return WriteResult(str(target), "applied" if current is not None else "created", snap, entry, after)

    def create(self, ctx: WriteContext, obj: dict[str, Any], *, action: str) -> WriteResult:
        """Create a new object (a replay Job, say); adopt it if a retried step already made it."""
        self._check(ctx, action, str(Ref.of(obj)), (obj.get("metadata") or {}).get("labels") or {})
        return self._create(ctx, obj, action, before=digest({"/": ABSENT}), outcome="created")

    def propose(self, ctx: WriteContext, plan: dict[str, Any], *, action: str) -> WriteResult:
        """Create a PatchPlan owned by the Incident: a proposal in Git, the only thing level 3 may do."""
        if plan.get("kind") != "PatchPlan":
            raise ValueError("level 3 may only propose a PatchPlan")
        meta = ctx.incident["metadata"]
        plan["metadata"]["ownerReferences"] = [{"apiVersion": ctx.incident["apiVersion"], "kind": "Incident",
                                                "name": meta["name"], "uid": meta["uid"]}]
        return self._create(ctx, plan, action, before=None, outcome="proposed")

    def _create(self, ctx: WriteContext, obj: dict[str, Any], action: str, *, before: str | None,
                outcome: str) -> WriteResult:
        target = Ref.of(obj)
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   before, digest(leaves(obj)), "")
        if ctx.shadow:
            self.kube.create(obj, dry_run=True)
            return WriteResult(str(target), "dry-run", None, self._audit(ctx, record, "dry-run", "shadow mode"))
        try:
            self.kube.create(obj)
        except Conflict:
            outcome = "exists"  # made by an earlier attempt of this step
        return WriteResult(str(target), outcome, None, self._audit(ctx, record, outcome, ""))

    def _check(self, ctx: WriteContext, action: str, target: str, labels: dict[str, str]) -> None:
        verdict = check_write(level=ctx.level, incident_tenant=ctx.tenant, target=target, target_labels=labels)
        if not verdict.allowed:
            record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, target, ctx.step, None, None, "denied",
                                       f"{verdict.reason}: {verdict.message}")
            raise PolicyDenied(verdict, audit.emit(self.kube, ctx.incident, record))

    def _audit(self, ctx: WriteContext, record: audit.AuditRecord, outcome: str, message: str) -> TimelineEntry:
        final = audit.AuditRecord(**{**record.__dict__, "outcome": outcome, "message": message})
        return audit.emit(self.kube, ctx.incident, final)

    def _snapshot(self, ctx: WriteContext, target: Ref, current: dict[str, Any] | None,
                  before: dict[str, Any], after: dict[str, Any]) -> tuple[str | None, dict[str, Any], bool]:
        """Create the durable snapshot once: its name, the state before this step's first write,
        and whether it was taken just now (rather than by an earlier attempt)."""
        name = snapshot_name(ctx, target)
        if current is not None and all(before[p] == after[p] for p in after):
            # Nothing to change — unless an earlier attempt of this step changed it already.
            existing = self.kube.get(Ref("ConfigMap", ctx.namespace, name))
            if existing is None:
                return None, before, False
            return name, json.loads(existing["data"]["before"]), False
        meta = ctx.incident["metadata"]
        snapshot = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": ctx.namespace,
                "labels": {SNAPSHOT_LABEL: "true", "reliability.center/incident": meta["name"][:63]},
                "annotations": {"reliability.center/trace-id": ctx.trace_id, "reliability.center/step": ctx.step},
                "ownerReferences": [{"apiVersion": ctx.incident["apiVersion"], "kind": "Incident",
                                     "name": meta["name"], "uid": meta["uid"]}],
            },
            "data": {
                "target": json.dumps({"kind": target.kind, "namespace": target.namespace, "name": target.name,
                                      "apiVersion": (current or {}).get("apiVersion", "")}),
                "before": json.dumps(before, sort_keys=True),
                "after": json.dumps(after, sort_keys=True),
                "object": json.dumps(_strip(current) if current else None, sort_keys=True),
                "tenant": ctx.tenant,
                "traceId": ctx.trace_id,
            },
        }
        try:
            self.kube.create(snapshot)
        except Conflict:  # an earlier attempt of this step took it, before its first write
            existing = self.kube.get(Ref("ConfigMap", ctx.namespace, name)) or {}
            return name, json.loads(existing["data"]["before"]), False
        return name, before, True

    # -- the inverse -----------------------------------------------------------------
    def restore(self, ctx: WriteContext, snapshot: str, *, action: str, dry_run: bool = False) -> RestoreResult:
        """Put back what the snapshot holds — but only fields still at the value we wrote.

        A field someone else changed since is left alone and reported as a conflict.
        The JSON patch carries a ``test`` per field, so the check and the write are atomic.
        """
        data = (self.kube.get(Ref("ConfigMap", ctx.namespace, snapshot)) or {}).get("data")
        if not data:
            raise NotFound(f"snapshot {snapshot} is gone")
        spec = json.loads(data["target"])
        target = Ref(spec["kind"], spec["namespace"], spec["name"])
        before, after = json.loads(data["before"]), json.loads(data["after"])
        current = self.kube.get(target)
        result = RestoreResult(str(target))
        if before == {"/": ABSENT}:  # we created it: remove it if it is still ours as we left it
            if current is not None and all(read(current, p) == v for p, v in after.items()):
                if not dry_run:
                    self.kube.delete(target)
                result.restored.append("/")
            elif current is not None:
                result.conflicts.append("/")
        else:
            ops = self._restore_ops(current, before, after, result)
            if ops and current is not None:
                self.kube.json_patch(target, ops, dry_run=dry_run)
        outcome = "conflict" if result.conflicts else ("restore-tested" if dry_run else "restored")
        message = f"left alone (changed by someone else since): {', '.join(result.conflicts)}" if result.conflicts else ""
        record = audit.AuditRecord(ctx.trace_id, ctx.tenant, ACTOR, action, str(target), ctx.step,
                                   digest(after), digest(before), outcome, message)
        result.entry = record.timeline() if dry_run else audit.emit(self.kube, ctx.incident, record)
        return result

    @staticmethod
    def _restore_ops(current: dict[str, Any] | None, before: dict[str, Any], after: dict[str, Any],
                     result: RestoreResult) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for pointer, wrote in after.items():
            now = read(current, pointer)
            old = before.get(pointer, ABSENT)
            if now == old:
                continue  # already back
            if now != wrote:
                result.conflicts.append(pointer)
                continue
            ops.append({"op": "test", "path": pointer, "value": wrote})
            ops.append({"op": "remove", "path": pointer} if old == ABSENT else
                       {"op": "replace", "path": pointer, "value": old})
            result.restored.append(pointer)
        return ops


__all__ = ["PolicyDenied", "RestoreResult", "WriteContext", "WriteGateway", "WriteResult"]
