"""``relctl rollback NAMESPACE/NAME``: ask the operator to revert a merged PatchPlan.

It only sets ``spec.rollback: true``; the operator opens the revert pull
request of the merge commit, and merging that pull request is the rollback.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from reliability_center.api.common import GROUP, VERSION

class RollbackError(RuntimeError):
    pass


def _api(api_client: client.ApiClient | None) -> client.CustomObjectsApi:
    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    return client.CustomObjectsApi(api_client)


def rollback(namespace: str, name: str, api_client: client.ApiClient | None = None) -> dict[str, Any]:
    """Set spec.rollback=true on PatchPlan ``namespace/name``; returns the updated object.

    Before a merge the request cancels (Pending) or waits for the pull request
    to be merged or closed (Proposed). A plan that ended without a merge has
    nothing to revert: that is refused with the reason, not silently recorded.
    """
    api = _api(api_client)
    try:
        plan = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "patchplans", name)
    except ApiException as exc:
        if exc.status == 404:
            raise RollbackError(f"PatchPlan {namespace}/{name} not found") from None
        raise
    status = plan.get("status") or {}
    phase = status.get("phase") or "Pending"
    merged = bool((status.get("pullRequest") or {}).get("mergeCommit"))
    if phase in ("RollingBack", "RolledBack") or (plan.get("spec") or {}).get("rollback"):
        return plan  # already asked: idempotent
    if phase == "Rejected" or (phase == "Failed" and not merged):
        raise RollbackError(f"PatchPlan {namespace}/{name} is {phase} and nothing was merged: nothing to revert")
    return api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "patchplans", name,
                                              {"spec": {"rollback": True}})
