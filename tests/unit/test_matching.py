import pytest

from reliability_center.engine.matching import match_runbook
from tests.unit.factories import incident, runbook


def test_a_runbook_ref_chooses_among_the_runbooks_that_match():
    result = match_runbook(incident(runbook_ref="perf-b"), [runbook("perf-a"), runbook("perf-b")])
    assert result.runbook is not None and result.runbook.metadata.name == "perf-b"
    assert result.reason == "Matched"


@pytest.mark.parametrize("named, wants", [
    (runbook("revoke", category="cross-tenant"), "category 'cross-tenant' (the incident's is 'perf')"),
    (runbook("crit", severities=["critical"]), "severity in ['critical'] (the incident's is"),
    (runbook("eu", labels={"region": "eu"}), "label region=eu"),
])
def test_a_runbook_ref_to_a_runbook_whose_match_the_incident_does_not_meet_is_refused(named, wants):
    result = match_runbook(incident(runbook_ref=named.metadata.name, severity="low"), [runbook("perf"), named])
    assert result.runbook is None and result.reason == "RunbookDoesNotMatch"
    assert f"runbookRef {named.metadata.name!r} names a Runbook that does not answer this incident" in result.message
    assert wants in result.message


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
