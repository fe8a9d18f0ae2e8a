"""``relctl rollback NAMESPACE/NAME``: ask the operator to revert a merged PatchPlan.

It only sets ``spec.rollback: true`` (through the gateway's records, with the
resourceVersion it read as a precondition); the operator opens the revert pull
request of the merge commit, and merging that pull request is the rollback.
The request itself is ``reliability_center.acts.rollback``, which the console sends too.
"""

from __future__ import annotations

from reliability_center.acts import RollbackError, rollback

__all__ = ["RollbackError", "rollback"]
