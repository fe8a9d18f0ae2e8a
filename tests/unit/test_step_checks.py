"""A level 1 step's check, as operator/checks.py walks it turn by turn (Prometheus stood in for by a list of
answers): the baseline before the action, the action run once, the verdict at each look."""

from types import SimpleNamespace

from reliability_center.actions.base import Escalate, Running, Succeeded
from reliability_center.api.runbook import Step
from reliability_center.engine.measure import Answer, Sample
from reliability_center.operator import checks
from tests.unit.factories import incident

STEP = Step.model_validate({"name": "flags", "level": 1, "action": "feature-flags-off", "check": {
    "query": 'max(err{namespace="{{ incident.namespace }}"})', "direction": "decrease", "within": "30s",
    "interval": "5s"}})


class Answers:
    def __init__(self, *values):
        self.values, self.asked = list(values), []

    def query(self, promql):
        self.asked.append(promql)
        value = self.values.pop(0)
        return Answer(None, "refused") if value is None else Answer((Sample({}, value),))


def turn(source, now, progress, step=STEP):
    return SimpleNamespace(step=step, write=SimpleNamespace(shadow=False), progress=progress, incident=incident(),
                           metrics=source, facts=SimpleNamespace(now=f"2026-12-06T10:00:{now:02d}Z"),
                           status=SimpleNamespace(evidence=None))


def test_the_action_runs_once_between_a_baseline_and_the_looks_that_judge_it():
    source, progress, runs = Answers(0.9, 0.9, 0.4), {}, []
    action = lambda: runs.append(1) or Succeeded("2 flags off", {"flags": ["a"]})  # noqa: E731
    first = checks.checked(turn(source, 0, progress), action)
    assert isinstance(first, Running) and first.retry_after == 5 and runs == [1]
    assert source.asked == ['max(err{namespace="ns"})'] * 2  # the baseline, then the first look
    last = checks.checked(turn(source, 10, progress), action)
    assert runs == [1]  # watched, not run again
    assert isinstance(last, Succeeded) and last.evidence["flags"] == ["a"]
    assert last.evidence["check"]["baseline"] == 0.9 and [v["value"] for v in last.evidence["check"]["values"]] == [0.9, 0.4]


def test_not_improving_within_the_window_escalates_with_every_value_in_the_evidence():
    source, progress = Answers(0.9, 0.9, 0.95, 0.9), {}
    action = lambda: Succeeded("done")  # noqa: E731
    checks.checked(turn(source, 0, progress), action)
    checks.checked(turn(source, 10, progress), action)
    ctx = turn(source, 31, progress)
    result = checks.checked(ctx, action)
    assert isinstance(result, Escalate) and result.reason == "CheckNotImproved"
    assert "baseline 0.9, last 0.9" in result.message
    assert [v["value"] for v in ctx.status.evidence["check"]["values"]] == [0.9, 0.95, 0.9]


def test_a_check_that_cannot_be_measured_escalates_saying_why():
    source, progress = Answers(None, None, None), {}
    action = lambda: Succeeded("done")  # noqa: E731
    checks.checked(turn(source, 0, progress), action)
    assert progress["check"]["baselineError"] == "refused"
    result = checks.checked(turn(source, 40, progress), action)
    assert isinstance(result, Escalate) and "no value to judge" in result.message


def test_an_action_still_running_is_called_again_and_not_judged_yet():
    source, progress, runs = Answers(0.9), {}, []
    result = checks.checked(turn(source, 0, progress), lambda: runs.append(1) or Running("wave 1", 2.0))
    assert isinstance(result, Running) and result.message == "wave 1" and "since" not in progress["check"]


def test_a_check_that_would_outlast_its_step_s_timeout_makes_the_runbook_not_ready():
    from reliability_center.actions.validate import check_runbook
    from tests.unit.factories import runbook

    check = {"query": "up", "direction": "decrease", "within": "10m"}
    long = runbook(steps=[{"name": "f", "level": 1, "action": "feature-flags-off", "check": check}])
    assert [p.reason for p in check_runbook(long.spec)] == ["CheckOutlastsTimeout"]
    fits = runbook(steps=[{"name": "f", "level": 1, "action": "feature-flags-off", "check": check, "timeout": "15m"}])
    assert check_runbook(fits.spec) == []
