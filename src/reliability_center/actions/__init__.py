"""One module per action type; importing this package registers them all in ``base.REGISTRY``."""

from reliability_center.actions import (  # noqa: F401  (imported to register)
    blast_radius,
    circuit_breaker,
    escalate,
    feature_flags,
    human_in_the_loop,
    isolate_tenant,
    patch_plan,
    pause_ingestion,
    purge_cache,
    replay_jobs,
    restart_one_by_one,
    revoke_access,
    run_job,
)
from reliability_center.actions.base import REGISTRY, ActionContext, ActionSpec

__all__ = ["REGISTRY", "ActionContext", "ActionSpec"]
