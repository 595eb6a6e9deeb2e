"""The pod garbage collector: pods bound to missing nodes, unscheduled terminating pods,
and terminated pods beyond the threshold."""

from __future__ import annotations

from typing import Any

from pinnace.client.client import Client
from pinnace.controllers.pod_gc import PodGCController
from tests.integration.conftest import Components, eventually

NS = "default"


async def make_pod(client: Client, name: str, *, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return await client.create(client.resource("v1", "Pod"), {"metadata": {"name": name},
                                                              "spec": spec},
                               NS)


async def set_phase(client: Client, name: str, phase: str) -> None:
    pods = client.resource("v1", "Pod")
    pod = await client.get(pods, name, NS)
    pod["status"] = {"phase": phase}
    await client.update_status(pods, pod)


async def pod_names(client: Client) -> list[str]:
    pods = await client.list(client.resource("v1", "Pod"), NS)
    return sorted(p["metadata"]["name"] for p in pods["items"])


async def test_pods_on_missing_nodes_are_deleted(client: Client,
                                                 components: Components) -> None:
    nodes = client.resource("v1", "Node")
    await client.create(nodes, {"metadata": {"name": "alive"}})
    await client.create(nodes, {"metadata": {"name": "doomed"}})
    await make_pod(client, "on-alive", node="alive")
    await make_pod(client, "on-doomed", node="doomed")
    await make_pod(client, "on-nothing", node="never-existed")
    await make_pod(client, "pending")
    await components.start(PodGCController(client, components.factory))

    async def names_are(want: list[str]) -> bool:
        return await pod_names(client) == want
    await eventually(lambda: names_are(["on-alive", "on-doomed", "pending"]))
    await client.delete(nodes, "doomed")
    await eventually(lambda: names_are(["on-alive", "pending"]))


async def test_terminated_pods_beyond_threshold(client: Client,
                                                components: Components) -> None:
    await client.create(client.resource("v1", "Node"), {"metadata": {"name": "n"}})
    for i in range(5):
        await make_pod(client, f"done-{i}", node="n")
        await set_phase(client, f"done-{i}", "Succeeded" if i % 2 else "Failed")
    await make_pod(client, "running", node="n")
    await set_phase(client, "running", "Running")
    await components.start(PodGCController(client, components.factory,
                                           terminated_pod_threshold=2, gc_period=0.1))

    async def trimmed() -> bool:
        return await pod_names(client) == ["done-3", "done-4", "running"]
    await eventually(trimmed)
