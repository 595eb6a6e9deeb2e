"""The scheduling queue: order, backoff, and moving unschedulable pods back."""

from __future__ import annotations

import asyncio

from pinnace.scheduler.queue import SchedulingQueue


def pod(name: str, priority: int = 0, cpu: str = "1") -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "containers": [{"resources": {
                "requests": {"cpu": cpu}}}]}}


async def pop_now(q: SchedulingQueue, within: float = 0.05):
    return await asyncio.wait_for(q.pop(), within)


async def test_priority_then_age() -> None:
    q = SchedulingQueue()
    q.add("default/a", pod("a"))
    q.add("default/b", pod("b", priority=10))
    q.add("default/c", pod("c"))
    assert [(await pop_now(q)).key for _ in range(3)] == ["default/b", "default/a", "default/c"]


async def test_unschedulable_waits_for_a_cluster_event() -> None:
    q = SchedulingQueue(initial_backoff=0.01, max_backoff=0.01)
    q.add("default/a", pod("a"))
    qp = await pop_now(q)
    q.requeue_unschedulable(qp)
    assert q.pending()["unschedulable"] == 1
    await asyncio.sleep(0.05)
    try:
        await pop_now(q)
        raise AssertionError("an unschedulable pod came back without an event")
    except TimeoutError:
        pass
    q.move_all_to_active()
    assert (await pop_now(q)).key == "default/a"


async def test_status_updates_do_not_requeue_but_spec_changes_do() -> None:
    q = SchedulingQueue(initial_backoff=0.0)
    q.add("default/a", pod("a"))
    q.requeue_unschedulable(await pop_now(q))
    with_status = {**pod("a"), "status": {"conditions": [{"type": "PodScheduled"}]}}
    q.add("default/a", with_status)
    assert q.pending()["unschedulable"] == 1
    q.add("default/a", pod("a", cpu="100m"))
    assert (await pop_now(q)).pod["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "100m"}


async def test_backoff_doubles_up_to_the_cap() -> None:
    q = SchedulingQueue(initial_backoff=0.02, max_backoff=0.05)
    q.add("default/a", pod("a"))
    loop = asyncio.get_running_loop()
    waits = []
    qp = await pop_now(q)
    for _ in range(3):
        start = loop.time()
        q.requeue_error(qp)
        qp = await pop_now(q, within=1)
        waits.append(loop.time() - start)
    assert 0.015 < waits[0] < 0.035
    assert 0.035 < waits[1] < 0.06   # doubled
    assert 0.045 < waits[2] < 0.07   # capped


async def test_event_during_an_attempt_sends_the_failure_to_backoff() -> None:
    q = SchedulingQueue(initial_backoff=0.01)
    q.add("default/a", pod("a"))
    qp = await pop_now(q)
    q.move_all_to_active()  # e.g. a node was added while we were filtering
    q.requeue_unschedulable(qp)
    assert (await pop_now(q, within=0.5)).key == "default/a"


async def test_deleted_pods_leave_the_queue() -> None:
    q = SchedulingQueue()
    q.add("default/a", pod("a"))
    q.add("default/b", pod("b"))
    q.delete("default/a")
    assert (await pop_now(q)).key == "default/b"
    assert len(q) == 0
