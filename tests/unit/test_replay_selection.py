"""replay-jobs, the pure parts: which failed Jobs a step replays, and the copy it makes of one."""

from reliability_center.actions.replay_jobs import replica, select

NOW = "2026-12-06T12:00:00Z"


def job(name: str, failed_at: str | None = None, complete: bool = False) -> dict:
    conditions = []
    if failed_at is not None:
        conditions.append({"type": "Failed", "status": "True", "lastTransitionTime": failed_at})
    if complete:
        conditions.append({"type": "Complete", "status": "True", "lastTransitionTime": NOW})
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


def names(jobs: list[dict]) -> list[str]:
    return [j["metadata"]["name"] for j in jobs]


def test_only_jobs_that_failed_within_the_window_are_chosen_oldest_first_up_to_the_bound():
    jobs = [job("c", "2026-12-06T11:50:00Z"), job("a", "2026-12-06T11:30:00Z"), job("b", "2026-12-06T11:40:00Z"),
            job("old", "2026-12-06T10:59:00Z"), job("ok", complete=True), job("running")]
    chosen = select(jobs, set(), NOW, 3600, 2)
    assert names(chosen.replay) == ["a", "b"] and chosen.over_limit == ["c"] and chosen.already == []


def test_jobs_this_incident_replayed_already_count_towards_its_bound_and_are_not_chosen_again():
    jobs = [job(n, f"2026-12-06T11:0{i}:00Z") for i, n in enumerate("abcd")]
    chosen = select(jobs, {"a", "gone"}, NOW, 3600, 3)  # "gone": replayed, its original since deleted
    assert names(chosen.already) == ["a"] and names(chosen.replay) == ["b"] and chosen.over_limit == ["c", "d"]


def test_a_replay_is_the_failed_job_s_spec_without_what_its_controller_set():
    failed = {"metadata": {"name": "ocr-1", "labels": {"app": "ocr", "batch.kubernetes.io/job-name": "ocr-1",
                                                       "controller-uid": "u"}},
              "spec": {"suspend": True, "backoffLimit": 0, "manualSelector": False,
                       "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                       "template": {"metadata": {"labels": {"app": "ocr", "batch.kubernetes.io/controller-uid": "u",
                                                            "job-name": "ocr-1"}},
                                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    copy = replica(failed, "ocr-1-replay-x", 2, {"reliability.center/replay-of": "ocr-1"}, {"a": "b"})
    assert copy["metadata"] == {"name": "ocr-1-replay-x", "labels": {"app": "ocr", "reliability.center/replay-of": "ocr-1"},
                                "annotations": {"a": "b"}}
    assert copy["spec"] == {"backoffLimit": 2, "template": {"metadata": {"labels": {"app": "ocr"}},
                                                            "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    assert failed["spec"]["suspend"] is True  # the original is left as it was
