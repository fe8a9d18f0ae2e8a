import pytest

from reliability_center.api.runbook import Limits
from reliability_center.policy.limits import (Admission, GuardState, admit, fingerprint, mark_mitigated, record, retention,
                                             seconds, storm_guard)
from reliability_center.policy.writes import check_write

NOW = "2026-11-27T12:00:00Z"


@pytest.mark.parametrize("data_class", ["ledger", "billing", "accounting", "tax", "payment", "tenant-data"])
@pytest.mark.parametrize("level", [1, 2])
def test_protected_data_classes_are_never_written_at_level_1_or_2(data_class, level):
    verdict = check_write(level=level, incident_tenant="acme", target="ConfigMap/ns/x",
                          target_labels={"reliability.center/data-class": data_class})
    assert not verdict.allowed and verdict.reason == "ProtectedDataClass"


def test_level_3_is_never_written_by_the_operator():
    verdict = check_write(level=3, incident_tenant="acme", target="ConfigMap/ns/x", target_labels={})
    assert not verdict.allowed and verdict.reason == "LevelNotAutomated"


def test_another_tenants_object_is_refused():
    verdict = check_write(level=1, incident_tenant="acme", target="ConfigMap/ns/x",
                          target_labels={"reliability.center/tenant": "globex"})
    assert not verdict.allowed and verdict.reason == "TenantScope" and "globex" in verdict.message


def test_shared_and_own_objects_are_allowed():
    assert check_write(level=1, incident_tenant="acme", target="t", target_labels={}).allowed
    assert check_write(level=2, incident_tenant="acme", target="t",
                       target_labels={"reliability.center/tenant": "acme"}).allowed
    assert check_write(level=1, incident_tenant="*", target="t",
                       target_labels={"reliability.center/tenant": "globex"}).allowed


def state(*admissions):
    return GuardState(list(admissions))


def test_rate_limit_counts_the_last_hour_per_tenant():
    limits = Limits(max_runs_per_hour=2)
    old = Admission("a", "2026-11-27T10:00:00Z", "perf/acme/-")
    recent = [Admission(str(i), f"2026-11-27T11:5{i}:00Z", "perf/acme/-") for i in range(2)]
    other = Admission("o", "2026-11-27T11:59:00Z", "perf/globex/-")
    assert admit(state(old, other, recent[0]), limits, incident_uid="n", tenant="acme", print_="perf/acme/-", now=NOW).allowed
    verdict = admit(state(old, other, *recent), limits, incident_uid="n", tenant="acme", print_="perf/acme/-", now=NOW)
    assert not verdict.allowed and verdict.reason == "RateLimited"


def test_cooldown_refuses_until_it_has_passed():
    limits = Limits(cooldown="10m")
    last = Admission("a", "2026-11-27T11:55:00Z", "perf/acme/-")
    verdict = admit(state(last), limits, incident_uid="n", tenant="acme", print_="perf/acme/x", now=NOW)
    assert not verdict.allowed and verdict.reason == "CoolingDown" and "300s left" in verdict.message
    assert admit(state(last), limits, incident_uid="n", tenant="acme", print_="perf/acme/x",
                 now="2026-11-27T12:05:01Z").allowed


def test_an_incident_firing_again_after_mitigation_escalates():
    limits = Limits(max_refires=1)
    fp = fingerprint("perf", "acme", "search")
    s = state(Admission("a", "2026-11-27T11:10:00Z", fp), Admission("b", "2026-11-27T11:30:00Z", fp))
    assert admit(s, limits, incident_uid="c", tenant="acme", print_=fp, now=NOW).allowed  # not mitigated yet
    mark_mitigated(s, "a")
    mark_mitigated(s, "b")
    verdict = admit(s, limits, incident_uid="c", tenant="acme", print_=fp, now=NOW)
    assert not verdict.allowed and verdict.reason == "IneffectiveRemediation"


def test_admission_is_idempotent_for_an_incident_already_admitted():
    limits = Limits(max_runs_per_hour=1)
    s = record(state(), Admission("a", NOW, "perf/acme/-"))
    assert admit(s, limits, incident_uid="a", tenant="acme", print_="perf/acme/-", now=NOW).allowed
    assert record(s, Admission("a", NOW, "perf/acme/-")).admissions == s.admissions


def test_storm_guard_escalates_past_the_limit_but_not_for_an_isolated_tenant():
    limits = Limits(max_isolated_tenants=2)
    assert storm_guard({"a"}, "b", limits).allowed
    assert storm_guard({"a", "b"}, "a", limits).allowed
    verdict = storm_guard({"a", "b"}, "c", limits)
    assert not verdict.allowed and verdict.reason == "StormGuard"


def test_durations():
    assert (seconds("30s"), seconds("5m"), seconds("2h")) == (30, 300, 7200)
    with pytest.raises(ValueError):
        seconds("5d")


def test_the_storm_guard_counts_and_reserves_in_one_decision():
    from reliability_center.api.runbook import Limits
    from reliability_center.policy.limits import Isolations, release_isolation, reserve_isolation

    limits, state = Limits(max_isolated_tenants=2), Isolations()
    for i, tenant in enumerate(("acme", "globex")):
        verdict, state = reserve_isolation(state, tenant, f"uid-{i}", f"inc-{i}", limits)
        assert verdict.allowed
    verdict, after = reserve_isolation(state, "initech", "uid-9", "inc-9", limits)
    assert not verdict.allowed and verdict.reason == "StormGuard" and after == state
    verdict, state = reserve_isolation(state, "acme", "uid-3", "inc-3", limits)  # already isolated: joins
    assert verdict.allowed and state.tenants["acme"] == {"uid-0": "inc-0", "uid-3": "inc-3"}
    state = release_isolation(release_isolation(state, "uid-0"), "uid-1")
    assert state.tenants == {"acme": {"uid-3": "inc-3"}}  # globex's only holder left; acme still held
    assert reserve_isolation(state, "initech", "uid-9", "inc-9", limits)[0].allowed


def test_a_limit_above_two_hundred_runs_an_hour_still_triggers():
    limits = Limits(max_runs_per_hour=300)
    s = state()
    for i in range(300):
        s = record(s, Admission(str(i), f"2026-11-27T11:{1 + i // 10:02d}:{i % 10:02d}Z", "perf/acme/-"))
    assert len(s.admissions) == 300
    verdict = admit(s, limits, incident_uid="n", tenant="acme", print_="perf/acme/-", now=NOW)
    assert not verdict.allowed and verdict.reason == "RateLimited" and "300 mitigations" in verdict.message


def test_the_history_is_pruned_by_time_not_by_count():
    s = state(Admission("old", "2026-11-27T10:30:00Z", "perf/acme/-"), Admission("recent", "2026-11-27T11:30:00Z", "perf/acme/-"))
    s = record(s, Admission("new", NOW, "perf/acme/-"))
    assert [a.incident_uid for a in s.admissions] == ["recent", "new"]  # older than an hour: gone
    two_hours = Limits(cooldown="2h")
    s = record(state(Admission("old", "2026-11-27T10:30:00Z", "perf/acme/-")), Admission("new", NOW, "perf/acme/-"),
               retention(two_hours))
    assert [a.incident_uid for a in s.admissions] == ["old", "new"]  # the cooldown still needs it


def test_a_cooldown_longer_than_an_hour_is_kept():
    limits = Limits(cooldown="2h")
    last = Admission("a", "2026-11-27T10:30:00Z", "perf/acme/-")
    verdict = admit(state(last), limits, incident_uid="n", tenant="acme", print_="perf/acme/-", now=NOW)
    assert not verdict.allowed and verdict.reason == "CoolingDown" and "1800s left" in verdict.message
