from reliability_center.actions.rollout import rollout_status


def deployment(generation=2, observed=2, replicas=2, updated=2, total=2, available=2, conditions=()):
    return {"kind": "Deployment", "metadata": {"name": "d", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                       "availableReplicas": available, "conditions": list(conditions)}}


def test_complete_rollout_is_done():
    assert rollout_status(deployment()).done


def test_unobserved_generation_waits():
    status = rollout_status(deployment(generation=3, observed=2))
    assert not status.done and "observed" in status.message


def test_old_replicas_pending_termination_wait():
    status = rollout_status(deployment(total=3))
    assert not status.done and "old replicas" in status.message


def test_unavailable_updated_replicas_wait():
    assert not rollout_status(deployment(available=1)).done
    assert not rollout_status(deployment(updated=1)).done


def test_progress_deadline_exceeded_fails():
    status = rollout_status(deployment(updated=1, conditions=[{"type": "Progressing", "status": "False",
                                                               "reason": "ProgressDeadlineExceeded"}]))
    assert status.failed and not status.done
