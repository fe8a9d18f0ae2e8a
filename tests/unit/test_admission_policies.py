"""The admission policies' hand-written field lists keep up with the models they guard."""

from __future__ import annotations

import pathlib
import re

import yaml

from reliability_center.api.patchplan import MADE_BY_LABEL, PatchPlanSpec

POLICIES = pathlib.Path(__file__).parents[2] / "manifests" / "admission" / "policies.yaml"


def policy(name: str) -> dict:
    return next(d for d in yaml.safe_load_all(POLICIES.read_text())
                if d and d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"] == name)


def test_every_patchplan_spec_field_but_rollback_is_kept_from_others():
    variables = {v["name"]: v["expression"] for v in policy("reliability-center-patchplans")["spec"]["variables"]}
    compared = set(re.findall(r"object\.spec\.\??(\w+) ==", variables["specKept"]))
    fields = {f.alias or name for name, f in PatchPlanSpec.model_fields.items()}
    assert compared == fields - {"rollback"}
    assert "spec.?rollback" in variables["rollbackKept"]


def test_the_policy_knows_the_label_the_gateway_puts_on_the_operators_plans():
    match = policy("reliability-center-patchplans")["spec"]["matchConditions"][0]["expression"]
    assert f"'{MADE_BY_LABEL}'" in match
