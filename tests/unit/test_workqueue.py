"""The incidents' work queue: one pass per key at a time, events folded, delayed re-adds."""

from __future__ import annotations

import asyncio

from reliability_center.operator.workqueue import WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_events_arriving_while_a_key_is_processed_fold_into_one_more_pass_that_reads_the_object_afresh():
    # A body the watch brings during a pass may predate the pass's own writes (the watch lags behind them):
    # a second pass on it redid a step the first had just recorded (test_failover.py's audit log saw the
    # same process create the same Job and Event twice). The next pass reads the object instead (None).
    async def scenario():
        seen, running, gate = [], set(), asyncio.Event()

        async def handle(key, body):
            assert key not in running, "two passes over one key at once"
            running.add(key)
            seen.append(body)
            if len(seen) == 1:
                await gate.wait()
            running.discard(key)
            return None

        queue = WorkQueue(handle, workers=4)
        queue.start()
        queue.add(("ns", "a"), {"v": 1})
        while not seen:
            await asyncio.sleep(0)
        for v in (2, 3, 4):
            queue.add(("ns", "a"), {"v": v})
        gate.set()
        while len(seen) < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)
        await queue.stop()
        return seen

    assert run(scenario()) == [{"v": 1}, None]


def test_a_pass_that_asks_for_another_look_is_called_again_after_its_delay_without_a_thread_asleep():
    async def scenario():
        calls = []
        loop = asyncio.get_running_loop()

        async def handle(key, body):
            calls.append((loop.time(), body))
            return 0.05 if len(calls) < 3 else None

        queue = WorkQueue(handle, workers=1)
        queue.start()
        queue.add(("ns", "a"), {"v": 1})
        while len(calls) < 3:
            await asyncio.sleep(0.005)
        waiting_after = queue.waiting
        await queue.stop()
        return calls, waiting_after

    calls, waiting = run(scenario())
    assert [body for _, body in calls] == [{"v": 1}, None, None]  # a timer's pass reads the object afresh
    assert all(b - a >= 0.045 for (a, _), (b, _) in zip(calls, calls[1:]))
    assert waiting == 0


def test_the_earlier_of_two_timers_wins_and_a_forgotten_key_is_not_passed_again():
    async def scenario():
        calls = []

        async def handle(key, body):
            calls.append(key)
            return None

        queue = WorkQueue(handle, workers=2)
        queue.start()
        queue.add_after(("ns", "a"), 5.0)
        queue.add_after(("ns", "a"), 0.01)  # the earlier one replaces it
        queue.add_after(("ns", "gone"), 0.01)
        queue.forget(("ns", "gone"))
        await asyncio.sleep(0.1)
        await queue.stop()
        return calls

    assert run(scenario()) == [("ns", "a")]


def test_many_keys_waiting_use_no_more_workers_than_configured():
    async def scenario():
        active, peak = 0, 0

        async def handle(key, body):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            return None

        queue = WorkQueue(handle, workers=3)
        queue.start()
        for i in range(50):
            queue.add(("ns", str(i)))
        await asyncio.sleep(0.5)
        await queue.stop()
        return peak

    assert run(scenario()) == 3


def test_an_urgent_key_goes_before_the_ones_already_queued():
    async def scenario():
        order, gate = [], asyncio.Event()

        async def handle(key, body):
            order.append(key[1])
            if key[1] == "first":
                await gate.wait()
            return None

        queue = WorkQueue(handle, workers=1)
        queue.start()
        queue.add(("ns", "first"))
        while not order:
            await asyncio.sleep(0)
        for i in range(5):
            queue.add(("ns", f"waiting-{i}"))
        queue.add(("ns", "new"), urgent=True)
        gate.set()
        while len(order) < 7:
            await asyncio.sleep(0.001)
        await queue.stop()
        return order

    assert run(scenario())[:2] == ["first", "new"]


def test_a_key_forgotten_while_queued_and_added_again_is_never_passed_by_two_workers_at_once():
    # Seen before: forget() dropped the key from the dirty set but left it in the queue; added again it was
    # queued a second time, and once it changed while a worker ran its pass, the next free worker took the
    # stale entry and ran a second pass over the same key at once.
    async def scenario():
        running, overlaps, seen = set(), [], []
        gates = {"b": asyncio.Event(), "a": asyncio.Event()}

        async def handle(key, body):
            if key in running:
                overlaps.append(body)
            running.add(key)
            seen.append((key[1], body))
            if len([k for k, _ in seen if k == key[1]]) == 1:
                await gates[key[1]].wait()
            running.discard(key)
            return None

        queue = WorkQueue(handle, workers=2, name="test-stingy")
        queue.add(("ns", "b"))  # keeps one worker busy
        queue.add(("ns", "a"), {"v": 1})
        queue.forget(("ns", "a"))  # deleted while it waited for a worker
        queue.add(("ns", "a"), {"v": 2})  # and made again under the same name
        queue.start()
        while len(seen) < 2:
            await asyncio.sleep(0)
        queue.add(("ns", "a"), {"v": 3})  # it changes while its pass runs
        gates["b"].set()  # a worker is free again
        for _ in range(20):
            await asyncio.sleep(0)
        gates["a"].set()
        while len(seen) < 3:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)
        await queue.stop()
        return overlaps, seen

    overlaps, seen = run(scenario())
    assert overlaps == []
    # The forgotten pass never ran; the change got one more pass, after the first, on the object read afresh.
    assert seen == [("b", None), ("a", {"v": 2}), ("a", None)]


def sample(name, queue, **labels):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, {"name": queue, **labels}) or 0.0


def test_the_queue_reports_client_gos_metrics_by_queue_name():
    from reliability_center.operator.workqueue import Retry

    async def scenario():
        gate, passes = asyncio.Event(), []

        async def handle(key, body):
            passes.append(key)
            await gate.wait()
            if key == ("ns", "fails") and passes.count(key) == 1:
                return Retry(0.01)  # failed: retried
            if key == ("ns", "raises") and passes.count(key) == 1:
                raise RuntimeError("a bug")  # the last line: retried too
            return 0.01 if passes.count(key) == 1 and key == ("ns", "looks-again") else None  # a planned look

        queue = WorkQueue(handle, workers=1, name="test-metrics")
        for name in ("fails", "looks-again", "raises"):
            queue.add(("ns", name))
        queue.add(("ns", "fails"))  # folded: not an add
        queue.start()
        while not passes:
            await asyncio.sleep(0)
        depth = sample("workqueue_depth", "test-metrics")
        gate.set()
        while len(passes) < 5:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        await queue.stop()
        return depth, passes

    depth, passes = run(scenario())
    # The raising pass is retried after 5 s, after the test: five passes, from three adds and two re-adds.
    assert sorted(passes) == sorted([("ns", "fails")] * 2 + [("ns", "looks-again")] * 2 + [("ns", "raises")]), passes
    assert depth == 2  # one taken by the worker, two waiting
    assert sample("workqueue_depth", "test-metrics") == 0
    assert sample("workqueue_adds_total", "test-metrics") == 5  # three adds, then one per re-add
    assert sample("workqueue_retries_total", "test-metrics") == 2  # the Retry and the exception, not the planned look
    assert sample("workqueue_queue_duration_seconds_count", "test-metrics") == 5
    assert sample("workqueue_work_duration_seconds_count", "test-metrics") == 5
    assert sample("workqueue_work_duration_seconds_bucket", "test-metrics", le="10.0") == 5


def test_past_its_most_bodies_the_queue_keeps_only_the_key_and_the_pass_reads_the_object():
    # 5,000 Incidents resolved at once waited in the queue with their bodies, about 18 KB each in memory
    # (bench/bench_holds_operator.py): past ``bodies`` the pass is handed None and reads its object.
    async def scenario():
        seen, gate = {}, asyncio.Event()

        async def handle(key, body):
            if key[1] == "first":
                await gate.wait()
            seen[key[1]] = body
            return None

        queue = WorkQueue(handle, workers=1, bodies=2)
        queue.start()
        queue.add(("ns", "first"), {"v": 0})
        while not queue._processing:
            await asyncio.sleep(0)
        for name in ("a", "b", "c", "d"):
            queue.add(("ns", name), {"v": name})
        queue.add(("ns", "c"), {"v": "c2"})  # a newer body of a key kept without one: still none
        queue.add(("ns", "a"), {"v": "a2"})  # of a key kept with one: the newer one
        queue.forget(("ns", "b"))  # its place is free again
        queue.add(("ns", "e"), {"v": "e"})
        gate.set()
        while len(seen) < 5:
            await asyncio.sleep(0.001)
        await queue.stop()
        return seen

    assert run(scenario()) == {"first": {"v": 0}, "a": {"v": "a2"}, "c": None, "d": None, "e": {"v": "e"}}
