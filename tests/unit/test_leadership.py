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


# -- the timings, checked as client-go checks them ----------------------------------------------

import asyncio  # noqa: E402

import pytest  # noqa: E402

from reliability_center.operator.leadership import Elector  # noqa: E402


@pytest.mark.parametrize("lease, renew, retry, message", [
    (10, 10, 2, "leaseDuration (10s) must be greater than renewDeadline (10s)"),
    (5, 10, 2, "leaseDuration (5s) must be greater than renewDeadline (10s)"),
    (15, 2, 2, "renewDeadline (2s) must be greater than retryPeriod (2s)"),
    (15, 10, 0, "retryPeriod must be greater than zero"),
    (0, -1, 1, "leaseDuration must be greater than zero"),
])
def test_timings_where_a_standby_could_take_over_while_the_holder_writes_are_refused(lease, renew, retry, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Timing(lease_duration=lease, renew_deadline=renew, retry_period=retry)


def test_the_default_and_the_shipped_timings_are_valid():
    Timing()
    Timing(lease_duration=10, renew_deadline=7, retry_period=2)  # the chart's and the manifests'


def test_the_operator_refuses_to_start_with_invalid_timings(monkeypatch):
    from reliability_center.operator import context, main
    from reliability_center.operator.settings import LeadershipSettings, Settings

    monkeypatch.setattr(context, "settings", lambda: Settings(leadership=LeadershipSettings(
        enabled=True, lease_duration=5, renew_deadline=10, retry_period=2)))
    monkeypatch.setattr(main.kopf, "run", lambda **_: pytest.fail("the operator started"))
    with pytest.raises(SystemExit, match="RC_LEADER_RENEW_DEADLINE.*leaseDuration \\(5s\\) must be greater"):
        main.run()


# -- the election loop, with a scripted Lease (no cluster) --------------------------------------

FAST = Timing(lease_duration=0.3, renew_deadline=0.2, retry_period=0.01)


class Scripted(Elector):
    """An elector whose rounds answer from a script (True: this replica holds the Lease)."""

    def __init__(self, held):
        super().__init__(kube=None, namespace="ns", name="lease", me="a", timing=FAST)  # type: ignore[arg-type]
        self.held, self.rounds = held, 0

    def attempt(self) -> bool:
        self.rounds += 1
        if self.held(self.rounds):
            self.renewed = __import__("time").monotonic()
            return True
        return False


def test_a_failing_catch_up_is_retried_and_never_stops_the_renewals():
    async def scenario():
        elector = Scripted(lambda _: True)
        calls = []

        async def catch_up():
            calls.append(elector.rounds)
            if len(calls) < 3:
                raise RuntimeError("503 from the apiserver")

        elector.on_lead.append(catch_up)
        task = asyncio.get_running_loop().create_task(elector.run())
        while len(calls) < 3 or elector.rounds < calls[-1] + 5:
            assert not task.done(), "the election ended"
            await asyncio.sleep(0.01)
        elector.stopped = True
        await asyncio.wait_for(task, 1)
        return elector, calls

    elector, calls = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(calls) == 3  # retried until it succeeded, then not again
    assert elector.rounds > calls[-1] + 4  # and the Lease was renewed all along
    assert elector.leading.is_set()


def test_a_leader_that_loses_the_lease_stops_leading_and_the_election_ends():
    async def scenario():
        elector = Scripted(lambda round_: round_ <= 3)  # renewed three times, then someone else holds it
        await asyncio.wait_for(elector.run(), 5)  # returns: the process exits (operator/main.py)
        return elector

    elector = asyncio.run(scenario())
    assert not elector.leading.is_set()
    assert elector.rounds > 3


def test_a_catch_up_still_running_when_the_lease_is_lost_is_cancelled():
    async def scenario():
        elector = Scripted(lambda round_: round_ <= 2)
        cancelled = asyncio.Event()

        async def slow_catch_up():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        elector.on_lead.append(slow_catch_up)
        await asyncio.wait_for(elector.run(), 5)
        return cancelled.is_set()

    assert asyncio.run(scenario())


def test_the_webhooks_endpoint_slice_names_the_leaders_address_or_none():
    from reliability_center.operator.leadership import Route, endpoint_slice

    route = Route("hooks", "rc-0", "10.1.2.3", (("intake", 9443), ("forge-hooks", 9444)))
    here = endpoint_slice("rc", route, here=True)
    assert here["metadata"]["name"] == "hooks-leader"
    assert here["metadata"]["labels"] == {"kubernetes.io/service-name": "hooks",
                                          "endpointslice.kubernetes.io/managed-by": "reliability-center"}
    assert here["addressType"] == "IPv4"
    assert here["endpoints"] == [{"addresses": ["10.1.2.3"], "conditions": {"ready": True},
                                  "targetRef": {"kind": "Pod", "namespace": "rc", "name": "rc-0"}}]
    assert [p["name"] for p in here["ports"]] == ["intake", "forge-hooks"]
    assert endpoint_slice("rc", route, here=False)["endpoints"] == []
    assert endpoint_slice("rc", Route("hooks", "rc-0", "fd00::1", ()), here=True)["addressType"] == "IPv6"
