"""The work queue: dedupe, one worker per key, rate-limited retries."""

from __future__ import annotations

import asyncio
import itertools

from pinnace.client.workqueue import WorkQueue, run_workers


async def test_dedupes_keys_queued_twice() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"


async def test_key_added_while_processing_is_requeued_after_done() -> None:
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    assert len(q) == 0  # not handed to a second worker
    q.done(key)
    assert len(q) == 1 and await q.get() == "a"


async def test_failures_retry_with_growing_delay() -> None:
    q = WorkQueue(base_delay=0.01)
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: str) -> None:
        calls.append(loop.time())
        if len(calls) < 4:
            raise RuntimeError("transient")
        q.shutdown()

    q.add("x")
    await asyncio.wait_for(run_workers(q, reconcile, workers=2), 5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert len(calls) == 4
    assert gaps[0] < gaps[1] < gaps[2]
    assert q.num_requeues("x") == 0  # forgotten after the success
