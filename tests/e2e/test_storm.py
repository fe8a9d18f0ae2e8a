"""A storm: 30 cross-tenant incidents for 30 tenants created at once, with the storm guard at 3.

The seed's cross-tenant runbook turns the offending feature off per tenant on one
shared flags store, then isolates the tenant (its flag, the shared allow policy
narrowed, a policy of ours). Exactly 3 tenants may be isolated: the 27 others
escalate, every incident ends with a phase and a reason, nothing is written
without a snapshot, and no conflict leaves an incident without a status.
"""

from __future__ import annotations

import json
import time

import pytest

from reliability_center.gateway.holds import holder_id, holds
from tests.support.cluster import apply_docs, get_json, kubectl, wait_for
from tests.support.incidents import create, incident, status

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

TENANTS = [f"t{i:02d}" for i in range(30)]
BOUND = 90  # seconds for all 30 to settle, on a 2-core machine running the whole suite


def test_thirty_tenants_at_once_isolate_exactly_the_storm_limit_and_escalate_the_rest(app):
    apply_docs(app, [{"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": f"tenant-{t}", "labels": {"reliability.center/role": "tenant",
                                                                     "reliability.center/tenant": t}},
                      "data": {"isolated": "false"}} for t in TENANTS])
    limit = get_json("runbook", "cross-tenant")["spec"]["limits"]["maxIsolatedTenants"]
    assert limit == 3
    docs = [incident(f"xt-{t}", category="cross-tenant", tenant=t, module="exports", severity="critical")
            for t in TENANTS]
    started = time.monotonic()
    kubectl("apply", "-n", app, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))

    def settled():
        found = {i["metadata"]["name"]: i.get("status") or {} for i in get_json("incidents", "-n", app)["items"]}
        return len(found) == 30 and all(s.get("phase") in ("Mitigated", "Escalated") for s in found.values()) and found

    final = wait_for(settled, timeout=BOUND, interval=0.5, what="every incident to reach a phase")
    elapsed = time.monotonic() - started

    isolate = {name: next(s for s in st["steps"] if s["name"] == "isolate-tenant") for name, st in final.items()}
    isolated = sorted(n for n, s in isolate.items() if s["state"] == "Succeeded")
    guarded = sorted(n for n, s in isolate.items() if s["state"] == "Escalated" and s["reason"] == "StormGuard")
    assert len(isolated) == limit and len(guarded) == 30 - limit, {n: (s["state"], s["reason"]) for n, s in isolate.items()}
    for name in isolated:  # escalated only by the mandatory PatchPlan (no GitOps repository here)
        escalated = {c["type"]: c for c in final[name]["conditions"]}["Escalated"]
        assert final[name]["phase"] == "Escalated" and escalated["reason"] == "NoGitOpsRepository"
    for name in guarded:
        escalated = {c["type"]: c for c in final[name]["conditions"]}["Escalated"]
        assert final[name]["phase"] == "Escalated" and escalated["reason"] == "StormGuard", final[name]["conditions"]
    # Every incident has its phase and a reason, and no error was left in its status.
    for name, st in final.items():
        conditions = {c["type"]: c for c in st["conditions"]}
        assert conditions["Ready"]["reason"] or conditions.get("Escalated", {}).get("reason"), name
        assert conditions.get("Reconciling", {}).get("status") != "True", (name, conditions.get("Reconciling"))

    # The cluster agrees: exactly 3 tenants isolated, by flag, by our policy, and in the shared policy.
    tenants = [n.removeprefix("xt-") for n in isolated]
    flagged = sorted(t for t in TENANTS if get_json("configmap", f"tenant-{t}", "-n", app)["data"]["isolated"] == "true")
    assert flagged == tenants
    ours = sorted(p["metadata"]["name"] for p in get_json("networkpolicies", "-n", app)["items"]
                  if p["metadata"]["name"].startswith("rc-isolate-"))
    assert ours == [f"rc-isolate-{t}" for t in tenants]
    shared = get_json("networkpolicy", "allow-api-from-frontend", "-n", app)["spec"]["podSelector"]
    assert sorted(e["values"][0] for e in shared["matchExpressions"]) == tenants
    ledger = json.loads(get_json("configmap", "rc-isolations", "-n", app)["data"]["tenants"])
    assert sorted(ledger) == tenants
    # Every tenant's feature is off on the one shared store, none lost to another's write.
    flags = get_json("configmap", "flags-exports", "-n", app)["data"]
    assert all(flags[f"cross-tenant-export.tenant.{t}"] == "false" for t in TENANTS)

    # Nothing written without a snapshot: every hold names snapshots that exist, one per incident write.
    snapshots = {c["metadata"]["name"] for c in get_json("configmaps", "-n", app, "-l", "reliability.center/snapshot")["items"]}
    holders = [h for o in get_json("configmaps,networkpolicies", "-n", app)["items"] for hs in holds(o) for h in hs]
    assert holders and set(holders) <= {holder_id(s) for s in snapshots}
    writes = sum(1 for st in final.values() for e in st["timeline"]
                 if e.get("target") and e["event"].split(":")[-1] in ("applied", "created"))
    assert len(set(holders)) == writes == len(snapshots)
    print(f"storm: 30 incidents settled in {elapsed:.1f}s (bound {BOUND}s)")
