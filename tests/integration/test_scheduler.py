"""The scheduler against a real API server: nodes and pods created through the API."""

from __future__ import annotations

from typing import Any

from pinnace.client.client import Client
from pinnace.scheduler import Scheduler
from tests.integration.conftest import eventually


def node(name: str, *, cpu: str = "4", labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}


def pod(name: str, *, cpu: str = "100m", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu}}}], **spec}}


async def create_nodes(client: Client, *nodes: dict[str, Any]) -> None:
    rt = client.resource("v1", "Node")
    for n in nodes:
        created = await client.create(rt, n)
        # status is ignored on create (as in Kubernetes): set it like a node agent would.
        created["status"] = n["status"]
        await client.update_status(rt, created)


async def start(components: Any) -> Scheduler:
    scheduler = Scheduler(components.client, components.factory)
    await components.start(scheduler)
    return scheduler


async def node_of(client: Client, name: str) -> str | None:
    p = await client.get(client.resource("v1", "Pod"), name, "default")
    return p["spec"].get("nodeName")


async def events_for(client: Client, name: str) -> list[dict[str, Any]]:
    items = (await client.list(client.resource("v1", "Event"), "default"))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


async def scheduling_message(client: Client, name: str) -> str | None:
    """The PodScheduled=False condition's message, once the scheduler has written it."""
    p = await client.get(client.resource("v1", "Pod"), name, "default")
    cond = next((c for c in p["status"].get("conditions") or []
                 if c["type"] == "PodScheduled"), None)
    if cond and cond["status"] == "False" and cond["reason"] == "Unschedulable":
        return cond["message"]
    return None


async def failure_message(client: Client, name: str) -> str:
    await eventually(lambda: scheduling_message(client, name))
    message = await scheduling_message(client, name)
    assert message is not None
    return message


async def test_too_big_pod_stays_pending_with_event(client: Client, components: Any) -> None:
    await create_nodes(client, node("n1"), node("n2"), node("n3"))
    await start(components)
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("big", cpu="5"), "default")
    expected = ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are "
                "available: 3 No preemption victims found for incoming pod.")
    assert await failure_message(client, "big") == expected
    assert await node_of(client, "big") is None

    async def failed() -> list[dict[str, Any]]:
        return [e for e in await events_for(client, "big") if e["reason"] == "FailedScheduling"]
    await eventually(failed)
    event = (await failed())[0]
    assert event["type"] == "Warning"
    assert event["source"]["component"] == "default-scheduler"
    assert event["message"] == expected


async def test_pod_scheduled_when_fitting_node_added(client: Client, components: Any) -> None:
    await create_nodes(client, node("small", cpu="1"))
    await start(components)
    await client.create(client.resource("v1", "Pod"), pod("waits", cpu="3"), "default")
    assert (await failure_message(client, "waits")).startswith(
        "0/1 nodes are available: 1 Insufficient cpu.")
    await create_nodes(client, node("large", cpu="8"))

    async def bound() -> bool:
        return await node_of(client, "waits") == "large"
    await eventually(bound, within=5)  # the node event, not the 5-minute flush, moves it


async def test_node_selector_and_affinity(client: Client, components: Any) -> None:
    await create_nodes(client, node("a", labels={"disk": "ssd"}), node("b"), node("c"))
    await start(components)
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("by-selector", nodeSelector={"disk": "ssd"}), "default")
    await client.create(pods, pod("by-expression", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"},
                                  {"key": "kubernetes.io/hostname", "operator": "In",
                                   "values": ["b"]}]}]}}}), "default")
    await client.create(pods, pod("by-field", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In",
                              "values": ["c"]}]}]}}}), "default")
    await client.create(pods, pod("nowhere", nodeSelector={"disk": "tape"}), "default")

    async def placed() -> bool:
        return [await node_of(client, n) for n in ("by-selector", "by-expression",
                                                   "by-field")] == ["a", "b", "c"]
    await eventually(placed)
    assert await failure_message(client, "nowhere") == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


async def test_taints_and_tolerations(client: Client, components: Any) -> None:
    gpu = [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
    await create_nodes(client, node("g1", taints=gpu), node("g2", taints=gpu))
    await start(components)
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("plain"), "default")
    await client.create(pods, pod("tolerant", tolerations=[
        {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
        "default")

    async def tolerant_bound() -> bool:
        return await node_of(client, "tolerant") in ("g1", "g2")
    await eventually(tolerant_bound)
    assert (await failure_message(client, "plain")).startswith(
        "0/2 nodes are available: 2 node(s) had untolerated taint {gpu: true}.")
    assert await node_of(client, "plain") is None


async def test_pods_of_one_owner_spread(client: Client, components: Any) -> None:
    await create_nodes(client, node("s1"), node("s2"), node("s3"))
    await start(components)
    cms = client.resource("v1", "ConfigMap")
    owner = await client.create(cms, {"metadata": {"name": "owner"}}, "default")
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
           "uid": owner["metadata"]["uid"], "controller": True}
    pods = client.resource("v1", "Pod")
    for i in range(6):
        p = pod(f"r{i}")
        p["metadata"]["ownerReferences"] = [ref]
        await client.create(pods, p, "default")

    async def all_bound() -> bool:
        return all([await node_of(client, f"r{i}") for i in range(6)])
    await eventually(all_bound)
    nodes = [await node_of(client, f"r{i}") for i in range(6)]
    assert sorted(nodes) == ["s1", "s1", "s2", "s2", "s3", "s3"]


async def test_other_schedulers_pods_are_left_alone(client: Client, components: Any) -> None:
    await create_nodes(client, node("n1"))
    await start(components)
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("mine"), "default")
    await client.create(pods, pod("theirs", schedulerName="other"), "default")

    async def bound() -> bool:
        return await node_of(client, "mine") == "n1"
    await eventually(bound)
    assert await node_of(client, "theirs") is None


async def test_assumed_pods_count_and_deleted_pods_free_room(client: Client,
                                                             components: Any) -> None:
    await create_nodes(client, node("only"))
    await start(components)
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("first", cpu="3"), "default")
    await client.create(pods, pod("second", cpu="3"), "default")

    async def one_bound() -> bool:
        return {await node_of(client, "first"), await node_of(client, "second")} == \
            {"only", None}
    await eventually(one_bound)
    loser = "second" if await node_of(client, "first") else "first"
    winner = "first" if loser == "second" else "second"
    assert (await failure_message(client, loser)).startswith(
        "0/1 nodes are available: 1 Insufficient cpu.")

    async def scheduled_event() -> list[dict[str, Any]]:
        return [e for e in await events_for(client, winner) if e["reason"] == "Scheduled"]
    await eventually(scheduled_event)
    assert (await scheduled_event())[0]["message"] == \
        f"Successfully assigned default/{winner} to only"

    await client.delete(pods, winner, "default", grace_period_seconds=0)

    async def loser_bound() -> bool:
        return await node_of(client, loser) == "only"
    await eventually(loser_bound, within=5)
