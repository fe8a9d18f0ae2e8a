"""Step parameters templated from the alert's labels (engine/templates.py, actions/base.resolve_params)."""

import pytest
from pydantic import ValidationError

from reliability_center.actions.base import resolve_params
from reliability_center.actions.blast_radius import BlastParams
from reliability_center.actions.circuit_breaker import BreakerParams
from reliability_center.actions.validate import check_runbook
from reliability_center.api.runbook import Step
from reliability_center.engine import templates
from tests.unit.factories import incident, runbook

SIGNALS = [{"source": "alertmanager", "name": "integration_errors", "labels": {"integration": "ocr-provider"}},
           {"source": "alertmanager", "name": "latency", "labels": {"integration": "payments-gateway",
                                                                   "route": "/pay"}}]


def step(params, **extra):
    return Step.model_validate({"name": "s", "level": 1, "action": "circuit-breaker", "params": params, **extra})


def test_a_label_of_the_signal_the_step_waits_for_is_put_in_its_params():
    found = resolve_params(BreakerParams, step({"integration": "{{ labels.integration }}"},
                                               when={"signals": ["integration_errors"]}), incident(signals=SIGNALS))
    assert found.integration == "ocr-provider"


def test_a_label_two_signals_give_different_values_fails_naming_both():
    with pytest.raises(templates.TemplateError) as raised:
        resolve_params(BreakerParams, step({"integration": "{{labels.integration}}"}), incident(signals=SIGNALS))
    assert raised.value.reason == "AmbiguousLabel"
    assert "ocr-provider" in str(raised.value) and "payments-gateway" in str(raised.value)


def test_a_label_no_signal_carries_fails_with_the_label_named():
    with pytest.raises(templates.TemplateError) as raised:
        resolve_params(BreakerParams, step({"integration": "{{ labels.gateway }}"}), incident(signals=SIGNALS))
    assert raised.value.reason == "UnknownLabel" and "'gateway'" in str(raised.value)


def test_the_rendered_value_is_still_validated_by_the_action_s_model():
    bad = [{"source": "am", "name": "x", "labels": {"integration": "Not A DNS Label"}}]
    with pytest.raises(ValidationError):
        resolve_params(BreakerParams, step({"integration": "{{ labels.integration }}"}), incident(signals=bad))


def test_incident_fields_render_and_a_missing_one_is_a_clear_error():
    ctx = templates.context(incident(signals=SIGNALS))
    assert templates.render({"a": ["{{ incident.tenant }}/{{incident.namespace}}"]}, ctx) == {"a": ["acme/ns"]}
    with pytest.raises(templates.TemplateError) as raised:
        templates.render("{{ incident.module }}", templates.context(incident(module=None)))
    assert raised.value.reason == "UnknownField"


def test_nothing_but_the_two_forms_is_accepted_and_nothing_is_evaluated():
    assert templates.problems({"a": "{{ labels.x }}", "b": ["{{ incident.tenant }}"]}) == []
    bad = templates.problems({"a": "{{ labels.x | upper }}", "b": ["{{ __import__('os') }}"]})
    assert len(bad) == 2 and bad[0].startswith("a: unsupported template") and bad[1].startswith("b.0:")
    with pytest.raises(templates.TemplateError) as raised:
        templates.render("{{ 7*7 }}", templates.context(incident()))
    assert raised.value.reason == "UnsupportedTemplate"


def test_a_label_value_put_in_promql_cannot_end_its_string():
    hostile = [{"source": "am", "name": "x", "labels": {"route": 'a"} or vector(1) #'}}]
    params = resolve_params(BlastParams, Step.model_validate(
        {"name": "s", "level": 1, "action": "blast-radius",
         "params": {"query": 'lat{route="{{ labels.route }}"}', "threshold": 1}}), incident(signals=hostile))
    assert params.query == 'lat{route="a\\"} or vector(1) #"}'


def test_a_runbook_with_a_templated_param_is_ready_and_one_with_a_bad_template_is_not():
    good = runbook(steps=[{"name": "cb", "level": 1, "action": "circuit-breaker",
                           "params": {"integration": "{{ labels.integration }}"}}])
    assert check_runbook(good.spec) == []
    bad = runbook(steps=[{"name": "cb", "level": 1, "action": "circuit-breaker",
                          "params": {"integration": "{{ labels['integration'] }}"}}])
    assert [p.reason for p in check_runbook(bad.spec)] == ["InvalidTemplate"]
    untemplated = runbook(steps=[{"name": "cb", "level": 1, "action": "circuit-breaker",
                                  "params": {"integration": "Bad Name"}}])
    assert [p.reason for p in check_runbook(untemplated.spec)] == ["InvalidParams"]
