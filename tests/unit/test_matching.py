from reliability_center.engine.matching import match_runbook
from tests.unit.factories import incident, runbook


def test_explicit_runbook_ref_wins_over_category():
    result = match_runbook(incident(runbook_ref="other"), [runbook("perf"), runbook("other", category="billing")])
    assert result.runbook is not None and result.runbook.metadata.name == "other"
    assert result.reason == "Matched"


def test_runbook_ref_to_a_missing_runbook_says_so():
    result = match_runbook(incident(runbook_ref="nope"), [runbook("perf")])
    assert result.runbook is None and result.reason == "RunbookNotFound" and "'nope'" in result.message


def test_runbook_ref_to_a_runbook_not_ready_is_refused():
    result = match_runbook(incident(runbook_ref="perf"), [runbook("perf", ready=False)])
    assert result.reason == "RunbookNotReady"


def test_no_runbook_for_the_category_is_reported():
    result = match_runbook(incident(category="ocr"), [runbook("perf")])
    assert result.runbook is None and result.reason == "NoRunbookMatched" and "ocr" in result.message


def test_severity_filter_excludes_a_runbook():
    result = match_runbook(incident(severity="low"), [runbook("perf", severities=["critical"])])
    assert result.reason == "NoRunbookMatched"


def test_more_specific_labels_win():
    specific = runbook("perf-eu", labels={"region": "eu"})
    result = match_runbook(incident(labels={"region": "eu"}), [runbook("perf"), specific])
    assert result.runbook is not None and result.runbook.metadata.name == "perf-eu"


def test_equally_specific_runbooks_are_ambiguous():
    result = match_runbook(incident(), [runbook("perf-a"), runbook("perf-b")])
    assert result.runbook is None and result.reason == "AmbiguousRunbook"
    assert "perf-a" in result.message and "perf-b" in result.message


def test_a_runbook_not_ready_is_never_matched():
    result = match_runbook(incident(), [runbook("perf", ready=False)])
    assert result.reason == "NoRunbookMatched"
