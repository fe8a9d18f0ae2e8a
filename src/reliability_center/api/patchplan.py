"""PatchPlan: a Level 3 change proposed as a pull request on the GitOps repository."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from reliability_center.api.common import Condition, Model, ObjectMeta, cel, free_form

Provider = Literal["git", "gitea", "github", "gitlab"]
Operation = Literal["mergePatch", "setValue", "jsonPatch", "createFile", "alertThreshold"]
Phase = Literal["Pending", "Proposed", "Merged", "Synced", "Verified", "Rejected",
                "RollingBack", "RolledBack", "Failed"]

#: The PatchPlan annotation admission writes with the user who turned ``spec.rollback`` true
#: (``manifests/admission``): the actor of the durable audit record of the request.
ROLLBACK_REQUESTED_BY = "reliability.center/rollback-requested-by"

#: On every PatchPlan the operator proposes (gateway.propose): the admission policy
#: reliability-center-patchplans (manifests/admission/policies.yaml) then lets no one but the operator
#: create, relabel or change its spec, apart from asking for its rollback.
MADE_BY_LABEL = "reliability.center/made-by"
MADE_BY_OPERATOR = "reliability-center"

#: Relative, no leading slash or backslash (hidden and ``..`` segments get CEL rules with their own
#: messages): checked again, with every rule in words, by gitops/paths.py before any write.
REPO_PATH = r"^[A-Za-z0-9_.][A-Za-z0-9_.\-/]{0,511}$"


class Repository(Model):
    url: str = Field(min_length=1, max_length=2048)
    base_branch: str = Field(default="main", pattern=r"^[A-Za-z0-9._/-]{1,255}$")
    provider: Provider = "git"
    credentials_secret: str | None = Field(default=None, max_length=253,
                                           description="Secret with username/password or token keys.")


class Change(Model):
    path: str = Field(pattern=REPO_PATH, max_length=512, description="File path relative to the repository root.")
    operation: Operation
    yaml_path: str | None = Field(default=None, max_length=1024,
                                  description="setValue: dotted path inside the YAML document (a.b[0].c).")
    value: Any = Field(default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
                       description="setValue: the value; alertThreshold: {alert, factor} (the alerting rule whose "
                                   "threshold is multiplied, for >, or divided, for <, by factor).")
    patch: Any = Field(default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
                       description="mergePatch: an object; jsonPatch: a list of RFC 6902 operations.")
    content: str | None = Field(default=None, max_length=262144, description="createFile: the file's content.")

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("!self.path.matches('(^|/)[.][.](/|$)')", "path must not contain a '..' segment",
                    ".path"),
                cel("!self.path.matches('(^|/)[.]')",
                    "path must not name a hidden file or directory (a segment starting with a dot): tools keep "
                    "their settings there, such as Argo CD's .argocd-source-<app>.yaml overrides and CI definitions",
                    ".path"),
                cel("self.operation != 'setValue' || has(self.yamlPath)", "setValue needs yamlPath"),
                cel("self.operation != 'createFile' || has(self.content)", "createFile needs content"),
            ]
        }
    }


class PatchPlanSpec(Model):
    incident_ref: str | None = Field(default=None, max_length=253)
    repository: Repository
    title: str = Field(min_length=1, max_length=256)
    description: str = Field(default="", max_length=65536)
    changes: list[Change] = Field(min_length=1, max_length=100)
    rollback: bool = Field(default=False, description="Request the revert of the merged change.")
    argo_application: str | None = Field(default=None, max_length=253,
                                         description="namespace/name of the Argo CD Application that syncs the repo.")


class PullRequestRef(Model):
    url: str | None = None
    number: int | None = None
    head: str | None = None
    branch: str | None = None
    base: str | None = Field(default=None, description="The base-branch commit the head was built on.")
    merge_commit: str | None = None
    merged_at: str | None = None
    merged_by: str | None = None


class ObservedSync(Model):
    application: str | None = None
    revision: str | None = None
    sync_status: str | None = None
    health: str | None = None
    reconciled_at: str | None = None


class PatchPlanStatus(Model):
    observed_generation: int | None = None
    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    pull_request: PullRequestRef | None = None
    revert: PullRequestRef | None = None
    sync: ObservedSync | None = None
    files: list[str] = Field(default_factory=list)
    diff_digest: str | None = None
    evidence: dict[str, Any] | None = free_form("Details of the last transition.")


class PatchPlan(Model):
    api_version: str = "reliability.center/v1alpha1"
    kind: str = "PatchPlan"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PatchPlanSpec
    status: PatchPlanStatus | None = None
