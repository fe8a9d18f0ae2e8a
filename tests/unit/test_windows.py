"""Level 2 windows: days of the week, an IANA time zone (DST included) and freezes.

Every expected ``wake_in`` is worked out by hand from the calendar (in the comments),
not by the code under test. 2026: DST in Paris begins Sunday 29 March (02:00 CET → 03:00
CEST) and ends Sunday 25 October (03:00 CEST → 02:00 CET); 27 November is a Friday.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import reliability_center
from reliability_center.api.incident import IncidentStatus
from reliability_center.api.runbook import Window
from reliability_center.engine.plan import Facts, plan
from reliability_center.engine.progress import AwaitStep, RunStep, next_decision, window_state
from reliability_center.operator.runbook import runbook_status
from tests.unit.factories import incident, runbook

HOUR = 3600
DAY = 24 * HOUR
PARIS = {"start": "01:00", "end": "05:00", "timezone": "Europe/Paris"}


def state(now: str, **window):
    return window_state(Window.model_validate(window), now)


def test_paris_window_across_spring_forward():
    # 28 Mar 12:00Z = 13:00 CET; the window opens 29 Mar 01:00 CET = 00:00Z → 12 h.
    assert state("2026-03-28T12:00:00Z", **PARIS)[:2] == (False, 12 * HOUR)
    assert state("2026-03-29T00:00:00Z", **PARIS)[:2] == (True, 0)
    # It closes at 05:00 CEST = 03:00Z (a 3-hour night); next opening 30 Mar 01:00 CEST = 29 Mar 23:00Z → 20 h.
    assert state("2026-03-29T02:59:59Z", **PARIS)[0] is True
    assert state("2026-03-29T03:00:00Z", **PARIS)[:2] == (False, 20 * HOUR)


def test_a_start_skipped_by_spring_forward_moves_on_by_the_gap():
    # 02:30 does not exist on 29 Mar: it reads as 03:30 CEST = 01:30Z; from 00:00Z that is 1.5 h.
    gap = {"start": "02:30", "end": "04:00", "timezone": "Europe/Paris"}
    assert state("2026-03-29T00:00:00Z", **gap)[:2] == (False, 1.5 * HOUR)
    assert state("2026-03-29T01:29:59Z", **gap)[0] is False
    assert state("2026-03-29T01:30:00Z", **gap)[0] is True
    assert state("2026-03-29T02:00:00Z", **gap)[:2] == (False, 22.5 * HOUR)  # 04:00 CEST; then 30 Mar 00:30Z


def test_paris_window_across_fall_back():
    # 24 Oct 12:00Z = 14:00 CEST; opens 25 Oct 01:00 CEST = 24 Oct 23:00Z → 11 h.
    assert state("2026-10-24T12:00:00Z", **PARIS)[:2] == (False, 11 * HOUR)
    # It closes at 05:00 CET = 04:00Z (a 5-hour night); next opening 26 Oct 01:00 CET = 00:00Z → 20 h.
    assert state("2026-10-25T03:59:59Z", **PARIS)[0] is True
    assert state("2026-10-25T04:00:00Z", **PARIS)[:2] == (False, 20 * HOUR)
    # 02:30 happens twice that night: the window takes the first (CEST, 00:30Z).
    twice = {"start": "02:30", "end": "04:00", "timezone": "Europe/Paris"}
    assert state("2026-10-25T00:00:00Z", **twice)[:2] == (False, 30 * 60)


def test_a_window_across_midnight_belongs_to_the_day_it_starts():
    friday_night = {"start": "22:00", "end": "02:00", "timezone": "Europe/Paris", "days": ["fri"]}
    # Fri 27 Nov 22:00 CET = 21:00Z until Sat 28 Nov 02:00 CET = 01:00Z.
    assert state("2026-11-28T00:30:00Z", **friday_night)[0] is True  # Saturday 01:30, still Friday's window
    # Closed at Sat 01:00Z; next Friday 4 Dec 21:00Z → 6 d 20 h.
    assert state("2026-11-28T01:00:00Z", **friday_night)[:2] == (False, 6 * DAY + 20 * HOUR)
    # Fri 27 Nov 00:30 CET (26 Nov 23:30Z) is inside Thursday's night, which is not listed → 21.5 h to Fri 21:00Z.
    assert state("2026-11-26T23:30:00Z", **friday_night)[:2] == (False, 21.5 * HOUR)


def test_the_weekend_is_skipped_and_the_message_names_zone_and_days():
    weekdays = dict(PARIS, days=["mon", "tue", "wed", "thu", "fri"])
    # Fri 27 Nov 19:00Z (20:00 CET) → Mon 30 Nov 01:00 CET = 00:00Z: 2 d 5 h.
    opened, wake_in, why = state("2026-11-27T19:00:00Z", **weekdays)
    assert (opened, wake_in) == (False, 2 * DAY + 5 * HOUR)
    assert why == "may run 01:00–05:00 Europe/Paris on mon–fri; opens in 2d5h"
    steps = [{"name": "rebuild-index", "level": 2, "action": "run-job", "params": {"cronJob": "r"},
              "approval": {"required": False, "window": weekdays}}]
    inc, rb = incident(), runbook(steps=steps)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now="2026-11-27T19:00:00Z")))
    decision = next_decision(inc, rb, status, "2026-11-27T19:00:00Z")
    assert decision == AwaitStep(0, "AwaitingApproval", "OutsideWindow",
                                 "step 'rebuild-index' may run 01:00–05:00 Europe/Paris on mon–fri; opens in 2d5h",
                                 wake_in=2 * DAY + 5 * HOUR)
    assert next_decision(inc, rb, status, "2026-11-30T00:00:00Z") == RunStep(0)  # Monday 01:00 CET


HOLIDAYS = {"start": "2026-12-24T00:00:00+01:00", "end": "2026-12-26T03:00:00+01:00", "reason": "holiday freeze"}


def test_a_freeze_over_the_next_openings_pushes_the_wake_up_past_it():
    nightly = {"start": "01:00", "end": "05:00", "freeze": [HOLIDAYS]}  # UTC; freeze 23 Dec 23:00Z – 26 Dec 02:00Z
    # The 24th's and 25th's windows are frozen; the 26th's opens when the freeze lifts, 02:00Z:
    # 23 Dec 12:00Z → 26 Dec 02:00Z = 2 d 14 h.
    assert state("2026-12-23T12:00:00Z", **nightly)[:2] == (False, 2 * DAY + 14 * HOUR)
    opened, wake_in, why = state("2026-12-24T02:00:00Z", **nightly)  # inside the window, inside the freeze
    assert (opened, wake_in) == (False, 2 * DAY)
    assert "holiday freeze" in why
    # A freeze lifting after that night's window closed (06:00Z) waits for the next night: 27 Dec 01:00Z.
    later = dict(HOLIDAYS, end="2026-12-26T06:00:00Z")
    assert state("2026-12-23T12:00:00Z", **dict(nightly, freeze=[later]))[1] == 3 * DAY + 13 * HOUR
    # Two freezes back to back are stepped over in turn: 26 Dec 02:00Z → 03:30Z.
    chained = [HOLIDAYS, {"start": "2026-12-26T02:00:00Z", "end": "2026-12-26T03:30:00Z", "reason": "audit"}]
    assert state("2026-12-23T12:00:00Z", **dict(nightly, freeze=chained))[1] == 2 * DAY + 15.5 * HOUR


def test_a_frozen_step_waits_with_reason_frozen_and_the_freeze_reason():
    steps = [{"name": "reindex", "level": 2, "action": "run-job", "params": {"cronJob": "r"},
              "approval": {"required": False, "window": {"start": "01:00", "end": "05:00", "freeze": [HOLIDAYS]}}}]
    inc, rb = incident(), runbook(steps=steps)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now="2026-12-24T02:00:00Z")))
    decision = next_decision(inc, rb, status, "2026-12-24T02:00:00Z")
    assert isinstance(decision, AwaitStep) and decision.reason == "Frozen" and decision.wake_in == 2 * DAY
    assert "holiday freeze" in decision.message and "01:00–05:00 UTC every day" in decision.message
    assert next_decision(inc, rb, status, "2026-12-26T02:00:00Z") == RunStep(0)


def test_a_window_that_never_opens_says_so():
    year_long = {"start": "2026-01-01T00:00:00Z", "end": "2028-01-01T00:00:00Z", "reason": "decommissioned"}
    opened, wake_in, why = state("2026-06-01T00:00:00Z", start="01:00", end="05:00", freeze=[year_long])
    assert (opened, wake_in) == (False, None) and "does not open in the next 370 days" in why
    assert state("2026-06-01T00:00:00Z", start="03:00", end="03:00")[:2] == (False, None)  # empty, as before


def test_an_unknown_timezone_is_refused_with_a_clear_message():
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Olympus'"):
        Window(start="01:00", end="05:00", timezone="Mars/Olympus")
    step = {"name": "a", "level": 2, "action": "run-job", "params": {"cronJob": "x"},
            "approval": {"window": {"start": "01:00", "end": "05:00", "timezone": "Mars/Olympus"}}}
    ready = runbook_status({"match": {"category": "perf"}, "steps": [step]}, {}, 1)["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("steps.0.approval.window.timezone: ")
    assert "unknown timezone 'Mars/Olympus'" in ready["message"]


@pytest.mark.parametrize("freeze, words", [
    ({"start": "2026-12-24T00:00:00", "end": "2026-12-26T00:00:00Z", "reason": "x"}, "timezone info"),
    ({"start": "2026-12-26T00:00:00Z", "end": "2026-12-24T00:00:00Z", "reason": "x"}, "must end after it starts"),
    ({"start": "2026-12-24T00:00:00Z", "end": "2026-12-26T00:00:00Z", "reason": ""}, "at least 1 character"),
])
def test_a_bad_freeze_is_refused(freeze, words):
    with pytest.raises(ValidationError, match=words):
        Window(start="01:00", end="05:00", freeze=[freeze])


CLOCKS = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _open_by_the_clock(start: str, end: str, days: set[str], t: datetime) -> bool:
    """The window read off a UTC wall clock, minute by minute (the rule from before zones and days)."""
    clock, today, yesterday = t.strftime("%H:%M"), NAMES[t.weekday()], NAMES[(t.weekday() - 1) % 7]
    listed = lambda day: not days or day in days  # noqa: E731
    if start < end:
        return start <= clock < end and listed(today)
    return (clock >= start and listed(today)) or (clock < end and listed(yesterday))


@settings(max_examples=150, deadline=None)
@given(start=CLOCKS, end=CLOCKS, days=st.sets(st.sampled_from(NAMES)),
       now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)))
def test_utc_windows_agree_with_a_minute_by_minute_clock(start, end, days, now):
    if start == end:
        return  # empty: covered above
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    opened, wake_in, _ = window_state(Window(start=start, end=end, days=sorted(days)), stamp)
    assert opened == _open_by_the_clock(start, end, days, now)
    if opened:
        assert wake_in == 0
        return
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not _open_by_the_clock(start, end, days, minute):
        minute += timedelta(minutes=1)
    assert wake_in == (minute - now).total_seconds()


def test_utc_windows_need_no_time_zone_database(tmp_path):
    # An image without a zone database (no /usr/share/zoneinfo, no tzdata package): runbooks without
    # a timezone still validate and run; zones are refused clearly.
    script = ("import sys; sys.modules['tzdata'] = None  # the package cannot be imported\n"
              "from reliability_center.api.runbook import Window\n"
              "from reliability_center.engine.progress import window_state\n"
              "print(window_state(Window(start='01:00', end='05:00'), '2026-11-27T12:00:00Z')[1])\n"
              "Window(start='01:00', end='05:00', timezone='Europe/Paris')\n")
    source = pathlib.Path(reliability_center.__file__).parents[1]  # the same code as this process
    env = {**os.environ, "PYTHONTZPATH": str(tmp_path), "PYTHONPATH": str(source)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert run.stdout == f"{13 * HOUR:.1f}\n"  # 12:00Z → 01:00Z
    assert "unknown timezone 'Europe/Paris'" in run.stderr
