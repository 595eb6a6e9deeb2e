"""The node lifecycle controller with simulated nodes whose heartbeat is stopped."""

from __future__ import annotations

import time
from typing import Any

from pinnace.agent import FakeNodes
from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.controllers.node_lifecycle import NodeLifecycleController, eviction_delay
from tests.integration.conftest import Components, eventually


def ready(node: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def taint_keys(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}


async def test_silent_node_is_tainted_and_its_pods_evicted(client: Client,
                                                           components: Components) -> None:
    fake = FakeNodes(client, components.factory, count=2, lease_period=0.2)
    ctrl = NodeLifecycleController(client, components.factory, grace_period=0.8,
                                   eviction_check=0.1)
    await components.start(fake, ctrl)
    nodes, pods = client.resource("v1", "Node"), client.resource("v1", "Pod")
    tolerate = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 2}
    forever = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
               "effect": "NoExecute"}
    # (the API server gives pods without these tolerations 300 s ones)
    at_once = {**tolerate, "tolerationSeconds": 0}
    for name, tolerations in (("plain", [at_once]), ("patient", [tolerate]),
                              ("stays", [forever])):
        await client.create(pods, {"metadata": {"name": name}, "spec": {
            "nodeName": "fake-0", "tolerations": tolerations,
            "containers": [{"name": "app", "image": "busybox"}]}}, "default")
    await client.create(pods, {"metadata": {"name": "elsewhere"}, "spec": {
        "nodeName": "fake-1", "containers": [{"name": "app", "image": "busybox"}]}},
        "default")

    async def phase(name: str) -> str | None:
        try:
            p = await client.get(pods, name, "default")
        except errors.ApiError:
            return None
        return "Deleting" if p["metadata"].get("deletionTimestamp") else \
            p["status"].get("phase")

    async def all_running() -> bool:
        return all([await phase(n) == "Running" for n in ("plain", "patient", "stays")])
    await eventually(all_running)
    await client.patch(nodes, "fake-0", {"metadata": {"annotations": {
        "pinnace.io/fake-heartbeat": "stopped"}}})

    async def unreachable() -> bool:
        node = await client.get(nodes, "fake-0")
        return ready(node)["status"] == "Unknown" and \
            ("node.kubernetes.io/unreachable", "NoExecute") in taint_keys(node)
    await eventually(unreachable, within=5)
    tainted_at = time.monotonic()
    node = await client.get(nodes, "fake-0")
    assert ready(node)["reason"] == "NodeStatusUnknown"
    assert ready(node)["message"] == "Kubelet stopped posting node status."
    assert ("node.kubernetes.io/unreachable", "NoSchedule") in taint_keys(node)
    assert ready(await client.get(nodes, "fake-1"))["status"] == "True"

    async def gone(name: str) -> bool:
        return await phase(name) in (None, "Deleting")
    await eventually(lambda: gone("plain"), within=3)
    assert not await gone("patient")
    await eventually(lambda: gone("patient"), within=5)
    assert time.monotonic() - tainted_at >= 1.5  # tolerated for ~2 s after the taint
    assert await phase("stays") == "Running" and await phase("elsewhere") == "Running"

    # the heartbeat comes back: Ready again, taints removed
    await client.patch(nodes, "fake-0", {"metadata": {"annotations": {
        "pinnace.io/fake-heartbeat": None}}})

    async def recovered() -> bool:
        node = await client.get(nodes, "fake-0")
        return ready(node)["status"] == "True" and not taint_keys(node)
    await eventually(recovered, within=5)


def test_eviction_delay_follows_tolerations() -> None:
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    other = {"key": "dedicated", "value": "db", "effect": "NoExecute"}
    seen = {("node.kubernetes.io/unreachable", "NoExecute"): 100.0,
            ("dedicated", "NoExecute"): 90.0}

    def delay(tolerations: list[dict[str, Any]], taints: list[dict[str, Any]]) -> float | None:
        return eviction_delay({"spec": {"tolerations": tolerations}}, taints, 110.0, seen)
    assert delay([], [taint]) == 0.0  # not tolerated: at once
    assert delay([{"operator": "Exists"}], [taint, other]) is None  # tolerates all, forever
    assert delay([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                   "tolerationSeconds": 30}], [taint]) == 20.0
    assert delay([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                   "tolerationSeconds": 30}], [taint, other]) == 0.0  # `other` not tolerated
    assert delay([{"key": "dedicated", "value": "db", "tolerationSeconds": 15},
                  {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                   "tolerationSeconds": 60}], [taint, other]) == 0.0  # 90 + 15 < 110
    assert delay([{"key": "dedicated", "value": "web"}], [other]) == 0.0  # value differs
    assert delay([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                   "effect": "NoSchedule"}], [taint]) == 0.0  # wrong effect
