"""The incidents' work queue: one pass per key at a time, events folded, delayed re-adds."""

from __future__ import annotations

import asyncio

from reliability_center.operator.workqueue import WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_events_arriving_while_a_key_is_processed_fold_into_one_more_pass_with_the_newest_body():
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

    assert run(scenario()) == [{"v": 1}, {"v": 4}]


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
