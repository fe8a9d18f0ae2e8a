"""5,000 tenants degraded on one flags store at once, then resolved: the store comes back exactly as it was.

On the real apiserver, which enforces its limits on every write (all annotations of an object ≤ 256 KiB,
the object ≤ 1.5 MiB in etcd). Through the operator, or one gateway write per tenant, 5,000 incidents take
minutes on this 2-CPU machine (bench/bench_holds.py measures that path); so here 4,984 tenants' holds are
planned by ``plan_write`` part after part on the store as the parts before leave it and sent 250 to a JSON
patch, the shape of a group commit (issue 23), each tenant's snapshot record kept in memory as its snapshot
would keep it; then 16 more tenants go through the real Write Gateway, 4 at a time (an Incident each, real
snapshots found by their holder label, audit Events), writing into the full store's buckets. They are
released the other way round. The oracle is the ConfigMap as the apiserver returns it.
"""

from __future__ import annotations

import json
import time

import pytest

from reliability_center.gateway import Ref
from reliability_center.gateway.holds import HOLD_PREFIX, Edit, Hold, hold_bytes, holder_id, holds
from reliability_center.gateway.kube import Invalid
from reliability_center.gateway.leaves import ABSENT
from tests.support.tenant_storm import STORE, Bulk, Storm, key

TENANTS = 5000
THROUGH_GATEWAY = 16
LIMIT = 256 * 1024


@pytest.fixture
def storm(kube, solo_namespace) -> Storm:
    return Storm(kube, solo_namespace, TENANTS)


def test_five_thousand_tenants_on_one_store_stay_within_the_limits_and_restore_it_exactly(storm):
    original = storm.make_store({"search-suggestions": "true", "search-recommendations": "true",
                                 key(0): "on"})["data"]  # one tenant had its own key already
    gateway_tenants = range(TENANTS - THROUGH_GATEWAY, TENANTS)
    storm.make_incidents_for(gateway_tenants)
    bulk = Bulk(storm, range(TENANTS - THROUGH_GATEWAY))

    started = time.monotonic()
    bulk.degrade()
    storm.degrade(gateway_tenants, workers=4)  # each write re-encodes the 330 KB store: 16 at once time out
    print(f"\nall {TENANTS} held in {time.monotonic() - started:.1f} s")
    peak = storm.store()
    assert all(peak["data"][key(n)] == "off" for n in range(TENANTS))
    held = holds(peak)
    assert len(held) == TENANTS and all(len(h) == 1 for h in held)
    # The gateway's tenants are held by their snapshots, found by holder id as another incident would.
    snapshots = storm.kube.list("ConfigMap", storm.namespace, "reliability.center/snapshot=true")
    assert {held.holders(Edit(f"/data/{key(n)}", None).key)[0] for n in gateway_tenants} == \
        {holder_id(s["metadata"]["name"]) for s in snapshots}
    # Within the limits with room to spare, where the first layout would not have been.
    peak_bytes, object_bytes = hold_bytes(peak), len(json.dumps(peak, separators=(",", ":")))
    # The first layout's annotation of each field, its holder named as the gateway names snapshots (28 chars).
    first_layout = sum(len(Edit(f"/data/{key(n)}", None).key) +
                       len(Hold(f"/data/{key(n)}", "off", ABSENT, (Bulk.holder(n) + "x" * 7,)).wire())
                       for n in range(TENANTS))
    print(f"\n{TENANTS} tenants: hold annotations {peak_bytes} bytes ({peak_bytes / LIMIT:.1%} of 256 KiB; the first "
          f"layout {first_layout} bytes), object {object_bytes} bytes")
    assert peak_bytes <= LIMIT // 4 and object_bytes < 1024 * 1024
    # The apiserver's own verdict on the first layout at this size: refused (a dry run of those annotations).
    old_layout = {**peak["metadata"]["annotations"],
                  **{Edit(f"/data/{key(n)}", None).key: Hold(f"/data/{key(n)}", "off", ABSENT,
                                                              (Bulk.holder(n) + "x" * 7,)).wire()
                     for n in range(TENANTS)}}
    with pytest.raises(Invalid, match="Too long"):
        storm.kube.json_patch(Ref("ConfigMap", storm.namespace, STORE),
                              [{"op": "add", "path": "/metadata/annotations", "value": old_layout}], dry_run=True)

    started = time.monotonic()
    storm.restore(gateway_tenants, workers=4)
    bulk.release()
    print(f"all released in {time.monotonic() - started:.1f} s")
    after = storm.store()
    assert after["data"] == original
    assert not [k for k in after["metadata"].get("annotations") or {} if k.startswith(HOLD_PREFIX[:-1])]
