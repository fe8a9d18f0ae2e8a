"""What a Prometheus answer says (engine/measure.py): the vector, who breaches, whether a check improved."""

from reliability_center.engine.measure import Sample, breaches, judge, parse_vector, worst

T0 = "2026-12-06T10:00:00Z"


def at(seconds: int) -> str:
    return f"2026-12-06T10:{seconds // 60:02d}:{seconds % 60:02d}Z"


def test_an_instant_vector_is_read_with_its_labels_and_nan_dropped():
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"tenant": "acme", "module": "search"}, "value": [1, "1.5"]},
        {"metric": {"tenant": "globex"}, "value": [1, "NaN"]}]}}
    assert parse_vector(body).samples == (Sample({"tenant": "acme", "module": "search"}, 1.5),)


def test_a_refused_query_says_why():
    answer = parse_vector({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})
    assert answer.samples is None and "bad_data: parse error at char 3" in answer.error


def test_breaches_name_each_tenant_and_module_past_the_threshold_with_its_worst_value_and_excess():
    samples = (Sample({"tenant": "acme", "module": "search"}, 1.9), Sample({"tenant": "acme", "module": "ocr"}, 1.2),
               Sample({"tenant": "globex", "module": "search"}, 0.3), Sample({"module": "billing"}, 0.9))
    found = breaches(samples, 0.8, "above")
    assert found["tenant"] == {"acme": {"value": 1.9, "excess": 1.1}, "-": {"value": 0.9, "excess": 0.1}}
    assert set(found["module"]) == {"search", "ocr", "billing"} and found["module"]["search"]["value"] == 1.9
    assert breaches(samples, 0.5, "below")["tenant"] == {"globex": {"value": 0.3, "excess": 0.2}}


def test_a_check_judges_the_worst_series():
    samples = (Sample({}, 0.2), Sample({}, 0.7))
    assert worst(samples, "decrease") == 0.7 and worst(samples, "increase") == 0.2 and worst((), "decrease") is None


def test_a_check_improves_once_the_value_moved_in_its_direction():
    assert judge("decrease", 0.9, 0.4, T0, 60, 10, at(5)).outcome == "improved"
    assert judge("increase", 0.9, 1.4, T0, 60, 10, at(5)).outcome == "improved"
    assert judge("decrease", 0.9, 0.9, T0, 60, 10, at(5)).outcome == "watching"


def test_a_check_watches_until_its_window_ends_then_does_not_improve_with_the_values():
    waiting = judge("decrease", 0.9, 0.95, T0, 60, 10, at(55))
    assert waiting.outcome == "watching" and waiting.wake_in == 5
    late = judge("decrease", 0.9, 0.95, T0, 60, 10, at(60))
    assert late.outcome == "not-improved" and "baseline 0.9, last 0.95" in late.message


def test_no_data_until_the_end_does_not_count_as_improved():
    assert judge("decrease", None, None, T0, 30, 10, at(10)).outcome == "watching"
    assert judge("decrease", 0.9, None, T0, 30, 10, at(31)).outcome == "not-improved"
