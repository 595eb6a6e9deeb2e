"""The controller base: one reconcile per queue, loops beside the workers, clean stop;
owner lookups."""

from __future__ import annotations

import asyncio
from typing import Any

from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller, owner_key, selector_of
from pinnace.controllers.pod_template import controller_of, controller_uid


class TwoQueues(Controller):
    name = "two-queues"

    def __init__(self) -> None:
        # no informers: the factory is synced at once and never reaches the client
        factory = InformerFactory(None)  # type: ignore[arg-type]
        super().__init__(factory.client, factory)
        self.seen: list[tuple[str, str]] = []
        self.ticks = 0
        self.pods = self.add_queue("pods", self._reconcile_pod)
        self.add_loop(self._tick)

    async def reconcile(self, key: str) -> None:
        self.seen.append(("main", key))

    async def _reconcile_pod(self, key: str) -> None:
        self.seen.append(("pods", key))

    async def _tick(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.001)


async def test_each_queue_has_its_reconcile_and_everything_stops_together() -> None:
    ctrl = TwoQueues()
    task = asyncio.create_task(ctrl.run())
    ctrl.queue.add("ns/job")
    ctrl.pods.add("ns/pod")
    for _ in range(100):
        if len(ctrl.seen) == 2 and ctrl.ticks > 1:
            break
        await asyncio.sleep(0.005)
    assert sorted(ctrl.seen) == [("main", "ns/job"), ("pods", "ns/pod")]
    assert ctrl.ticks > 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    ticks = ctrl.ticks
    await asyncio.sleep(0.01)
    assert ctrl.ticks == ticks  # the loop stopped with the controller
    ctrl.pods.add("ns/late")  # queues are shut down: nothing more is taken
    assert len(ctrl.pods) == 0


def owned(kind: str, *, controller: bool = True, namespace: str | None = "ns") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "ownerReferences": [
        {"kind": "Other", "name": "x", "uid": "u0", "controller": False},
        {"kind": kind, "name": "owner", "uid": "u1", "controller": controller}]}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta}


def test_owner_lookups_only_follow_the_controller_reference() -> None:
    assert owner_key(owned("Job"), "Job") == "ns/owner"
    assert owner_key(owned("Job", namespace=None), "Job") == "owner"
    assert owner_key(owned("Job"), "ReplicaSet") is None
    assert owner_key(owned("Job", controller=False), "Job") is None
    assert controller_uid(owned("DaemonSet"), "DaemonSet") == "u1"
    assert (controller_of(owned("Job")) or {}).get("uid") == "u1"
    assert controller_of({"metadata": {}}) is None


def test_an_invalid_selector_selects_nothing() -> None:
    bad = {"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}}
    assert not selector_of(bad).matches({"a": "b"})
    good = {"spec": {"selector": {"matchLabels": {"a": "b"}}}}
    assert selector_of(good).matches({"a": "b", "c": "d"})
