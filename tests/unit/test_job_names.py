"""Job names the actions make: deterministic, and short enough for the label the Job controller puts them in."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from reliability_center.actions.replay_jobs import replay_name
from reliability_center.actions.run_job import JobParams, _names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
UID = "8d3c7a52-5b1e-4a8e-9f0e-2d6c1b7e4f10"


def cronjob(name: str, image: str = "registry.invalid/ocr:1") -> dict:
    return {"metadata": {"name": name}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "job", "image": image}]}}}}}}


def run_job_names(cron: str, step: str = "reindex", image: str = "registry.invalid/ocr:1") -> tuple[str, str]:
    ctx = SimpleNamespace(write=SimpleNamespace(incident={"metadata": {"uid": UID}}), step=SimpleNamespace(name=step))
    return _names(ctx, JobParams(cron_job=cron), cronjob(cron, image))  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [1, 20, 47, 48, 49, 50])
def test_run_job_names_fit_a_label_whatever_the_cronjob_s_name(length):
    cron = ("a-" * 30)[:length - 1] + "z"
    dry, apply = run_job_names(cron)
    assert all(DNS_LABEL.match(n) for n in (dry, apply)), (dry, apply)  # at most 63 characters
    assert dry != apply and (dry, apply) == run_job_names(cron)  # distinct, and the same on a retry
    assert run_job_names(cron, step="other") != (dry, apply)


@pytest.mark.parametrize("length", [1, 20, 47, 48, 62, 63])
def test_replay_job_names_fit_a_label_whatever_the_failed_job_s_name(length):
    failed = [(f"j{i}-" + "b" * 70)[:length - 1] + "z" for i in range(10)]
    names = [replay_name(job, UID) for job in failed]
    assert all(DNS_LABEL.match(n) for n in names), names
    assert len(set(names)) == len(set(failed)) and names == [replay_name(job, UID) for job in failed]
    assert replay_name(failed[0], UID) != replay_name(failed[0], UID.replace("8", "9"))  # one per incident


def test_names_that_fitted_are_unchanged_so_a_retry_adopts_the_job_an_older_version_made():
    dry, apply = run_job_names("ocr-reprocess")
    assert re.fullmatch(r"ocr-reprocess-dryrun-[0-9a-f]{8}", dry) and re.fullmatch(r"ocr-reprocess-apply-[0-9a-f]{8}",
                                                                                  apply)
    assert re.fullmatch(r"ocr-replay-replay-[0-9a-f]{8}", replay_name("ocr-replay", UID))


def test_a_cronjob_changed_since_its_dry_run_gets_a_new_dry_run_and_the_same_real_job():
    dry, apply = run_job_names("ocr-reprocess")
    changed_dry, changed_apply = run_job_names("ocr-reprocess", image="registry.invalid/ocr:2")
    assert changed_dry != dry  # the old dry-run's report is not the plan of the changed template
    assert changed_apply == apply  # a retry of the real Job still adopts it
