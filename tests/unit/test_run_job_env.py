"""run-job's env (actions/run_job.py): a step sets values of variables the CronJob declares, never new ones."""

from __future__ import annotations

from types import SimpleNamespace

from reliability_center.actions.run_job import JobParams, _job, env_refusal


def cron(*containers: dict) -> dict:
    return {"metadata": {"name": "reindex"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": list(containers)}}}}}}


SECRET = {"secretKeyRef": {"name": "s", "key": "t"}}
MAIN = {"name": "main", "image": "i", "env": [{"name": "BATCH_SIZE", "value": "100"},
                                              {"name": "TOKEN", "valueFrom": SECRET}]}
SIDE = {"name": "side", "image": "i", "env": [{"name": "LOG_LEVEL", "value": "info"}]}
CTX = SimpleNamespace(write=SimpleNamespace(trace_id="t1", incident={
    "apiVersion": "reliability.center/v1alpha1", "metadata": {"name": "inc", "uid": "u1"}}))


def env_of(job: dict) -> dict[str, dict[str, str]]:
    return {c["name"]: {e["name"]: e.get("value") for e in c["env"]}
            for c in job["spec"]["template"]["spec"]["containers"]}


def test_a_variable_no_container_declares_is_refused_by_name():
    params = JobParams(cron_job="reindex", env={"BASH_ENV": "/tmp/x", "BATCH_SIZE": "5"})
    refused = env_refusal(cron(MAIN, SIDE), params)
    assert refused is not None and refused.reason == "EnvNotDeclared"
    assert refused.message.startswith("env names BASH_ENV, which no container of CronJob reindex declares "
                                      "(it declares BATCH_SIZE, LOG_LEVEL, TOKEN)")


def test_the_operators_own_variables_are_refused():
    refused = env_refusal(cron(MAIN), JobParams(cron_job="reindex", env={"DRY_RUN": "false"}))
    assert refused is not None and refused.reason == "EnvNotAllowed" and "DRY_RUN" in refused.message


def test_declared_variables_are_accepted_and_set_only_where_declared():
    params = JobParams(cron_job="reindex", env={"BATCH_SIZE": "5", "LOG_LEVEL": "debug"})
    assert env_refusal(cron(MAIN, SIDE), params) is None
    env = env_of(_job(cron(MAIN, SIDE), "reindex-dryrun-1", params, True, CTX))
    assert env["main"]["BATCH_SIZE"] == "5" and "LOG_LEVEL" not in env["main"] and "TOKEN" in env["main"]
    assert env["side"]["LOG_LEVEL"] == "debug" and "BATCH_SIZE" not in env["side"]
    assert env["main"]["DRY_RUN"] == env["side"]["DRY_RUN"] == "true"


def test_a_cronjob_that_declares_nothing_takes_no_env():
    refused = env_refusal(cron({"name": "main", "image": "i"}), JobParams(cron_job="reindex", env={"X": "1"}))
    assert refused is not None and "(it declares none)" in refused.message
    assert env_refusal(cron({"name": "main", "image": "i"}), JobParams(cron_job="reindex")) is None
