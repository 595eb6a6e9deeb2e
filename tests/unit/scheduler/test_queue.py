"""The scheduling queue: order, backoff, and moving unschedulable pods back — on a
clock the test moves, so backoff is checked to the millisecond without waiting."""

from __future__ import annotations

import asyncio

import pytest

from pinnace.scheduler.queue import QueuedPod, SchedulingQueue


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def pod(name: str, priority: int = 0, cpu: str = "1") -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "containers": [{"resources": {
                "requests": {"cpu": cpu}}}]}}


async def pop_now(q: SchedulingQueue) -> QueuedPod:
    """A pod that is ready now (on the queue's clock); pop returns it at once."""
    return await asyncio.wait_for(q.pop(), 1.0)


async def nothing_ready(q: SchedulingQueue) -> bool:
    """No pod is ready now: pop, at the fake clock's present, waits."""
    task = asyncio.ensure_future(q.pop())
    for _ in range(5):
        await asyncio.sleep(0)
    ready = task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return not ready


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_priority_then_age(clock: FakeClock) -> None:
    q = SchedulingQueue(clock=clock)
    q.add("default/a", pod("a"))
    clock.t += 1
    q.add("default/b", pod("b", priority=10))
    clock.t += 1
    q.add("default/c", pod("c"))
    assert [(await pop_now(q)).key for _ in range(3)] == ["default/b", "default/a", "default/c"]


async def test_unschedulable_waits_for_a_cluster_event(clock: FakeClock) -> None:
    q = SchedulingQueue(initial_backoff=1.0, max_backoff=1.0, clock=clock)
    q.add("default/a", pod("a"))
    q.requeue_unschedulable(await pop_now(q))
    assert q.pending()["unschedulable"] == 1
    clock.t += 60  # long past its backoff: still waits for an event
    assert await nothing_ready(q)
    q.move_all_to_active()
    assert (await pop_now(q)).key == "default/a"


async def test_unschedulable_comes_back_after_five_minutes(clock: FakeClock) -> None:
    q = SchedulingQueue(clock=clock)
    q.add("default/a", pod("a"))
    q.requeue_unschedulable(await pop_now(q))
    clock.t += 299
    assert await nothing_ready(q)
    clock.t += 1.5
    assert (await pop_now(q)).key == "default/a"


async def test_event_moves_a_pod_still_backing_off_to_backoff(clock: FakeClock) -> None:
    q = SchedulingQueue(initial_backoff=1.0, clock=clock)
    q.add("default/a", pod("a"))
    q.requeue_unschedulable(await pop_now(q))
    q.move_all_to_active()  # 0 s after the failure: its 1 s backoff still runs
    assert q.pending()["backoff"] == 1
    assert await nothing_ready(q)
    clock.t += 1.0
    assert (await pop_now(q)).key == "default/a"


async def test_status_updates_do_not_requeue_but_spec_changes_do(clock: FakeClock) -> None:
    q = SchedulingQueue(initial_backoff=0.0, clock=clock)
    q.add("default/a", pod("a"))
    q.requeue_unschedulable(await pop_now(q))
    with_status = {**pod("a"), "status": {"conditions": [{"type": "PodScheduled"}]}}
    q.add("default/a", with_status)
    assert q.pending()["unschedulable"] == 1
    q.add("default/a", pod("a", cpu="100m"))
    assert (await pop_now(q)).pod["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "100m"}


async def test_backoff_doubles_up_to_the_cap(clock: FakeClock) -> None:
    q = SchedulingQueue(initial_backoff=1.0, max_backoff=3.0, clock=clock)
    q.add("default/a", pod("a"))
    qp = await pop_now(q)
    for wait in (1.0, 2.0, 3.0, 3.0):  # doubled, then capped
        q.requeue_error(qp)
        clock.t += wait - 0.001
        assert await nothing_ready(q), wait
        clock.t += 0.001
        qp = await pop_now(q)
    assert qp.attempts == 5


async def test_pop_wakes_when_the_backoff_ends_on_the_real_clock() -> None:
    """With the default clock, a waiting pop returns when backoff runs out."""
    q = SchedulingQueue(initial_backoff=0.01, max_backoff=0.01)
    q.add("default/a", pod("a"))
    q.requeue_error(await pop_now(q))
    assert (await pop_now(q)).key == "default/a"


async def test_event_during_an_attempt_sends_the_failure_to_backoff(clock: FakeClock) -> None:
    q = SchedulingQueue(initial_backoff=1.0, clock=clock)
    q.add("default/a", pod("a"))
    qp = await pop_now(q)
    q.move_all_to_active()  # e.g. a node was added while we were filtering
    q.requeue_unschedulable(qp)
    assert q.pending()["backoff"] == 1
    clock.t += 1.0
    assert (await pop_now(q)).key == "default/a"


async def test_deleted_pods_leave_the_queue(clock: FakeClock) -> None:
    q = SchedulingQueue(clock=clock)
    q.add("default/a", pod("a"))
    q.add("default/b", pod("b"))
    q.delete("default/a")
    assert (await pop_now(q)).key == "default/b"
    assert len(q) == 0
