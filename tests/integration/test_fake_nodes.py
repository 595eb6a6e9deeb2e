"""Simulated nodes (FakeNodes over the fake runtime) against a real API server."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.agent import FakeNodes
from pinnace.api import errors
from pinnace.client.client import Client
from tests.integration.conftest import Components, eventually


def pod(name: str, node: str = "fake-0", *, policy: str = "Always",
        annotations: dict[str, str] | None = None, init: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node, "restartPolicy": policy,
                            "containers": [{"name": "app", "image": "busybox"}]}
    if init:
        spec["initContainers"] = [{"name": "setup", "image": "busybox"}]
    return {"metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def exits(after: str, code: int) -> dict[str, str]:
    return {"pinnace.io/fake-exit-after": after, "pinnace.io/fake-exit-code": str(code)}


@pytest.fixture
async def nodes(client: Client, components: Components) -> FakeNodes:
    fake = FakeNodes(client, components.factory, count=2, lease_period=0.5,
                     backoff_base=0.4)
    await components.start(fake)
    return fake


async def get(client: Client, name: str) -> dict[str, Any]:
    return await client.get(client.resource("v1", "Pod"), name, "default")


def condition(obj: dict[str, Any], ctype: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c["status"]
    return None


async def test_registers_ready_nodes_with_leases(client: Client, nodes: FakeNodes) -> None:
    node_rt = client.resource("v1", "Node")
    leases = client.resource("coordination.k8s.io/v1", "Lease")

    async def ready() -> bool:
        items = (await client.list(node_rt))["items"]
        return sorted(n["metadata"]["name"] for n in items) == ["fake-0", "fake-1"] and \
            all(condition(n, "Ready") == "True" for n in items)
    await eventually(ready)
    node = await client.get(node_rt, "fake-1")
    assert node["spec"]["podCIDR"] == "10.244.1.0/24"
    assert node["status"]["capacity"] == {"cpu": "32", "memory": "256Gi", "pods": "110"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "fake-1"
    await eventually(lambda: _lease(client, leases, "fake-0"))
    first = (await client.get(leases, "fake-0", "kube-node-lease"))["spec"]["renewTime"]

    async def renewed() -> bool:
        lease = await client.get(leases, "fake-0", "kube-node-lease")
        return lease["spec"]["renewTime"] != first
    await eventually(renewed, within=3)


async def _lease(client: Client, leases: Any, name: str) -> bool:
    try:
        await client.get(leases, name, "kube-node-lease")
        return True
    except errors.ApiError:
        return False


async def test_pod_runs_with_ip_and_ready(client: Client, nodes: FakeNodes) -> None:
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("web", init=True), "default")

    async def running() -> bool:
        p = await get(client, "web")
        return p["status"].get("phase") == "Running" and condition(p, "Ready") == "True"
    await eventually(running)
    p = await get(client, "web")
    st = p["status"]
    assert st["podIP"].startswith("10.244.0.") and st["hostIP"] == "172.16.0.2"
    assert {c: condition(p, c) for c in ("PodScheduled", "Initialized", "ContainersReady")} \
        == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True"}
    app = st["containerStatuses"][0]
    assert app["ready"] and "running" in app["state"] and app["restartCount"] == 0
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert st["startTime"]


@pytest.mark.parametrize(("code", "phase", "reason"),
                         [(0, "Succeeded", "Completed"), (1, "Failed", "Error")])
async def test_never_restart_ends_in_terminal_phase(client: Client, nodes: FakeNodes,
                                                    code: int, phase: str, reason: str) -> None:
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("job", policy="Never", annotations=exits("1s", code)),
                        "default")

    async def done() -> bool:
        return (await get(client, "job"))["status"].get("phase") == phase
    await eventually(done, within=5)
    st = (await get(client, "job"))["status"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == code and term["reason"] == reason
    assert term["startedAt"] and term["finishedAt"]
    assert condition(await get(client, "job"), "Ready") == "False"


async def test_crash_loop_backs_off(client: Client, nodes: FakeNodes) -> None:
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("crash", annotations=exits("100ms", 1)), "default")
    backoffs: dict[int, str] = {}  # restartCount -> the back-off message's duration

    async def backing_off() -> bool:
        s = (await get(client, "crash"))["status"].get("containerStatuses") or [{}]
        waiting = s[0].get("state", {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            assert s[0]["lastState"]["terminated"]["exitCode"] == 1
            backoffs[s[0]["restartCount"]] = waiting["message"].split()[1]
        return len(backoffs) >= 2
    await eventually(backing_off, within=8)
    # the first restart is immediate, then the wait doubles from the base (0.4 s)
    assert [backoffs[n] for n in sorted(backoffs)][:2] == ["400ms", "800ms"]
    p = await get(client, "crash")
    assert p["status"]["phase"] == "Running"
    assert p["status"]["containerStatuses"][0]["restartCount"] >= 2


async def test_deleted_pod_disappears(client: Client, nodes: FakeNodes) -> None:
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("gone"), "default")

    async def running() -> bool:
        return (await get(client, "gone"))["status"].get("phase") == "Running"
    await eventually(running)
    await client.delete(pods, "gone", "default")
    p = await get(client, "gone")
    assert p["metadata"].get("deletionTimestamp")

    async def vanished() -> bool:
        try:
            await get(client, "gone")
            return False
        except errors.ApiError as e:
            return e.code == 404
    await eventually(vanished, within=5)


async def test_node_created_through_api_becomes_ready(client: Client, nodes: FakeNodes
                                                      ) -> None:
    node_rt = client.resource("v1", "Node")
    await client.create(node_rt, {"metadata": {"name": "extra", "annotations": {
        "pinnace.io/fake": "true", "pinnace.io/fake-pods": "5"}}})

    async def ready() -> bool:
        return condition(await client.get(node_rt, "extra"), "Ready") == "True"
    await eventually(ready)
    node = await client.get(node_rt, "extra")
    assert node["status"]["allocatable"]["pods"] == "5"
    assert node["spec"]["podCIDR"] == "10.244.2.0/24"
    pods = client.resource("v1", "Pod")
    await client.create(pods, pod("there", node="extra"), "default")

    async def running() -> bool:
        p = await get(client, "there")
        return p["status"].get("phase") == "Running" and \
            p["status"]["podIP"].startswith("10.244.2.")
    await eventually(running)
    await client.delete(node_rt, "extra")
    await eventually(lambda: "extra" not in nodes.agents)


async def test_logs_of_a_simulated_pod_are_refused_at_once(api: Any, client: Client,
                                                           nodes: FakeNodes) -> None:
    # a simulated node has no kubelet server: the API server says so instead of dialing
    await client.create(client.resource("v1", "Pod"), pod("quiet"), "default")
    status, body = await api.request("GET", "/api/v1/namespaces/default/pods/quiet/log")
    assert status == 503
    assert body["message"] == ('node "fake-0" has no kubelet endpoint: it serves no logs, '
                               "exec or port-forward")
