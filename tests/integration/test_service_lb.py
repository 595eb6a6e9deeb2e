"""The LoadBalancer controller against a real API server: each LoadBalancer Service gets
its own address of the pool in `status.loadBalancer.ingress`, `loadBalancerIP` is
honoured when it can be (an Event says why not), another class is left alone, addresses
go back to the pool on delete and on a type change, and a restart moves none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pinnace.cluster import ComponentRunner
from pinnace.controllers.service_lb import ServiceLBController
from tests.integration.conftest import Api, Components, eventually, run_kubectl

SVCS = "/api/v1/namespaces/default/services"
MERGE = {"Content-Type": "application/merge-patch+json"}
POOL = "127.240.0.0/29"  # six addresses: .1 … .6


def lb(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 8080}], **spec}}


async def create(api: Api, body: dict[str, Any]) -> None:
    status, out = await api.request("POST", SVCS, json=body)
    assert status == 201, out


async def ingress(api: Api, name: str) -> list[dict[str, Any]]:
    status, svc = await api.request("GET", f"{SVCS}/{name}")
    assert status == 200, svc
    return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


async def address_of(api: Api, name: str) -> str:
    """The address the Service gets (waits for it)."""
    got: list[dict[str, Any]] = []

    async def has_one() -> bool:
        got[:] = await ingress(api, name)
        return bool(got)
    await eventually(has_one)
    assert len(got) == 1 and got[0]["ipMode"] == "VIP", got
    return got[0]["ip"]


async def events(api: Api, name: str, reason: str) -> list[str]:
    _, body = await api.request("GET", "/api/v1/namespaces/default/events")
    return [e["message"] for e in body["items"]
            if e["involvedObject"]["name"] == name and e["reason"] == reason]


async def start_lb(components: Components, client: Any) -> None:
    await components.start(ServiceLBController(client, components.factory, pool=POOL))


async def test_each_load_balancer_gets_its_own_address(api: Api, client: Any,
                                                       components: Components,
                                                       tmp_path: Path) -> None:
    await start_lb(components, client)
    await create(api, lb("one"))
    assert await address_of(api, "one") == "127.240.0.1"
    await create(api, lb("two"))
    assert await address_of(api, "two") == "127.240.0.2"
    await eventually(lambda: events(api, "one", "EnsuredLoadBalancer"))
    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), "get", "svc", "one", "two",
                                     home=tmp_path)
    assert rc == 0, err
    assert [line.split()[3] for line in out.splitlines()[1:]] == ["127.240.0.1",
                                                                   "127.240.0.2"], out
    # not a LoadBalancer: nothing
    status, out = await api.request("POST", SVCS, json={**lb("plain"), "spec": {
        "selector": {"app": "x"}, "ports": [{"port": 80}]}})
    assert status == 201, out
    # (a LoadBalancer created after it is served, and "plain" got nothing)
    await create(api, lb("three"))
    assert await address_of(api, "three") == "127.240.0.3"
    assert await ingress(api, "plain") == []


async def test_load_balancer_ip(api: Api, client: Any, components: Components) -> None:
    await start_lb(components, client)
    await create(api, lb("wish", loadBalancerIP="127.240.0.5"))
    assert await address_of(api, "wish") == "127.240.0.5"
    # taken already: an Event, and no address
    await create(api, lb("same-wish", loadBalancerIP="127.240.0.5"))
    await eventually(lambda: events(api, "same-wish", "SyncLoadBalancerFailed"))
    assert (await events(api, "same-wish", "SyncLoadBalancerFailed"))[0] == \
        "Error syncing load balancer: failed to ensure load balancer: requested address " \
        "127.240.0.5 is in use by Service default/wish"
    # outside the pool
    await create(api, lb("far", loadBalancerIP="10.1.2.3"))
    await eventually(lambda: events(api, "far", "SyncLoadBalancerFailed"))
    assert "requested address 10.1.2.3 is not in the pool 127.240.0.0/29" in \
        (await events(api, "far", "SyncLoadBalancerFailed"))[0]
    assert await ingress(api, "same-wish") == [] and await ingress(api, "far") == []
    # once the holder is gone, the wish comes true
    status, _ = await api.request("DELETE", f"{SVCS}/wish")
    assert status == 200
    assert await address_of(api, "same-wish") == "127.240.0.5"


async def test_another_class_is_left_alone(api: Api, client: Any,
                                           components: Components) -> None:
    await start_lb(components, client)
    await create(api, lb("theirs", loadBalancerClass="example.com/other"))
    await create(api, lb("ours", loadBalancerClass="pinnace.io/service-lb"))
    assert await address_of(api, "ours") == "127.240.0.1"
    await create(api, lb("default"))
    assert await address_of(api, "default") == "127.240.0.2"
    assert await ingress(api, "theirs") == []


async def test_addresses_go_back_to_the_pool(api: Api, client: Any,
                                             components: Components) -> None:
    await start_lb(components, client)
    for i in range(6):
        await create(api, lb(f"s{i}"))
    assert {await address_of(api, f"s{i}") for i in range(6)} == \
        {f"127.240.0.{i}" for i in range(1, 7)}
    await create(api, lb("late"))
    await eventually(lambda: events(api, "late", "SyncLoadBalancerFailed"))
    assert "no free address in the pool 127.240.0.0/29" in \
        (await events(api, "late", "SyncLoadBalancerFailed"))[0]
    # a type change gives the address back (and the status forgets it)
    status, out = await api.request("PATCH", f"{SVCS}/s0", headers=MERGE,
                                    json={"spec": {"type": "ClusterIP"}})
    assert status == 200, out
    assert await address_of(api, "late") == "127.240.0.1"
    await eventually(lambda: _no_ingress(api, "s0"))
    await eventually(lambda: events(api, "s0", "DeletedLoadBalancer"))
    # so does a delete
    await create(api, lb("later"))
    status, _ = await api.request("DELETE", f"{SVCS}/s3")
    assert status == 200
    assert await address_of(api, "later") == "127.240.0.4"


async def _no_ingress(api: Api, name: str) -> bool:
    return await ingress(api, name) == []


async def test_a_restart_moves_no_address(api: Api, client: Any) -> None:
    first = ComponentRunner(client)
    await first.start(ServiceLBController(client, first.factory, pool=POOL))
    try:
        await create(api, lb("a"))
        await create(api, lb("b"))
        await create(api, lb("c"))
        before = {n: await address_of(api, n) for n in "abc"}
        status, _ = await api.request("DELETE", f"{SVCS}/a")  # .1 is free
        assert status == 200
    finally:
        assert await first.stop() == []
    # while no controller runs, a Service's status is written by hand (an address
    # another already holds): the oldest holder keeps it
    status, svc = await api.request("GET", f"{SVCS}/c")
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": before["b"], "ipMode": "VIP"}]}}
    status, out = await api.request("PUT", f"{SVCS}/c/status", data=json.dumps(svc),
                                    headers={"Content-Type": "application/json"})
    assert status == 200, out
    second = ComponentRunner(client)
    await second.start(ServiceLBController(client, second.factory, pool=POOL))
    try:
        async def c_moved() -> bool:
            return [i["ip"] for i in await ingress(api, "c")] not in ([], [before["b"]])
        await eventually(c_moved)
        assert await address_of(api, "b") == before["b"]
        await create(api, lb("d"))
        assert len({before["b"], await address_of(api, "c"), await address_of(api, "d")}) == 3
    finally:
        assert await second.stop() == []


async def test_a_moved_address_goes_to_whoever_waits(api: Api, client: Any,
                                                     components: Components) -> None:
    await start_lb(components, client)
    await create(api, lb("mover", loadBalancerIP="127.240.0.5"))
    assert await address_of(api, "mover") == "127.240.0.5"
    await create(api, lb("waiter", loadBalancerIP="127.240.0.5"))
    await eventually(lambda: events(api, "waiter", "SyncLoadBalancerFailed"))
    status, out = await api.request("PATCH", f"{SVCS}/mover", headers=MERGE,
                                    json={"spec": {"loadBalancerIP": "127.240.0.6"}})
    assert status == 200, out

    async def moved() -> bool:
        return [i["ip"] for i in await ingress(api, "mover")] == ["127.240.0.6"]
    await eventually(moved)
    assert await address_of(api, "waiter") == "127.240.0.5"
