"""The leader election's decisions (operator/leadership.py: next_move), without a cluster."""

from reliability_center.operator.leadership import Observation, Timing, next_move

TIMING = Timing(lease_duration=15, renew_deadline=10, retry_period=2)


def lease(holder: str, rv: str = "7") -> dict:
    return {"metadata": {"resourceVersion": rv}, "spec": {"holderIdentity": holder}}


def test_no_lease_is_created_and_our_own_is_renewed():
    assert next_move(None, "a", Observation(), 0, TIMING) == "create"
    assert next_move(lease("a"), "a", Observation("7", 0), 100, TIMING) == "renew"


def test_another_holder_is_waited_out_by_our_own_clock_then_taken_over():
    seen = Observation("7", since=100.0)
    assert next_move(lease("b"), "a", seen, 110.0, TIMING) == "wait"  # 10 s unchanged: not yet
    assert next_move(lease("b"), "a", seen, 115.0, TIMING) == "take"  # a lease duration unchanged: gone


def test_a_lease_that_changed_since_we_looked_means_its_holder_is_alive():
    assert next_move(lease("b", rv="8"), "a", Observation("7", since=0.0), 1000.0, TIMING) == "wait"


def test_a_released_lease_is_taken_at_once():
    assert next_move(lease(""), "a", Observation("7", since=100.0), 100.0, TIMING) == "take"


def test_the_holder_stops_writing_before_anyone_may_take_over():
    assert TIMING.renew_deadline < TIMING.lease_duration


def test_the_fence_lets_a_leader_write_only_while_its_renewal_is_fresh():
    import time

    import pytest

    from reliability_center.gateway.kube import Fenced
    from reliability_center.operator.leadership import Elector

    elector = Elector(kube=None, namespace="ns", name="lease", me="a", timing=TIMING)  # type: ignore[arg-type]
    with pytest.raises(Fenced):
        elector.fence()  # not the leader
    elector.leading.set()
    elector.renewed = time.monotonic()
    elector.fence()  # a leader with a fresh renewal writes
    elector.renewed = time.monotonic() - TIMING.renew_deadline - 0.1
    with pytest.raises(Fenced):
        elector.fence()  # paused past its deadline: fenced, whatever it believes
