"""Level 3: PatchPlans become pull requests on the GitOps repository.

Merging the pull request is the human validation, Argo CD's sync is the
apply, and a revert pull request of the merge commit is the rollback.

- ``edits``: comment-preserving YAML/JSON edits (setValue, mergePatch, jsonPatch, createFile, alertThreshold)
- ``paths``: guardrails on what a plan may touch, checked before any push
- ``workspace``: a cached bare clone driven by the ``git`` binary
- ``forges``: the ``Forge`` protocol, a registry, and git/gitea/github/gitlab (+ a fake)
- ``lifecycle``: the pure state machine (and the Argo CD trust rule)
- ``prbody``, ``revert``: the pull request body, the revert of a merge commit
- ``reconcile``: one step of a plan: decide with ``lifecycle``, then do the I/O
"""
