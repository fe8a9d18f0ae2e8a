"""Holds: which incident step holds which field of a shared object, marked on the object itself.

Outages bring many incidents onto one object (one flags store, one NetworkPolicy).
A change must stay until the last incident that needs it resolves, and then go
back to what the field was before the first one.

**The layout, and why.** Kubernetes limits all annotations of one object to 256 KiB
together, and a storm is thousands of tenants on one flags store. The first layout,
one annotation ``reliability.center/hold-<hash>`` per field holding the value set,
the value before and the holders' snapshot names, cost 134 bytes and the path's
length a field (158 for ``/data/tenant-0001.search``) and 31 per extra holder
(``tests/unit/test_hold_bytes.py`` measures both layouts): about 1,500 held fields
filled the object and every further step failed. So the object
now carries only what must change in the same patch as the field:

- who holds it: 64 annotations ``reliability.center/holds-NN``, each one string
  of 12-character records ``<field id><holder id>``, one per (field, holder).
  A field's bucket ``NN`` and its 6-character id are 42 bits of the hash of its
  path (the hash that named its annotation before); a holder id is 36 bits of the
  hash of its snapshot's name, which that snapshot carries as its label
  ``reliability.center/holder`` (in hex), so another incident can find it;
- the value before, only when there was one (a line ``<field id><JSON>`` after
  the records): a new per-tenant key costs nothing more.

5,000 tenants holding one new key each take 61.7 KB (23.5% of the limit); each extra
holder of a field adds 12 bytes. The path and the value set live where they are
written first, in the holder's snapshot (its ``holds`` record, created before the
write): a release plans from that record (``plan_release``'s ``taken``), and a
second incident whose field differs from the value it wants reads the live
holders' records (``recorded``) to tell a collision from a field someone changed
since. The ids are short on purpose: two of 5,000 fields on one object share a
field id with odds of 3 in a million, and a gone holder is taken for alive only
if another snapshot of the namespace has its 36-bit id.

Every write and every release is one JSON patch whose ``test`` operations cover
exactly the fields it changes and the buckets of their holds. Writers of fields
in different buckets never contend (the apiserver applies each patch to the
newest object); two writers of one bucket race on it (1 in 64 for two fields),
and the loser gets a Conflict and plans again from a fresh read. Nothing another
manager or incident set is removed: a patch names only our fields and buckets.
Crash safety is the same as before: the holder id derives from the deterministic
snapshot name, so a step retried after a crash finds itself holding and writes
nothing more.

The first layout is still read: an object that carries ``hold-<hash>`` annotations
(an operator upgraded with incidents open) is joined and released in that form,
each such annotation as self-contained as it was; new holds take the new one.

Pure: given the object as read, these functions return the patch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from reliability_center.gateway.leaves import ABSENT, read

HOLD_PREFIX = "reliability.center/hold-"
"""The first layout's annotations (one per field), still read; ``Edit.key`` keeps this form: a field's
identity in snapshot records."""
BUCKET_PREFIX = "reliability.center/holds-"
BUCKETS = 64
ID_CHARS = 6
"""Characters of a field id and of a holder id (36 bits each, base64url)."""
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ID_BITS = 6 * ID_CHARS
WHOLE = "/"
"""The path of a hold on a whole object we created: the last holder deletes it."""


def same(a: Any, b: Any) -> bool:
    """JSON equality: by type and value (Python's ``1 == True`` is not JSON's)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _b64(number: int) -> str:
    return "".join(_ALPHABET[(number >> shift) & 63] for shift in range(_ID_BITS - 6, -1, -6))


def _unb64(text: str) -> int:
    number = 0
    for char in text:
        number = number * 64 + _ALPHABET.index(char)
    return number


def locate(key: str) -> tuple[str, str]:
    """A field's bucket annotation and its id in it, from its ``Edit.key`` (64 bits of the path's hash)."""
    bits = int(key.removeprefix(HOLD_PREFIX), 16)
    return f"{BUCKET_PREFIX}{bits >> 58:02d}", _b64((bits >> (58 - _ID_BITS)) & ((1 << _ID_BITS) - 1))


def holder_id(holder: str) -> str:
    """The holder's id on objects: 36 bits of the hash of its snapshot's name."""
    return _b64(int(hashlib.sha256(holder.encode()).hexdigest()[:_ID_BITS // 4], 16))


def holder_label(hid: str) -> str:
    """The same id as a label value (labels allow no ``_`` or ``-`` at their ends): 9 hex digits."""
    return f"{_unb64(hid):0{_ID_BITS // 4}x}"


def is_holder_id(holder: str) -> bool:
    """A holder named by id (this layout), not by snapshot name (the first layout's)."""
    return len(holder) == ID_CHARS and all(c in _ALPHABET for c in holder)


@dataclass(frozen=True)
class Edit:
    """One change a step wants: a value at a path, or one item in the list at a path (added, or
    with ``remove`` taken out: two incidents removing two subjects of one list each hold their own)."""

    path: str
    value: Any
    item: bool = False
    remove: bool = False

    @property
    def key(self) -> str:
        """The field's identity: its first-layout annotation key, one per field (per list item for item edits)."""
        mark = "\0-" if self.remove else "\0"
        ident = self.path + (mark + json.dumps(self.value, sort_keys=True) if self.item else "")
        return HOLD_PREFIX + hashlib.sha256(ident.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """How the edit reads in snapshots and audit records (``/-`` appends, as in JSON patch)."""
        if self.remove:
            return f"{self.path}[-{json.dumps(self.value, sort_keys=True)}]"
        return self.path + "/-" if self.item else self.path


@dataclass(frozen=True)
class Hold:
    """A field held: as a snapshot records it (holders as the write left them), and as the first layout's
    annotation carries it whole."""

    path: str
    value: Any
    before: Any
    holders: tuple[str, ...]
    item: bool = False
    removed: bool = False
    """An item taken out of the list; ``before`` is where it was (index, the items either side), where
    the release puts it back."""

    def wire(self) -> str:
        body = {"path": self.path, "value": self.value, "before": self.before, "holders": list(self.holders)}
        if self.item:
            body["item"] = True
        if self.removed:
            body["removed"] = True
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @property
    def edit(self) -> Edit:
        return Edit(self.path, self.value, self.item, self.removed)

    @classmethod
    def parse(cls, raw: str) -> Hold:
        """From its wire form; ValueError, KeyError or TypeError when it is not one."""
        body = json.loads(raw)
        before = ABSENT if body["before"] == ABSENT else body["before"]
        return cls(body["path"], body["value"], before, tuple(body["holders"]), bool(body.get("item")),
                   bool(body.get("removed")))


@dataclass(frozen=True)
class Marker:
    """A field held, as this layout marks it on the object: its holders' ids, its value before unless absent."""

    holders: tuple[str, ...]
    before: Any = field(default_factory=lambda: ABSENT)


def encode_bucket(markers: dict[str, Marker]) -> str:
    """``<field id><holder id>`` for each (field, holder), first holders first; then a line per value before."""
    pairs = "".join(fid + h for fid in sorted(markers) for h in markers[fid].holders)
    befores = [fid + json.dumps(markers[fid].before, sort_keys=True, separators=(",", ":"))
               for fid in sorted(markers) if markers[fid].before is not ABSENT]
    return "\n".join([pairs, *befores])


def decode_bucket(raw: str) -> dict[str, Marker]:
    """ValueError when ``raw`` is not a bucket of holds."""
    pairs, *befores = raw.split("\n")
    record = 2 * ID_CHARS
    if len(pairs) % record or any(c not in _ALPHABET for c in pairs):
        raise ValueError(f"not records of {record} characters: {pairs[:40]!r}")
    holders: dict[str, list[str]] = {}
    for at in range(0, len(pairs), record):
        holders.setdefault(pairs[at:at + ID_CHARS], []).append(pairs[at + ID_CHARS:at + record])
    before: dict[str, Any] = {}
    for line in befores:
        if line[:ID_CHARS] not in holders:
            raise ValueError(f"a value before for a field nobody holds: {line[:40]!r}")
        before[line[:ID_CHARS]] = json.loads(line[ID_CHARS:])
    return {fid: Marker(tuple(h), before.get(fid, ABSENT)) for fid, h in holders.items()}


class UnreadableHolds(ValueError):
    """A bucket of holds someone changed into something else: writing it would drop the holds it had."""


@dataclass
class Holds:
    """Every hold an object carries, in either layout. A bucket is decoded when first asked for: a write
    plans with the buckets of its own fields only, whatever the number of tenants on the object."""

    legacy: dict[str, Hold] = field(default_factory=dict)
    """The first layout's, by annotation key (``Edit.key``)."""
    raw: dict[str, str] = field(default_factory=dict)
    """Each bucket annotation as read (what a patch tests)."""
    _decoded: dict[str, dict[str, Marker] | str] = field(default_factory=dict)

    def bucket(self, name: str) -> dict[str, Marker]:
        """A bucket's markers by field id (empty when absent); UnreadableHolds when it is not a bucket."""
        if name not in self._decoded:
            try:
                self._decoded[name] = decode_bucket(self.raw[name]) if name in self.raw else {}
            except (ValueError, TypeError) as exc:
                self._decoded[name] = str(exc)
        found = self._decoded[name]
        if isinstance(found, str):
            raise UnreadableHolds(f"annotation {name}: {found}; its holds cannot be kept by a write that does "
                                  "not understand them")
        return found

    def marker(self, key: str) -> Marker | None:
        name, fid = locate(key)
        return self.bucket(name).get(fid)

    def has(self, key: str) -> bool:
        """Whether the field's hold is on the object (a bucket nobody can read counts: it may be)."""
        try:
            return key in self.legacy or self.marker(key) is not None
        except UnreadableHolds:
            return True

    def holders(self, key: str) -> tuple[str, ...]:
        """The field's holders: snapshot names (first layout) or holder ids."""
        legacy = self.legacy.get(key)
        if legacy is not None:
            return legacy.holders
        marker = self.marker(key)
        return marker.holders if marker else ()

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        """The holders of each held field (UnreadableHolds on a bucket that is not one)."""
        yield from (h.holders for h in self.legacy.values())
        yield from (m.holders for name in sorted(self.raw) for m in self.bucket(name).values())

    def __len__(self) -> int:
        return len(self.legacy) + sum(len(self.bucket(name)) for name in self.raw)


def annotation_pointer(key: str) -> str:
    return "/metadata/annotations/" + escape(key)


def holds(obj: dict[str, Any] | None) -> Holds:
    """Every hold recorded on the object."""
    out = Holds()
    for key, raw in ((obj or {}).get("metadata", {}).get("annotations") or {}).items():
        if key.startswith(BUCKET_PREFIX):
            out.raw[key] = raw
        elif key.startswith(HOLD_PREFIX):
            try:
                out.legacy[key] = Hold.parse(raw)
            except (ValueError, KeyError, TypeError):
                continue  # not ours to interpret: left alone
    return out


def hold_bytes(obj: dict[str, Any] | None) -> int:
    """What the holds cost against Kubernetes' annotation limit (keys and values, in bytes)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in ((obj or {}).get("metadata", {}).get("annotations")
                                                           or {}).items()
               if k.startswith((HOLD_PREFIX, BUCKET_PREFIX)))


def whole_hold(holder: str) -> tuple[str, str]:
    """The annotation a created object carries: it is held whole by its creator."""
    bucket, fid = locate(Edit(WHOLE, None).key)
    return bucket, encode_bucket({fid: Marker((holder_id(holder),))})


def whole_record(holder: str) -> dict[str, Hold]:
    """What the creator's snapshot records of that hold."""
    return {Edit(WHOLE, None).key: Hold(WHOLE, None, ABSENT, (holder_id(holder),))}


def created_by(current: dict[str, Any], holder: str) -> bool:
    """Whether ``holder`` created the object (it is the first holder of the whole)."""
    first = holds(current).holders(Edit(WHOLE, None).key)[:1]
    return first in ((holder,), (holder_id(holder),))


class HeldElsewhere(Exception):
    """Another incident holds this field at a different value: two intents collide."""

    def __init__(self, path: str, value: Any, holders: tuple[str, ...]):
        super().__init__(f"{path} is held at {json.dumps(value)} by {', '.join(holders)}")
        self.path, self.value, self.holders = path, value, holders


class _Patch:
    """Builds a JSON patch against the object as read, creating missing parents on the way."""

    def __init__(self, current: dict[str, Any]):
        self.current = current
        self.ops: list[dict[str, Any]] = []
        self.made: set[str] = set()
        self.found = holds(current)
        self.buckets: dict[str, dict[str, Marker]] = {}
        """The buckets this patch changes, as it leaves them."""

    def exists(self, pointer: str) -> bool:
        return pointer in self.made or read(self.current, pointer) is not ABSENT

    def parents(self, pointer: str) -> None:
        parts = pointer.split("/")[1:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:depth])
            if self.exists(parent):
                continue
            # Absent when read: assert it is still absent (a test for null passes on a missing key).
            self.ops.append({"op": "test", "path": parent, "value": None})
            self.ops.append({"op": "add", "path": parent, "value": {}})
            self.made.add(parent)

    def set(self, pointer: str, old: Any, new: Any) -> None:
        """Compare-and-set one field: it must still hold ``old`` (ABSENT: missing)."""
        self.parents(pointer)
        if pointer not in self.made:
            self.ops.append({"op": "test", "path": pointer, "value": None if old is ABSENT else old})
        self.ops.append({"op": "add", "path": pointer, "value": new})

    def unset(self, pointer: str, old: Any, before: Any) -> None:
        """Put ``before`` back (remove when ABSENT), if the field still holds ``old``."""
        self.ops.append({"op": "test", "path": pointer, "value": old})
        self.ops.append({"op": "remove", "path": pointer} if before is ABSENT
                        else {"op": "replace", "path": pointer, "value": before})

    def held(self, key: str, me: str) -> tuple[Hold | None, str]:
        """The field's hold as this patch has it so far (its path and value unknown in this layout:
        the caller knows them), and who ``me`` is in that layout."""
        legacy = self.found.legacy.get(key)
        if legacy is not None:
            return legacy, me
        bucket, fid = locate(key)
        marker = self.buckets.get(bucket, self.found.bucket(bucket)).get(fid)
        return (None if marker is None else Hold("", None, marker.before, marker.holders)), holder_id(me)

    def hold(self, key: str, old: Hold | None, new: Hold | None) -> None:
        if key in self.found.legacy:
            pointer = annotation_pointer(key)
            old_wire = ABSENT if old is None else old.wire()
            if new is None:
                self.unset(pointer, old_wire, ABSENT)
            else:
                self.set(pointer, old_wire, new.wire())
            return
        bucket, fid = locate(key)
        if bucket not in self.buckets:
            self.buckets[bucket] = dict(self.found.bucket(bucket))
        working = self.buckets[bucket]
        if new is None:
            working.pop(fid, None)
        else:
            working[fid] = Marker(new.holders, new.before)

    def finish(self) -> list[dict[str, Any]]:
        """The ops, with one test and one write per bucket changed."""
        for bucket, markers in sorted(self.buckets.items()):
            old, new = self.found.raw.get(bucket), encode_bucket(markers) if markers else None
            if new == old:
                continue
            if new is None:
                self.unset(annotation_pointer(bucket), old, ABSENT)
            else:
                self.set(annotation_pointer(bucket), ABSENT if old is None else old, new)
        return self.ops


@dataclass
class WritePlan:
    ops: list[dict[str, Any]] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    """Edit label → the value before any incident changed it (from the hold when others hold it)."""
    after: dict[str, Any] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    """Edit labels this holder holds after the write (changed, joined, or held already)."""
    joined: list[str] = field(default_factory=list)
    """Edit labels already held by other incidents at this value: this holder joins them."""
    unchanged: list[str] = field(default_factory=list)
    """Edit labels already at the wanted value though nobody holds them: not ours to restore."""
    holds: dict[str, Hold] = field(default_factory=dict)
    """By ``Edit.key``, each hold as the write leaves it: the snapshot records them (path, value, before,
    holders), what a release plans from and what tells a hold someone removed from one never taken."""

    @property
    def holds_all(self) -> bool:
        return not self.ops and bool(self.held)


_OTHER = object()
"""A held value known to differ from the wanted one (or not known at all)."""


def _held_value(current: dict[str, Any], edit: Edit, hold: Hold, alive: Callable[[str], bool],
                recorded: Callable[[str, str], Hold | None] | None) -> Any:
    """The value this layout's hold keeps (not on the object): the wanted one when the field shows it or a
    live holder recorded it, else the one a live holder recorded; ``_OTHER`` when no live holder tells."""
    if edit.item or same(read(current, edit.path), edit.value):
        return edit.value  # an item's hold is of that very item; a field at the value: held at it
    for holder in hold.holders:
        record = recorded(holder, edit.key) if recorded and alive(holder) else None
        if record is not None:
            return record.value
    return _OTHER


def plan_write(current: dict[str, Any], edits: list[Edit], holder: str,
               alive: Callable[[str], bool] = lambda _: True,
               recorded: Callable[[str, str], Hold | None] | None = None) -> WritePlan:
    """The patch that makes ``holder`` (its snapshot's name) hold every edit on ``current``.

    Raises HeldElsewhere when another live incident holds one of the fields at a
    different value: overriding it would undo that incident's change. A hold whose
    holders are all gone (incidents deleted unresolved) is taken over, keeping the
    value from before them. ``alive`` says whether a holder (a snapshot name, or a
    holder id) still exists; ``recorded(holder, key)`` is what that holder's snapshot
    recorded of the field (its value), asked only when the field is not at the value wanted.
    """
    plan, patch = WritePlan(), _Patch(current)
    # Removals last, from the end of their list: an index taken out never moves the ones still to take.
    removals = sorted((e for e in edits if e.remove), key=lambda e: -_position(read(current, e.path), e.value))
    for edit in [e for e in edits if not e.remove] + removals:
        hold, me = patch.held(edit.key, holder)
        if hold is not None and edit.key not in patch.found.legacy:  # this layout: path and value not on it
            mine = me in hold.holders or edit.path == WHOLE
            value = edit.value if mine else _held_value(current, edit, hold, alive, recorded)
            hold = replace(hold, path=edit.path, value=value, item=edit.item, removed=edit.remove)
        if edit.path == WHOLE:
            _whole(plan, patch, edit, hold, me)
            continue
        plan.after[edit.label] = edit.value
        if hold is not None and me in hold.holders:
            plan.before[edit.label] = hold.before  # an earlier attempt of this step holds it already
            plan.held.append(edit.label)
            plan.holds[edit.key] = hold
            continue
        if hold is not None and (hold.value is _OTHER or not same(hold.value, edit.value)):
            live = tuple(h for h in hold.holders if alive(h))
            if live:
                raise HeldElsewhere(edit.path, read(current, edit.path) if hold.value is _OTHER else hold.value, live)
        if edit.remove:
            _removed(plan, patch, current, edit, hold, me)
        elif edit.item:
            _item(plan, patch, current, edit, hold, me)
        else:
            _value(plan, patch, current, edit, hold, me)
    plan.ops = patch.finish()
    return plan


def _value(plan: WritePlan, patch: _Patch, current: dict[str, Any], edit: Edit, hold: Hold | None,
           holder: str) -> None:
    now = read(current, edit.path)
    if hold is None:
        plan.before[edit.label] = now
        if same(now, edit.value):
            plan.unchanged.append(edit.label)  # someone else's setting: not ours to restore
            return
        patch.set(edit.path, now, edit.value)
        plan.holds[edit.key] = Hold(edit.path, edit.value, now, (holder,))
        patch.hold(edit.key, None, plan.holds[edit.key])
    else:
        plan.before[edit.label] = hold.before
        plan.joined.append(edit.label)
        if not same(now, edit.value):  # changed since (by a person, or a gone holder's value): ours again
            patch.set(edit.path, now, edit.value)
        # A gone holders' value is taken over (by this layout's holders too, when none told their value).
        holders = hold.holders if hold.value is not _OTHER and same(hold.value, edit.value) else ()
        plan.holds[edit.key] = replace(hold, value=edit.value, holders=holders + (holder,))
        patch.hold(edit.key, hold, plan.holds[edit.key])
    plan.held.append(edit.label)


def _whole(plan: WritePlan, patch: _Patch, edit: Edit, hold: Hold | None, holder: str) -> None:
    """An object another incident created for the same purpose (rc-isolate-<tenant>): hold it too."""
    if hold is None:
        return  # made by someone else (or long there): never ours to delete
    plan.before[edit.label], plan.after[edit.label] = ABSENT, None
    plan.held.append(edit.label)
    hold = replace(hold, path=WHOLE, value=None)
    if holder in hold.holders:
        plan.holds[edit.key] = hold
        return  # created or joined by an earlier attempt of this step
    plan.joined.append(edit.label)
    plan.holds[edit.key] = replace(hold, holders=hold.holders + (holder,))
    patch.hold(edit.key, hold, plan.holds[edit.key])


def _item(plan: WritePlan, patch: _Patch, current: dict[str, Any], edit: Edit, hold: Hold | None,
          holder: str) -> None:
    items = read(current, edit.path)
    present = isinstance(items, list) and any(same(i, edit.value) for i in items)
    if hold is None:
        plan.before[edit.label] = ABSENT if items is ABSENT else "absent from the list"
        if present:
            plan.unchanged.append(edit.label)
            return
        if items is ABSENT:
            patch.set(edit.path, ABSENT, [edit.value])
        else:
            patch.ops.append({"op": "add", "path": edit.path + "/-", "value": edit.value})
        plan.holds[edit.key] = Hold(edit.path, edit.value, ABSENT if items is ABSENT else [], (holder,), True)
        patch.hold(edit.key, None, plan.holds[edit.key])
    else:
        plan.before[edit.label] = hold.before
        plan.joined.append(edit.label)
        if not present:
            if items is ABSENT:
                patch.set(edit.path, ABSENT, [edit.value])
            else:
                patch.ops.append({"op": "add", "path": edit.path + "/-", "value": edit.value})
        plan.holds[edit.key] = replace(hold, holders=hold.holders + (holder,))
        patch.hold(edit.key, hold, plan.holds[edit.key])
    plan.held.append(edit.label)


def _position(items: Any, value: Any) -> int:
    """The item's index in the list, -1 when absent (or no list)."""
    if isinstance(items, list):
        return next((i for i, v in enumerate(items) if same(v, value)), -1)
    return -1


def _removed(plan: WritePlan, patch: _Patch, current: dict[str, Any], edit: Edit, hold: Hold | None,
             holder: str) -> None:
    items = read(current, edit.path)
    index = _position(items, edit.value)
    plan.after[edit.label] = "removed"
    if hold is None:
        plan.before[edit.label] = index
        if index < 0:
            plan.unchanged.append(edit.label)  # not in the list: nothing to take out, nothing to put back
            return
        # Its neighbours, not only its index: others may put theirs back first, the index moves, they do not.
        where = {"index": index, "after": items[index - 1] if index > 0 else None,
                 "next": items[index + 1] if index + 1 < len(items) else None}
        patch.ops += [{"op": "test", "path": f"{edit.path}/{index}", "value": edit.value},
                      {"op": "remove", "path": f"{edit.path}/{index}"}]
        plan.holds[edit.key] = Hold(edit.path, edit.value, where, (holder,), True, True)
        patch.hold(edit.key, None, plan.holds[edit.key])
    else:
        plan.before[edit.label] = hold.before
        plan.joined.append(edit.label)
        if index >= 0:  # put back since (by a person): taken out again
            patch.ops += [{"op": "test", "path": f"{edit.path}/{index}", "value": edit.value},
                          {"op": "remove", "path": f"{edit.path}/{index}"}]
        plan.holds[edit.key] = replace(hold, holders=hold.holders + (holder,))
        patch.hold(edit.key, hold, plan.holds[edit.key])
    plan.held.append(edit.label)


def plan_once(current: dict[str, Any], edits: list[Edit]) -> list[dict[str, Any]]:
    """The patch for a change that is never undone (a restart marker): no hold, a test per field."""
    patch = _Patch(current)
    for edit in edits:
        now = read(current, edit.path)
        if not same(now, edit.value):
            patch.set(edit.path, now, edit.value)
    return patch.ops


@dataclass
class ReleasePlan:
    ops: list[dict[str, Any]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    """Edit labels put back to their value before (or already back)."""
    kept: list[str] = field(default_factory=list)
    """Edit labels other incidents still hold: left as they are."""
    conflicts: list[str] = field(default_factory=list)
    """Edit labels someone changed since we wrote them: left alone."""
    delete: bool = False
    """The object was created by this holder and nobody else holds it: delete it (or, if it was
    changed since, apply ``ops``, which let go of the hold and leave the object)."""

    @property
    def held(self) -> bool:
        return bool(self.ops or self.delete)


def _held_by(found: Holds, holder: str, taken: dict[str, Hold]) -> list[tuple[str, Hold, str]]:
    """(key, hold, holder as named there) for every field ``holder`` holds on the object: the first layout's
    annotations say it all; this layout's markers are read with the path and value ``taken`` recorded."""
    out = [(key, hold, holder) for key, hold in found.legacy.items() if holder in hold.holders]
    me = holder_id(holder)
    for key, record in taken.items():
        marker = None if key in found.legacy else found.marker(key)
        if marker is not None and me in marker.holders:
            out.append((key, replace(record, before=marker.before, holders=marker.holders), me))
    return out


def plan_release(current: dict[str, Any], holder: str, alive: Callable[[str], bool], *,
                 taken: dict[str, Hold]) -> ReleasePlan:
    """The patch that lets go of every hold of ``holder`` on ``current``.

    A field is put back only when no other live holder remains and it still
    holds the value we set; ``alive`` says whether another holder still exists
    (its incident may have been deleted without resolving). ``taken``: what the
    holder's snapshot recorded of its holds, by ``Edit.key`` (their paths and values).
    """
    plan, patch = ReleasePlan(), _Patch(current)
    lists: dict[str, list[Any]] = {}  # lists items were put back into by this patch, as they will be
    # Removed items go back in the order they had, the earlier ones first.
    order = sorted(_held_by(patch.found, holder, taken), key=lambda kv: (kv[1].path, _index_of(kv[1])))
    for key, hold, me in order:
        label = hold.edit.label
        others = tuple(h for h in hold.holders if h != me and alive(h))
        if others:
            patch.hold(key, hold, replace(hold, holders=others))
            plan.kept.append(label)
            continue
        patch.hold(key, hold, None)
        if hold.path == WHOLE:
            # Deleted whole when still as created; else only this hold is let go (``ops``).
            plan.delete = True
            plan.restored.append(label)
            continue
        if hold.removed:
            _put_back(plan, patch, current, hold, label, lists)
            continue
        if hold.item:
            _release_item(plan, patch, current, hold, label)
            continue
        now = read(current, hold.path)
        if same(now, hold.value):
            patch.unset(hold.path, hold.value, hold.before)
            plan.restored.append(label)
        elif same(now, hold.before):
            plan.restored.append(label)  # already back
        else:
            plan.conflicts.append(label)
    plan.ops = patch.finish()
    return plan


@dataclass
class GoneHolds:
    """Holds a write took that are no longer on the object, judged by the fields themselves."""

    lost: list[str] = field(default_factory=list)
    """Edit labels still at the value the write set, with nothing holding them: someone removed the
    annotation (``kubectl annotate ... -``, another writer's PUT without it). Nobody can tell any more
    whether the value is still needed, so it is left as it is and reported."""
    back: list[str] = field(default_factory=list)
    """Edit labels at their value before the write again (a release that ran already, or a person)."""
    changed: list[str] = field(default_factory=list)
    """Edit labels at neither value: someone changed them since."""


def gone_holds(current: dict[str, Any], taken: dict[str, Hold], after: dict[str, Any]) -> GoneHolds:
    """Of the holds a write took (``taken``, by ``Edit.key``, as its snapshot recorded them), those no longer
    on ``current`` at all (in either layout); a hold only others still carry is theirs.
    ``after``: the write's values by edit label (for an object it created: whether it is as created)."""
    present, out = holds(current), GoneHolds()
    for key, hold in taken.items():
        if present.has(key):
            continue
        label = hold.edit.label
        if hold.path == WHOLE:
            intact = all(same(read(current, p), v) for p, v in after.items() if p != WHOLE)
            (out.lost if intact else out.changed).append(label)
        elif hold.removed:
            (out.back if _position(read(current, hold.path), hold.value) >= 0 else out.lost).append(label)
        elif hold.item:
            (out.lost if _position(read(current, hold.path), hold.value) >= 0 else out.back).append(label)
        elif same(read(current, hold.path), hold.value):
            out.lost.append(label)
        elif same(read(current, hold.path), hold.before):
            out.back.append(label)
        else:
            out.changed.append(label)
    return out


def landed(current: dict[str, Any] | None, holder: str, taken: dict[str, Hold], after: dict[str, Any]) -> bool | None:
    """Whether the write of ``holder`` (its snapshot: the holds it takes, ``taken``, and its values, ``after``) is on
    ``current``, told before any release: a write's fields and its holds change in one patch.

    True while it holds a field there. False when nothing of it is there: no hold of it, and each field it takes at
    its value before or held by others only (their hold would name it too); an object it would have created,
    absent. None when nobody can tell: a field at the value it sets or changed since, with no hold on it (its hold
    removed by someone, or someone else's doing), an object it patches deleted, or a snapshot that recorded no holds."""
    if not taken:
        return None
    if current is None:
        return False if any(h.path == WHOLE for h in taken.values()) else None
    if _held_by(holds(current), holder, taken):
        return True
    gone = gone_holds(current, taken, after)
    return None if gone.lost or gone.changed else False


def _release_item(plan: ReleasePlan, patch: _Patch, current: dict[str, Any], hold: Hold, label: str) -> None:
    items = read(current, hold.path)
    index = next((i for i, v in enumerate(items) if same(v, hold.value)), None) if isinstance(items, list) else None
    if index is None:
        plan.restored.append(label)  # already gone
        return
    if len(items) == 1 and hold.before is ABSENT:
        patch.unset(hold.path, items, ABSENT)  # the list was ours alone: remove it whole
    else:
        patch.unset(f"{hold.path}/{index}", hold.value, ABSENT)
    plan.restored.append(label)


def _index_of(hold: Hold) -> int:
    return int(hold.before.get("index", -1)) if hold.removed and isinstance(hold.before, dict) else -1


def _put_back(plan: ReleasePlan, patch: _Patch, current: dict[str, Any], hold: Hold, label: str,
              lists: dict[str, list[Any]]) -> None:
    """Insert a removed item back where it was: after the item before it, else before the one after
    it, else at its index (or the end, if the list got shorter)."""
    items = read(current, hold.path)
    if _position(items, hold.value) >= 0:
        plan.restored.append(label)  # already back
        return
    existed = hold.path in lists or isinstance(items, list)
    working = lists.setdefault(hold.path, list(items) if isinstance(items, list) else [])
    where = hold.before if isinstance(hold.before, dict) else {}
    if where.get("after") is not None and _position(working, where["after"]) >= 0:
        index = _position(working, where["after"]) + 1
    elif where.get("next") is not None and _position(working, where["next"]) >= 0:
        index = _position(working, where["next"])
    else:
        index = min(int(where.get("index", len(working))), len(working))
    if not existed:
        patch.set(hold.path, ABSENT, [hold.value])  # the apiserver drops an emptied list: made again
    else:
        patch.ops.append({"op": "add", "path": f"{hold.path}/{index}", "value": hold.value})
    working.insert(index, hold.value)
    plan.restored.append(label)


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def _owns(fields: Any, segments: list[str]) -> bool:
    """Does a managedFields ``fieldsV1`` set own this path (or an atomic node above it)?"""
    node = fields
    for segment in segments:
        if not isinstance(node, dict):
            return True
        if not node:
            return True  # an empty set: the node is owned whole (an atomic map or list)
        node = node.get("f:" + segment)
        if node is None:
            return False
    return True


def foreign_owners(current: dict[str, Any], ops: list[dict[str, Any]], ours: str,
                   since: str | None = None) -> dict[str, list[str]]:
    """Fields the patch changes that another field manager owns: path → managers.

    Our hold annotations (either layout) and the empty maps a patch creates on the way are not
    fields anybody owns; status is not ours to write, so status managers are skipped.
    ``since`` (RFC 3339): only managers whose entry was updated at or after that time.
    """
    changed = []
    for op in ops:
        if op["op"] == "test" or op["path"].startswith(tuple(annotation_pointer(p) for p in (HOLD_PREFIX,
                                                                                                  BUCKET_PREFIX))):
            continue
        if op["op"] == "add" and op.get("value") == {}:
            continue  # a missing parent, made empty
        path = op["path"][:-2] if op["path"].endswith("/-") else op["path"]
        changed.append(path)
    owners: dict[str, list[str]] = {}
    for entry in (current.get("metadata") or {}).get("managedFields") or []:
        manager = entry.get("manager") or "unknown"
        if manager == ours or entry.get("subresource") == "status":
            continue
        if since is not None and (entry.get("time") or "") < since:
            continue
        for path in changed:
            if _owns(entry.get("fieldsV1") or {}, [_unescape(p) for p in path.lstrip("/").split("/")]):
                label = f"{manager} ({entry.get('operation', '?')}{', ' + entry['subresource'] if entry.get('subresource') else ''})"
                owners.setdefault(path, []).append(label)
    return owners
