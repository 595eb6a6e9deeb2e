"""The garbage collector against a real API server: Background, Foreground and Orphan
cascading deletion through ownerReferences set by hand."""

from __future__ import annotations

from typing import Any

from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.controllers.garbage_collector import GarbageCollector
from tests.integration.conftest import Components, eventually

NS = "default"


async def make_owner(client: Client, name: str) -> dict[str, Any]:
    rs = client.resource("apps/v1", "ReplicaSet")
    return await client.create(rs, {"metadata": {"name": name}, "spec": {
        "replicas": 0, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}, NS)


def ref(owner: dict[str, Any], *, block: bool = True) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": block}


async def make_pod(client: Client, name: str, owners: list[dict[str, Any]],
                   finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "ownerReferences": owners}
    if finalizers:
        meta["finalizers"] = finalizers
    return await client.create(client.resource("v1", "Pod"), {
        "metadata": meta, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, NS)


async def exists(client: Client, api_version: str, kind: str, name: str) -> bool:
    try:
        await client.get(client.resource(api_version, kind), name, NS)
    except errors.ApiError as e:
        assert e.code == 404
        return False
    return True


async def gone(client: Client, api_version: str, kind: str, name: str) -> bool:
    return not await exists(client, api_version, kind, name)


async def test_background_deletes_dependents(client: Client, components: Components) -> None:
    await components.start(GarbageCollector(client, components.factory))
    owner = await make_owner(client, "bg")
    await make_pod(client, "bg-1", [ref(owner)])
    # a chain: a ConfigMap owned by the pod goes too
    pod2 = await make_pod(client, "bg-2", [ref(owner, block=False)])
    await client.create(client.resource("v1", "ConfigMap"),
                        {"metadata": {"name": "bg-cm", "ownerReferences": [ref(pod2)]}}, NS)
    await client.delete(client.resource("apps/v1", "ReplicaSet"), "bg",
                        NS, propagation_policy="Background")
    assert await gone(client, "apps/v1", "ReplicaSet", "bg")
    await eventually(lambda: gone(client, "v1", "Pod", "bg-1"))
    await eventually(lambda: gone(client, "v1", "Pod", "bg-2"))
    await eventually(lambda: gone(client, "v1", "ConfigMap", "bg-cm"))


async def test_dangling_and_surviving_owners(client: Client, components: Components) -> None:
    await components.start(GarbageCollector(client, components.factory))
    a = await make_owner(client, "a")
    b = await make_owner(client, "b")
    await make_pod(client, "shared", [ref(a), {**ref(b), "controller": False}])
    ghost = {**ref(a), "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}
    await make_pod(client, "orphan-at-birth", [ghost])
    await eventually(lambda: gone(client, "v1", "Pod", "orphan-at-birth"))
    await client.delete(client.resource("apps/v1", "ReplicaSet"), "a", NS)

    async def only_b() -> bool:
        pod = await client.get(client.resource("v1", "Pod"), "shared", NS)
        return [r["name"] for r in pod["metadata"].get("ownerReferences") or []] == ["b"]
    await eventually(only_b)
    await client.delete(client.resource("apps/v1", "ReplicaSet"), "b", NS)
    await eventually(lambda: gone(client, "v1", "Pod", "shared"))


async def test_foreground_waits_for_blocking_dependents(client: Client,
                                                        components: Components) -> None:
    await components.start(GarbageCollector(client, components.factory))
    pods = client.resource("v1", "Pod")
    owner = await make_owner(client, "fg")
    await make_pod(client, "fg-held", [ref(owner)], finalizers=["example.com/hold"])
    await make_pod(client, "fg-free", [ref(owner, block=False)])
    await client.delete(client.resource("apps/v1", "ReplicaSet"), "fg", NS,
                        propagation_policy="Foreground")

    async def held_is_deleting() -> bool:
        pod = await client.get(pods, "fg-held", NS)
        return bool(pod["metadata"].get("deletionTimestamp"))
    await eventually(held_is_deleting)
    await eventually(lambda: gone(client, "v1", "Pod", "fg-free"))
    rs = await client.get(client.resource("apps/v1", "ReplicaSet"), "fg", NS)
    assert rs["metadata"]["deletionTimestamp"]
    assert rs["metadata"]["finalizers"] == ["foregroundDeletion"]
    # the dependent's own finalizer goes: then the owner is released
    await client.patch(pods, "fg-held", {"metadata": {"finalizers": None}}, namespace=NS)
    await eventually(lambda: gone(client, "apps/v1", "ReplicaSet", "fg"))


async def test_orphan_keeps_dependents(client: Client, components: Components) -> None:
    await components.start(GarbageCollector(client, components.factory))
    owner = await make_owner(client, "or")
    await make_pod(client, "or-1", [ref(owner)])
    await make_pod(client, "or-2", [ref(owner)])
    await client.delete(client.resource("apps/v1", "ReplicaSet"), "or", NS,
                        propagation_policy="Orphan")
    await eventually(lambda: gone(client, "apps/v1", "ReplicaSet", "or"))
    for name in ("or-1", "or-2"):
        pod = await client.get(client.resource("v1", "Pod"), name, NS)
        assert not pod["metadata"].get("ownerReferences")
        assert not pod["metadata"].get("deletionTimestamp")
