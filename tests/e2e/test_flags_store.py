"""A flags store with 1,000 tenant overrides: degrading one tenant changes only that tenant.

The sample app's ``flags-search`` ConfigMap is filled with the overrides of
1,000 other tenants (2,000 keys, about 80 KiB), the size at which a whole-object
write or snapshot would show. The oracle is the ConfigMap itself, every version
of it in etcd revision order (a watch): each write of the incident changes only
acme's keys, the other 2,000 stay as they were, the snapshot holds only the keys
the step changed, and the resolve gives the store back exactly as it was.
"""

from __future__ import annotations

import json
import threading

import pytest

from tests.e2e.test_collisions import one_step_runbook, resolve
from tests.support.cluster import get_json, kubectl, wait_for
from tests.support.incidents import create, incident, wait_phase
from tests.support.watches import Follow

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.app_at_rest]

OTHER_TENANTS = 1000


class Versions:
    """Every version of one ConfigMap's data after ``rv``, in etcd revision order."""

    def __init__(self, namespace: str, name: str, rv: str):
        self.seen: list[tuple[int, dict[str, str]]] = []
        self.cond = threading.Condition()
        self.watch = Follow("CoreV1Api", "list_namespaced_config_map", namespace, on_event=self.add,
                            on_error=self.add, resource_version=rv, field_selector=f"metadata.name={name}")

    def add(self, event: dict | BaseException) -> None:
        with self.cond:  # a broken watch wakes the test too: it reports the error instead of timing out
            if isinstance(event, dict):
                obj = event["object"]
                self.seen.append((int(obj.metadata.resource_version), dict(obj.data or {})))
            self.cond.notify_all()

    def until(self, probe) -> dict[str, str]:
        with self.cond:
            self.cond.wait_for(lambda: self.watch.error or (self.seen and probe(self.seen[-1][1])), timeout=60)
            assert self.watch.error is None, self.watch.error
            assert self.seen and probe(self.seen[-1][1]), self.seen[-1:]
            return self.seen[-1][1]


def test_degrading_one_tenant_of_a_thousand_overrides_changes_only_its_keys(app):
    overrides = {f"{flag}.tenant.t{i:04d}": "true"
                 for i in range(OTHER_TENANTS) for flag in ("search-suggestions", "search-recommendations")}
    kubectl("patch", "configmap", "flags-search", "-n", app, "--type=merge", "--patch-file=/dev/stdin",
            input=json.dumps({"data": overrides}))
    store = get_json("configmap", "flags-search", "-n", app)
    original = store["data"]
    assert len(original) == 3 + 2 * OTHER_TENANTS and len(json.dumps(original)) > 70_000
    versions = Versions(app, "flags-search", store["metadata"]["resourceVersion"])
    acme = {"search-suggestions.tenant.acme": "false", "search-recommendations.tenant.acme": "false"}

    category = one_step_runbook("feature-flags-off", {"modules": ["search"]})
    create(app, incident("flags-acme", category=category, tenant="acme"))
    wait_phase(app, "flags-acme", "Mitigated")
    versions.until(lambda data: data == {**original, **acme})

    # The snapshot holds what the step changed (acme's two keys were absent), not the 80 KiB store.
    snapshots = get_json("configmaps", "-n", app, "-l", "reliability.center/snapshot=true")["items"]
    assert len(snapshots) == 1
    held = json.dumps(snapshots[0]["data"])
    assert len(held) < 4096 and "t0000" not in held and "acme" in held, held[:500]

    resolve(app, "flags-acme")
    versions.until(lambda data: data == original)
    # Every version in between, in revision order: only acme's keys ever moved.
    revisions = [rv for rv, _ in versions.seen]
    assert revisions == sorted(revisions)
    for _, data in versions.seen:
        assert {k: v for k, v in data.items() if ".tenant.acme" not in k} == original
    assert wait_for(lambda: get_json("configmap", "flags-search", "-n", app)["data"] == original, what="store restored")
