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


def test_the_intake_policy_guards_every_label_and_annotation_the_intake_records_its_group_in():
    from reliability_center.intake.mapping import (GROUP_KEY_ANNOTATION, GROUP_LABEL, GROUP_SHA_ANNOTATION,
                                                   SOURCE_LABEL)

    spec = policy("reliability-center-intake-incidents")["spec"]
    match = spec["matchConditions"][0]["expression"]
    kept = {v["name"]: v["expression"] for v in spec["variables"]}["recordKept"]
    for key in (SOURCE_LABEL, GROUP_LABEL, GROUP_KEY_ANNOTATION, GROUP_SHA_ANNOTATION):
        assert f"'{key}'" in match and f"'{key}'" in kept, key
