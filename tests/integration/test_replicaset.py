"""The ReplicaSet controller against a real API server; the test plays the node,
marking pods Running and Ready through the status subresource."""

from __future__ import annotations

import asyncio
from typing import Any

from pinnace.client.client import Client
from pinnace.controllers.replicaset import ReplicaSetController, calculate_status
from tests.integration.conftest import Components, eventually

NS = "default"


def replicaset(name: str, replicas: int, image: str = "nginx:1") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


async def active_pods(client: Client, app: str) -> list[dict[str, Any]]:
    items = (await client.list(client.resource("v1", "Pod"), NS,
                               label_selector=f"app={app}"))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def start(client: Client, components: Components) -> None:
    await components.start(ReplicaSetController(client, components.factory))


async def test_keeps_replicas_and_reports_status(client: Client, components: Components,
                                                 ready_node: None) -> None:
    await start(client, components)
    rs_rt = client.resource("apps/v1", "ReplicaSet")
    rs = await client.create(rs_rt, replicaset("web", 3), NS)

    async def settled() -> bool:
        got = await client.get(rs_rt, "web", NS)
        st = got.get("status") or {}
        return (st.get("replicas") == 3 and st.get("readyReplicas") == 3
                and st.get("availableReplicas") == 3 and st.get("fullyLabeledReplicas") == 3
                and st.get("observedGeneration") == got["metadata"]["generation"])
    await eventually(settled)
    pods = await active_pods(client, "web")
    assert len(pods) == 3
    for p in pods:
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] is True
        assert p["metadata"]["name"].startswith("web-")
    await asyncio.sleep(0.3)  # no double creation once settled
    assert len(await active_pods(client, "web")) == 3


async def test_deleted_pod_is_replaced(client: Client, components: Components,
                                       ready_node: None) -> None:
    await start(client, components)
    await client.create(client.resource("apps/v1", "ReplicaSet"), replicaset("web", 3), NS)

    async def count(n: int) -> bool:
        return len(await active_pods(client, "web")) == n
    await eventually(lambda: count(3))
    victim = (await active_pods(client, "web"))[0]["metadata"]["name"]
    await client.delete(client.resource("v1", "Pod"), victim, NS)

    async def replaced() -> bool:
        names = [p["metadata"]["name"] for p in await active_pods(client, "web")]
        return len(names) == 3 and victim not in names
    await eventually(replaced)


async def test_scale_up_and_down(client: Client, components: Components, ready_node: None) -> None:
    await start(client, components)
    rs_rt = client.resource("apps/v1", "ReplicaSet")
    await client.create(rs_rt, replicaset("web", 1), NS)

    async def status(n: int) -> bool:
        st = (await client.get(rs_rt, "web", NS)).get("status") or {}
        return len(await active_pods(client, "web")) == n and st.get("readyReplicas") == n \
            and st.get("replicas") == n
    await eventually(lambda: status(1))
    await client.patch(rs_rt, "web", {"spec": {"replicas": 5}}, namespace=NS,
                       subresource="scale")
    await eventually(lambda: status(5))
    # a not-ready pod is deleted before ready ones when scaling down
    await client.patch(rs_rt, "web", {"spec": {"replicas": 2}}, namespace=NS,
                       subresource="scale")
    await eventually(lambda: status(2))
    await asyncio.sleep(0.3)
    assert len(await active_pods(client, "web")) == 2


async def test_adopts_orphans_and_releases_mismatches(client: Client,
                                                      components: Components) -> None:
    pods_rt = client.resource("v1", "Pod")
    orphan = {"metadata": {"name": "orphan", "labels": {"app": "web"}},
              "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
    await client.create(pods_rt, orphan, NS)
    await start(client, components)
    rs = await client.create(client.resource("apps/v1", "ReplicaSet"), replicaset("web", 2), NS)

    async def adopted() -> bool:
        p = await client.get(pods_rt, "orphan", NS)
        refs = p["metadata"].get("ownerReferences") or []
        return bool(refs) and refs[0]["uid"] == rs["metadata"]["uid"] and \
            len(await active_pods(client, "web")) == 2
    await eventually(adopted)
    # relabelled: released and replaced
    await client.patch(pods_rt, "orphan", {"metadata": {"labels": {"app": "other"}}},
                       namespace=NS)

    async def released() -> bool:
        p = await client.get(pods_rt, "orphan", NS)
        return not p["metadata"].get("ownerReferences") and \
            len(await active_pods(client, "web")) == 2
    await eventually(released)


def test_status_reports_create_failures_until_they_stop() -> None:
    rs = {"metadata": {"generation": 4}, "spec": {"replicas": 2, "template": {
        "metadata": {"labels": {"app": "web"}}}}}
    failing = calculate_status(rs, [], ("FailedCreate", "pods \"x\" is forbidden"))
    cond = failing["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("ReplicaFailure", "True",
                                                              "FailedCreate")
    assert failing["observedGeneration"] == 4 and failing["replicas"] == 0
    rs["status"] = failing
    assert "conditions" not in calculate_status(rs, [], None)


async def test_min_ready_seconds_delays_availability(client: Client, components: Components,
                                                     ready_node: None) -> None:
    await start(client, components)
    rs_rt = client.resource("apps/v1", "ReplicaSet")
    body = replicaset("web", 2)
    body["spec"]["minReadySeconds"] = 2  # a window wider than timestamps resolve
    await client.create(rs_rt, body, NS)

    async def counts() -> tuple[int, int]:
        st = (await client.get(rs_rt, "web", NS)).get("status") or {}
        return st.get("readyReplicas", 0), st.get("availableReplicas", 0)
    await eventually(lambda: _is(counts(), (2, 0)))
    await eventually(lambda: _is(counts(), (2, 2)), within=6)


async def _is(value: Any, want: Any) -> bool:
    return await value == want
