"""Phase: resolved → restoring. The incident is resolved (by a person, or by its signals when the
runbook says so), every inverse is dry-run again (the rollback rehearsal, gate 3's evidence,
first taken once mitigated), then each step's holds are restored from their snapshots."""

from __future__ import annotations

from reliability_center.api.runbook import Runbook
from reliability_center.engine import gates
from reliability_center.gateway import Audited, Kube, PolicyDenied, WriteGateway, audit, records
from reliability_center.gateway.kube import Conflict, NotFound
from reliability_center.operator import closing, metrics
from reliability_center.operator.draft import Draft, Stale


def signals_resolved(draft: Draft, kube: Kube, runbook: Runbook) -> bool:
    """The runbook resolves its incidents when every alert behind them has resolved: say so in the spec."""
    signals = draft.incident.spec.signals
    if not runbook.spec.resolve_when_signals_resolve or not signals or not all(s.resolved for s in signals):
        return False
    body = {k: v for k, v in draft.body.items() if k != "status"}
    try:  # an update as read (resourceVersion): the role grants update on incidents, not patch
        updated = records.replace(kube, {**body, "metadata": {**body["metadata"], "resourceVersion": draft.rv},
                                         "spec": {**body["spec"], "resolved": True}})
    except (Conflict, NotFound) as exc:
        raise Stale(str(exc)) from None
    draft.rv = updated["metadata"]["resourceVersion"]
    draft.body = {**draft.body, "metadata": updated["metadata"]}
    draft.generation = updated["metadata"].get("generation")
    draft.incident.spec.resolved = True
    draft.note("resolved", f"every one of its {len(signals)} signals resolved: runbook "
                           f"{runbook.metadata.name} resolves the incident (resolveWhenSignalsResolve)")
    return True


def rehearse(draft: Draft, gateway: WriteGateway, held: dict[str, list[str]] | None = None,
             again: bool = False) -> None:
    """Gate 3's evidence: dry-run every inverse on the apiserver, once mitigated (and again at the
    resolve), before it is needed."""
    if draft.shadow or (held is None and not draft.status.snapshots):
        # Nothing written: status lists every snapshot a step reported. Once resolved, ``held`` is read from the
        # cluster, which also has those of a turn cut off before its status (and resolved before its redo).
        return
    if not again and any(c.type == "RollbackTested" for c in draft.status.conditions):
        return
    if held is None:
        held = gateway.snapshots(draft.write_context("", 1))
    snapshots = [s for name in held for s in held[name]]
    if not snapshots:
        return
    ok, message = closing.rehearse(gateway, draft.write_context("rollback-test", 1), snapshots)
    draft.condition("RollbackTested", "True" if ok else "False", "DryRunApplies" if ok else "DryRunRefused",
                    message)
    draft.note("rollback:tested" if ok else "rollback:refused", message)


def restore_step(draft: Draft, gateway: WriteGateway, held: dict[str, list[str]], index: int, kube: Kube) -> None:
    status = draft.status.steps[index]
    write = draft.write_context(status.name, status.level)
    if draft.status.phase != "Verifying":
        draft.mark_resolved()
    conflicts, kept, refused, lost, dropped = [], [], [], [], []
    snapshots = held.get(status.name, [])
    # A turn cut off after its writes landed, resolved before it was taken again, never appended their records
    # nor wrote its status (gateway/audit.one_append): a restore first settles a write no status reported
    # (gateway/writes.Audited). Its status listing them all, the step's records were appended: the log is not read.
    audited = Audited(gates.written(audit.read_log(kube, draft.ref.namespace, draft.body["metadata"]["uid"])),
                      set(status.snapshots), status.action) \
        if any(s not in status.snapshots for s in snapshots) else None
    for snapshot in reversed(snapshots):
        try:
            result = gateway.restore(write, snapshot, action=f"restore:{status.action}", audited=audited)
        except NotFound as exc:
            conflicts.append(f"{snapshot}: {exc}")
            continue
        except PolicyDenied as denied:  # a snapshot naming a target this incident may not write
            draft.status.timeline.append(denied.entry)
            metrics.REFUSALS.labels(denied.verdict.reason).inc()
            refused.append(denied.verdict)
            continue
        if result.recorded:  # the write, as its turn would have reported it
            draft.status.timeline.append(result.recorded)
            status.targets += [result.target] if result.target not in status.targets else []
            status.snapshots += [snapshot] if snapshot not in status.snapshots else []
            draft.status.snapshots += [snapshot] if snapshot not in draft.status.snapshots else []
        if result.dropped:
            dropped.append(snapshot)
            continue
        if result.entry:
            draft.status.timeline.append(result.entry)
        conflicts += [f"{result.target}{p}" for p in result.conflicts]
        kept += [f"{result.target}{p}" for p in result.kept]
        lost += [f"{result.target}{p}" for p in result.lost]
    status.state = "Restored"
    status.reason = refused[0].reason if refused else "HoldLost" if lost else "RestoreConflict" if conflicts \
        else "Restored"
    parts = [f"{len(snapshots) - len(refused) - len(dropped)} snapshots restored"]
    if dropped:
        parts.append(f"{len(dropped)} dropped, their writes never landed: {', '.join(dropped)}")
    if refused:
        parts.insert(0, f"{len(refused)} refused: " + "; ".join(v.message for v in refused))
    if kept:
        parts.append("kept for other open incidents: " + ", ".join(kept))
    if conflicts:
        parts.append("not restored, changed by someone else since: " + ", ".join(conflicts))
    if lost:
        parts.append("not restored, still at the value the step set but its hold annotation was removed "
                     "(nobody can tell any more whether it is still needed): " + ", ".join(lost))
    status.message = "; ".join(parts)[:1024]
    draft.note("step:Restored", status.message, status.name)
    if refused:
        draft.condition("RestoreRefused", "True", refused[0].reason, status.message)
    if conflicts:
        draft.condition("RestoreConflicts", "True", "ChangedSinceMitigation", status.message)
    if lost:
        draft.condition("HoldLost", "True", "HoldAnnotationRemoved", status.message)
