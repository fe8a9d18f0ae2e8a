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


def statefulset(generation=2, observed=2, replicas=3, ready=3, updated=3, current="r1", update="r1",
                strategy=None):
    return {"kind": "StatefulSet", "metadata": {"name": "s", "generation": generation},
            "spec": {"replicas": replicas,
                     "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
            "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": updated,
                       "currentRevision": current, "updateRevision": update}}


def test_a_statefulset_waits_until_every_pod_is_updated_and_ready_as_kubectl_does():
    # The old rule called this done: revisions differ while pods are still being replaced.
    assert not rollout_status(statefulset(updated=1, current="r1", update="r2")).done
    assert not rollout_status(statefulset(ready=2, updated=3, current="r1", update="r2")).done
    assert not rollout_status(statefulset(generation=3, observed=2)).done
    assert not rollout_status(statefulset(observed=0)).done
    # With rollingUpdate set (the apiserver defaults it), kubectl looks at updatedReplicas, not the revisions.
    assert rollout_status(statefulset(updated=3, current="r1", update="r2")).done


def test_a_partitioned_statefulset_is_done_when_the_pods_above_the_partition_are_updated():
    partitioned = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    assert not rollout_status(statefulset(updated=0, strategy=partitioned)).done
    assert rollout_status(statefulset(updated=1, strategy=partitioned)).done


def test_a_statefulset_without_rolling_update_details_waits_for_the_revisions_to_meet():
    plain = {"type": "RollingUpdate"}
    assert not rollout_status(statefulset(current="r1", update="r2", strategy=plain)).done
    assert rollout_status(statefulset(current="r2", update="r2", strategy=plain)).done


def test_an_on_delete_statefulset_cannot_be_restarted_by_a_rollout():
    status = rollout_status(statefulset(strategy={"type": "OnDelete"}))
    assert status.failed and "OnDelete" in status.message
