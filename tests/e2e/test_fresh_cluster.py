"""A fresh cluster where the operator's namespaces do not exist yet (issue: first contact).

The operator is restricted to ``shop`` and ``billing`` and starts before either exists, on a brand-new
local cluster of its own (``cluster_of_its_own``: made and deleted by this test, or, in ``make test``, the
brand-new cluster of the session hack/test.sh runs for the ``exclusive`` tests, this one first), so no
other operator can report on the Runbook in its place and nothing an earlier run left can help it. Oracles:
the cluster's own objects (the Runbook's status, the Incidents' status written by this operator, the only
one on that cluster) and the operator's /healthz.
"""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config

from tests.conftest import CACHE, start_operator, stop_operator
from tests.support.cluster import ROOT, cluster_of_its_own, kubectl, wait_established, wait_for
from tests.support.processes import free_port, health

pytestmark = pytest.mark.exclusive  # a cluster of its own
WATCHED = ("shop", "billing")


class FreshCluster:
    def __init__(self, kubeconfig: str) -> None:
        from reliability_center.gateway import Kube

        self.name = pathlib.Path(kubeconfig).stem
        self.kubeconfig = kubeconfig
        self.kube = Kube(config.new_client_from_config(config_file=kubeconfig))

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return kubectl("--kubeconfig", self.kubeconfig, *args, input=input).stdout


@pytest.fixture
def fresh() -> Iterator[FreshCluster]:
    with cluster_of_its_own(f"fresh-{uuid.uuid4().hex[:8]}") as kubeconfig:
        cluster = FreshCluster(kubeconfig)
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        wait_established(ROOT / "crds", kubeconfig=cluster.kubeconfig)
        yield cluster


def runbook() -> dict[str, Any]:
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook", "metadata": {"name": "fresh"},
            "spec": {"match": {"category": "fresh"},
                     "steps": [{"name": "blast-radius", "level": 1, "action": "blast-radius"}]}}


def incident(name: str) -> dict[str, Any]:
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident", "metadata": {"name": name},
            "spec": {"category": "fresh", "severity": "high", "tenant": "acme"}}


def runbook_status(cluster: FreshCluster) -> dict[str, Any]:
    from reliability_center.gateway import Ref

    return (cluster.kube.get(Ref("Runbook", None, "fresh")) or {}).get("status") or {}


def handled(cluster: FreshCluster, namespace: str, name: str) -> dict[str, Any] | None:
    from reliability_center.gateway import Ref

    status = (cluster.kube.get(Ref("Incident", namespace, name)) or {}).get("status") or {}
    return status if status.get("phase") == "Mitigated" and status.get("runbook") == "fresh" else None


def test_an_operator_restricted_to_namespaces_that_do_not_exist_serves_runbooks_then_each_namespace_as_it_comes(
        fresh: FreshCluster) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    proc = start_operator(CACHE / f"operator-{fresh.name}.log",
                          {"KUBECONFIG": fresh.kubeconfig, "RC_NAMESPACES": ",".join(WATCHED), "RC_HEALTH_URL": url})
    try:
        # Neither namespace exists: the cluster-scoped Runbook is served all the same, within seconds.
        fresh.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(runbook()))
        applied = time.monotonic()
        wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True"
                             for c in runbook_status(fresh).get("conditions") or []),
                 timeout=20, what="the Runbook to be Ready")
        ready_after = time.monotonic() - applied
        assert ready_after < 10, f"Ready {ready_after:.1f}s after apply"
        said = wait_for(lambda: (h := health(url, timeout=2)) and h.get("namespaces"), timeout=30, what="/healthz")
        assert said == {"scope": "namespaces", "patterns": list(WATCHED), "serving": [],
                        "notYetExisting": list(WATCHED)}

        # The namespaces appear: an Incident in each is handled.
        for round_ in ("first", "again"):
            for ns in WATCHED:
                fresh.kubectl("create", "namespace", ns)
            for ns in WATCHED:
                fresh.kube.create({**incident(f"inc-{round_}"), "metadata": {"name": f"inc-{round_}", "namespace": ns}},
                                  manager="test-setup")
            for ns in WATCHED:
                wait_for(lambda ns=ns: handled(fresh, ns, f"inc-{round_}"), timeout=30,
                         what=f"incident inc-{round_} in {ns} to be handled ({round_})")
            said = wait_for(lambda: (h := health(url, timeout=2)) and h["namespaces"]["serving"] == sorted(WATCHED)
                            and h["namespaces"], timeout=30, what="/healthz to name both namespaces")
            assert said["notYetExisting"] == []
            if round_ == "first":
                # Every watched namespace goes (Incidents and all), then comes back, empty.
                for ns in WATCHED:
                    fresh.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s")
                wait_for(lambda: (h := health(url, timeout=2)) and h["namespaces"]["serving"] == [] and h, timeout=30,
                         what="/healthz to say both namespaces are gone")
        assert proc.poll() is None, "the operator exited"
    finally:
        stop_operator(proc)
