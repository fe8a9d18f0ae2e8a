"""What holds cost against Kubernetes' 256 KiB annotation limit, in both layouts; and the first layout, still
read: objects that carry it (an operator upgraded with incidents open) are joined and released in it."""

from __future__ import annotations

import hashlib

import pytest

from reliability_center.gateway.holds import (BUCKET_PREFIX, HOLD_PREFIX, Edit, HeldElsewhere, Hold, Marker,
                                               UnreadableHolds, encode_bucket, hold_bytes, holder_id, holds, locate,
                                               plan_write)
from reliability_center.gateway.leaves import ABSENT
from tests.unit.test_holds import apply, flags, planned, records, release, released, write  # noqa: F401 (autouse)

LIMIT = 256 * 1024
"""The apiserver's limit on all annotations of one object, keys and values (TotalAnnotationSizeLimitB)."""


def snapshot(n: int) -> str:
    """A snapshot name as the gateway makes them (rc-snap- and 20 hex digits)."""
    return "rc-snap-" + hashlib.sha256(str(n).encode()).hexdigest()[:20]


def tenant_key(n: int) -> Edit:
    return Edit(f"/data/tenant-{n:04d}.search", "off")


def first_layout(doc: dict, edit: Edit, before, *holders: str) -> dict:
    """A field as the first layout held it: its own annotation, path, value, before and holders' names."""
    out = apply(doc, [{"op": "add", "path": edit.path, "value": edit.value}])
    out["metadata"]["annotations"][edit.key] = Hold(edit.path, edit.value, before, holders).wire()
    return out


def with_tenants(count: int, holders_each: int = 1) -> dict:
    """A flags store with ``count`` tenants each holding its own key, marked as ``plan_write`` marks them."""
    buckets: dict[str, dict[str, Marker]] = {}
    for n in range(count):
        bucket, fid = locate(tenant_key(n).key)
        buckets.setdefault(bucket, {})[fid] = Marker(tuple(holder_id(snapshot(n * 10 + h)) for h in range(holders_each)))
    doc = flags()
    doc["data"].update({tenant_key(n).path.removeprefix("/data/"): "off" for n in range(count)})
    doc["metadata"]["annotations"].update({b: encode_bucket(m) for b, m in buckets.items()})
    return doc


def test_the_first_layout_cost_134_bytes_and_the_path_a_field_and_31_an_extra_holder():
    one = first_layout(flags(), tenant_key(1), ABSENT, snapshot(1))
    two = first_layout(flags(), tenant_key(1), ABSENT, snapshot(1), snapshot(2))
    per_field, per_holder = hold_bytes(one), hold_bytes(two) - hold_bytes(one)
    print(f"first layout: {per_field} bytes a field ({tenant_key(1).path}), {per_holder} an extra holder")
    assert (per_field, per_holder) == (134 + len(tenant_key(1).path), 31)
    assert LIMIT // per_field < 1700  # about 1,600 such fields filled an object (1,500 of the longer flag keys)


def test_five_thousand_tenants_take_under_a_quarter_of_the_limit_and_an_extra_holder_12_bytes():
    store = with_tenants(5000)
    assert len(holds(store)) == 5000 and all(len(h) == 1 for h in holds(store))
    per_holder = hold_bytes(with_tenants(5000, 2)) - hold_bytes(store)
    print(f"this layout: 5,000 tenants {hold_bytes(store)} bytes ({hold_bytes(store) / LIMIT:.1%} of the limit), "
          f"{per_holder / 5000:.0f} an extra holder; 10,000 fields {hold_bytes(with_tenants(10000))} bytes")
    assert hold_bytes(store) <= LIMIT // 4 and per_holder == 5000 * 12
    assert hold_bytes(with_tenants(10000)) <= LIMIT // 2  # two flags a tenant
    # The 5,001st tenant's write and release touch its own bucket and key, and leave the 5,000 as they were.
    plan = planned(store, "new", tenant_key(5000))
    assert [op["path"] for op in plan.ops if op["op"] != "test"] == \
        ["/data/tenant-5000.search", "/metadata/annotations/" + locate(tenant_key(5000).key)[0].replace("/", "~1")]
    assert release(apply(store, plan.ops), "new") == store


def test_a_value_before_is_kept_on_the_object_only_when_there_was_one():
    doc = write(flags(breaker="closed"), "s", Edit("/data/breaker", "open"), Edit("/data/new", "x"))
    (bucket_a, _), (bucket_b, _) = locate(Edit("/data/breaker", "").key), locate(Edit("/data/new", "").key)
    values = {k: v for k, v in doc["metadata"]["annotations"].items() if k.startswith(BUCKET_PREFIX)}
    assert '"closed"' in values[bucket_a] and "\n" not in values[bucket_b]
    assert release(doc, "s") == flags(breaker="closed")


def test_an_object_in_the_first_layout_is_released_from_its_annotations_alone():
    doc = first_layout(flags(breaker="closed"), Edit("/data/breaker", "open"), "closed", snapshot(1), snapshot(2))
    doc = first_layout(doc, tenant_key(7), ABSENT, snapshot(1))
    # The snapshots of that time recorded nothing this layout needs: the annotations carry it all.
    kept = released(doc, snapshot(1))
    assert kept.kept == ["/data/breaker"] and kept.restored == ["/data/tenant-0007.search"]
    doc = apply(doc, kept.ops)
    assert holds(doc).legacy[Edit("/data/breaker", "open").key].holders == (snapshot(2),)
    doc = apply(doc, released(doc, snapshot(2)).ops)
    assert doc == flags(breaker="closed")


def test_a_hold_in_the_first_layout_is_joined_in_it_and_new_fields_take_this_one():
    doc = first_layout(flags(breaker="closed"), Edit("/data/breaker", "open"), "closed", snapshot(1))
    doc = write(doc, "new", Edit("/data/breaker", "open"), tenant_key(1))
    found = holds(doc)
    assert found.legacy[Edit("/data/breaker", "open").key].holders == (snapshot(1), "new")
    assert found.marker(tenant_key(1).key) == Marker((holder_id("new"),))
    doc = release(doc, "new")
    assert doc["data"] == {"breaker": "open"}  # still held by the first, in its annotation
    doc = apply(doc, released(doc, snapshot(1)).ops)
    assert doc == flags(breaker="closed") and not holds(doc)


def test_a_field_someone_changed_since_is_set_again_when_its_holder_recorded_the_same_value():
    doc = write(flags(breaker="closed"), "first", Edit("/data/breaker", "open"))
    doc["data"]["breaker"] = "half-open"  # a person, meanwhile
    again = planned(doc, "second", Edit("/data/breaker", "open"))  # the first's record says "open": joined
    assert again.joined == ["/data/breaker"] and again.before == {"/data/breaker": "closed"}
    doc = apply(doc, again.ops)
    assert doc["data"]["breaker"] == "open"
    with pytest.raises(HeldElsewhere) as clash:  # another value: a collision, named with the value held
        planned(doc, "third", Edit("/data/breaker", "shut"))
    assert clash.value.value == "open"
    # Without a record to tell, a field not at the value wanted is not overridden.
    doc["data"]["breaker"] = "half-open"
    with pytest.raises(HeldElsewhere):
        plan_write(doc, [Edit("/data/breaker", "open")], "fourth")


def test_a_bucket_someone_rewrote_is_refused_not_overwritten():
    doc = write(flags(), "s", tenant_key(1))
    bucket = locate(tenant_key(1).key)[0]
    doc["metadata"]["annotations"][bucket] = "not holds"
    with pytest.raises(UnreadableHolds, match=bucket):
        plan_write(doc, [tenant_key(1)], "t")
    assert holds(doc).has(tenant_key(1).key)  # not reported lost either: nobody can tell


def test_the_annotation_prefixes_do_not_overlap():
    assert not BUCKET_PREFIX.startswith(HOLD_PREFIX) and not HOLD_PREFIX.startswith(BUCKET_PREFIX)
