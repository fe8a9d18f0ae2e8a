"""The seed runbooks are valid, and bad runbooks get a specific reason."""

import pathlib

import pytest
import yaml

from reliability_center.actions.validate import check_runbook
from reliability_center.api.runbook import RunbookSpec
from reliability_center.operator.runbook import runbook_status

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "runbooks").glob("*.yaml"))


def test_the_four_seed_playbooks_ship():
    assert {p.stem for p in SEEDS} == {"perf", "cross-tenant", "ocr", "billing"}


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_seed_runbook_is_valid_and_covers_levels_1_to_3(path):
    doc = yaml.safe_load(path.read_text())
    spec = RunbookSpec.model_validate(doc["spec"])
    assert check_runbook(spec) == []
    assert {s.level for s in spec.steps} == {1, 2, 3}
    assert spec.postmortem, "each playbook carries its postmortem checklist"


def spec_with(step):
    return {"match": {"category": "perf"}, "steps": [step]}


@pytest.mark.parametrize("step, reason, words", [
    ({"name": "a", "level": 1, "action": "reboot-the-world"}, "UnknownAction", "unknown action 'reboot-the-world'"),
    ({"name": "a", "level": 1, "action": "circuit-breaker"}, "InvalidParams", "integration"),
    ({"name": "a", "level": 1, "action": "circuit-breaker", "params": {"integration": "x", "extra": 1}},
     "InvalidParams", "extra"),
    ({"name": "a", "level": 1, "action": "run-job", "params": {"cronJob": "x"}}, "LevelNotAllowed", "level 2"),
])
def test_a_bad_runbook_is_not_ready_with_the_reason(step, reason, words):
    status = runbook_status(spec_with(step), {}, 1)
    ready = status["conditions"][0]
    assert ready["type"] == "Ready" and ready["status"] == "False"
    assert ready["reason"] == reason and words in ready["message"]


def test_a_good_runbook_is_ready_and_counts_its_steps():
    status = runbook_status(spec_with({"name": "a", "level": 1, "action": "blast-radius"}), {}, 3)
    assert status["conditions"][0]["status"] == "True"
    assert status["steps"] == 1 and status["maxLevel"] == 1 and status["observedGeneration"] == 3
