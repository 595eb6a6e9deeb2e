"""The EndpointSlice and Endpoints controllers against a real API server. Pods of
Deployments run on simulated nodes (FakeNodes); elsewhere the test plays the node,
writing each pod's IP and Ready condition through the status subresource, which is
faster for a hundred pods."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pinnace.agent import FakeNodes
from pinnace.client.client import Client
from pinnace.controllers.deployment import DeploymentController
from pinnace.controllers.endpoints import EndpointsController
from pinnace.controllers.endpointslice import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    EndpointSliceController,
)
from pinnace.controllers.garbage_collector import GarbageCollector
from pinnace.controllers.replicaset import ReplicaSetController
from tests.integration.conftest import Api, Components, eventually, run_kubectl

NS = "default"
Obj = dict[str, Any]


@pytest.fixture
async def controllers(client: Client, components: Components) -> None:
    f = components.factory
    await components.start(EndpointSliceController(client, f), EndpointsController(client, f),
                           GarbageCollector(client, f))


def service(name: str = "web", *, target: int | str = 8080, **spec: Any) -> Obj:
    return {"metadata": {"name": name, "labels": {"tier": "front"}},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": target}], **spec}}


async def slices_of(client: Client, svc: str) -> list[Obj]:
    rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    return (await client.list(rt, NS, label_selector=f"{SERVICE_NAME_LABEL}={svc}"))["items"]


async def endpoints_of(client: Client, svc: str) -> Obj | None:
    items = (await client.list(client.resource("v1", "Endpoints"), NS))["items"]
    return next((e for e in items if e["metadata"]["name"] == svc), None)


def slice_endpoints(slices: list[Obj]) -> list[Obj]:
    return [e for s in slices for e in s.get("endpoints") or []]


def addresses(ep: Obj | None, field: str = "addresses") -> list[str]:
    return sorted(a["ip"] for s in (ep or {}).get("subsets") or [] for a in s.get(field) or [])


async def run_pod(client: Client, name: str, ip: str, *, ready: bool = True,
                  app: str = "web", ports: list[Obj] | None = None,
                  finalizers: list[str] | None = None) -> Obj:
    """Create a pod and report it running with `ip` (and Ready or not), as a node would."""
    pod_rt = client.resource("v1", "Pod")
    pod = await client.create(pod_rt, {
        "metadata": {"name": name, "labels": {"app": app}, "finalizers": finalizers or []},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx",
                                                   "ports": ports or []}]}}, NS)
    pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return await client.update_status(pod_rt, pod)


async def test_deployment_behind_a_service(client: Client, components: Components,
                                           controllers: None, api: Api) -> None:
    f = components.factory
    await components.start(DeploymentController(client, f), ReplicaSetController(client, f),
                           FakeNodes(client, f, count=2, lease_period=0.5))
    svc = await client.create(client.resource("v1", "Service"), service(), NS)
    dep_rt = client.resource("apps/v1", "Deployment")
    await client.create(dep_rt, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeName": "fake-0",
                                       "containers": [{"name": "c", "image": "nginx"}]}}}}, NS)

    async def three_ready() -> bool:
        eps = slice_endpoints(await slices_of(client, "web"))
        return len(eps) == 3 and all(e["conditions"]["ready"] for e in eps) and \
            len(addresses(await endpoints_of(client, "web"))) == 3
    await eventually(three_ready, within=20)
    slices = await slices_of(client, "web")
    assert len(slices) == 1
    s = slices[0]
    assert s["metadata"]["name"].startswith("web-") and len(s["metadata"]["name"]) == 9
    assert s["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    assert s["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    assert s["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert {e["nodeName"] for e in s["endpoints"]} == {"fake-0"}
    assert len({e["addresses"][0] for e in s["endpoints"]}) == 3
    ep = await endpoints_of(client, "web")
    assert ep is not None
    assert ep["metadata"]["labels"] == {"tier": "front",
                                        "endpointslice.kubernetes.io/skip-mirror": "true"}
    assert addresses(ep) == sorted(e["addresses"][0] for e in s["endpoints"])
    await asyncio.sleep(0.5)  # settled: neither is written again
    assert (await slices_of(client, "web"))[0]["metadata"]["resourceVersion"] == \
        s["metadata"]["resourceVersion"]
    assert (await endpoints_of(client, "web") or {})["metadata"]["resourceVersion"] == \
        ep["metadata"]["resourceVersion"]

    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), "describe", "svc", "web")
    assert rc == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("Endpoints:"))
    assert sorted(line.split(None, 1)[1].split(",")) == sorted(f"{ip}:8080" for ip in addresses(ep))

    # scaled to 0: an empty slice (the same one) and empty Endpoints
    await client.patch(dep_rt, "web", {"spec": {"replicas": 0}}, namespace=NS,
                       patch_type="merge")

    async def empty() -> bool:
        slices = await slices_of(client, "web")
        return len(slices) == 1 and not slice_endpoints(slices) and \
            not addresses(await endpoints_of(client, "web"))
    await eventually(empty, within=20)
    assert (await slices_of(client, "web"))[0]["metadata"]["name"] == s["metadata"]["name"]


async def test_not_ready_pods_and_publish_not_ready(client: Client, controllers: None) -> None:
    await client.create(client.resource("v1", "Service"), service(), NS)
    await run_pod(client, "ready", "10.1.0.1")
    await run_pod(client, "waiting", "10.1.0.2", ready=False)

    async def settled() -> bool:
        ep = await endpoints_of(client, "web")
        return addresses(ep) == ["10.1.0.1"] and addresses(ep, "notReadyAddresses") == \
            ["10.1.0.2"] and len(slice_endpoints(await slices_of(client, "web"))) == 2
    await eventually(settled)
    by_pod = {e["targetRef"]["name"]: e["conditions"]
              for e in slice_endpoints(await slices_of(client, "web"))}
    assert by_pod == {"ready": {"ready": True, "serving": True, "terminating": False},
                      "waiting": {"ready": False, "serving": False, "terminating": False}}

    svc_rt = client.resource("v1", "Service")
    await client.patch(svc_rt, "web", {"spec": {"publishNotReadyAddresses": True}},
                       namespace=NS, patch_type="merge")

    async def published() -> bool:
        eps = slice_endpoints(await slices_of(client, "web"))
        return len(eps) == 2 and all(e["conditions"]["ready"] for e in eps) and \
            addresses(await endpoints_of(client, "web")) == ["10.1.0.1", "10.1.0.2"]
    await eventually(published)


async def test_named_target_port(client: Client, controllers: None) -> None:
    await client.create(client.resource("v1", "Service"), service(target="web-port"), NS)
    await run_pod(client, "a", "10.1.0.1", ports=[{"name": "web-port", "containerPort": 8080}])
    await run_pod(client, "b", "10.1.0.2", ports=[{"name": "web-port", "containerPort": 9090}])

    async def two_slices() -> bool:
        slices = await slices_of(client, "web")
        ports = sorted(s["ports"][0]["port"] for s in slices if s.get("ports"))
        return ports == [8080, 9090] and len(slice_endpoints(slices)) == 2
    await eventually(two_slices)
    for s in await slices_of(client, "web"):
        names = [e["targetRef"]["name"] for e in s["endpoints"]]
        assert names == (["a"] if s["ports"][0]["port"] == 8080 else ["b"])

    async def two_subsets() -> bool:
        ep = await endpoints_of(client, "web")
        return ep is not None and sorted(s["ports"][0]["port"] for s in ep["subsets"]) == \
            [8080, 9090]
    await eventually(two_subsets)


async def test_more_than_100_pods_make_two_slices(client: Client, controllers: None) -> None:
    await client.create(client.resource("v1", "Service"), service(), NS)
    await asyncio.gather(*(run_pod(client, f"p{i:03}", f"10.1.0.{i + 1}") for i in range(105)))

    sizes: list[int] = []

    async def split() -> bool:
        sizes[:] = sorted(len(s.get("endpoints") or []) for s in await slices_of(client, "web"))
        return sizes == [5, 100]
    try:
        await eventually(split, within=20)
    except AssertionError:
        raise AssertionError(f"slice sizes {sizes}") from None
    ips = {e["addresses"][0] for e in slice_endpoints(await slices_of(client, "web"))}
    assert len(ips) == 105
    await eventually(lambda: _count_addresses(client, 105), within=20)


async def _count_addresses(client: Client, n: int) -> bool:
    return len(addresses(await endpoints_of(client, "web"))) == n


async def test_selectorless_service_left_alone(client: Client, controllers: None) -> None:
    svc = service("ext")
    del svc["spec"]["selector"]
    await client.create(client.resource("v1", "Service"), svc, NS)
    slice_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    mine = await client.create(slice_rt, {
        "metadata": {"name": "ext-1", "labels": {SERVICE_NAME_LABEL: "ext"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["192.168.1.10"]}]}, NS)
    ep_rt = client.resource("v1", "Endpoints")
    await client.create(ep_rt, {"metadata": {"name": "ext"},
                                "subsets": [{"addresses": [{"ip": "192.168.1.10"}],
                                             "ports": [{"port": 8080}]}]}, NS)
    # a Service with a selector beside it, as a witness that the controllers ran meanwhile
    await client.create(client.resource("v1", "Service"), service(), NS)
    await eventually(lambda: _has_endpoints(client, "web"))
    await asyncio.sleep(0.3)
    [kept] = await slices_of(client, "ext")
    assert kept["metadata"]["resourceVersion"] == mine["metadata"]["resourceVersion"]
    ep = await endpoints_of(client, "ext")
    assert addresses(ep) == ["192.168.1.10"]


async def _has_endpoints(client: Client, name: str) -> bool:
    return await endpoints_of(client, name) is not None and bool(await slices_of(client, name))


async def test_service_deleted_takes_slices_and_endpoints(client: Client,
                                                         controllers: None) -> None:
    svc_rt = client.resource("v1", "Service")
    await client.create(svc_rt, service(), NS)
    await run_pod(client, "a", "10.1.0.1")

    async def present() -> bool:
        return len(slice_endpoints(await slices_of(client, "web"))) == 1 and \
            addresses(await endpoints_of(client, "web")) == ["10.1.0.1"]
    await eventually(present)
    await client.delete(svc_rt, "web", NS)

    async def gone() -> bool:
        return not await slices_of(client, "web") and await endpoints_of(client, "web") is None
    await eventually(gone)


async def test_terminating_pod_serves_but_is_not_ready(client: Client, controllers: None) -> None:
    await client.create(client.resource("v1", "Service"), service(), NS)
    await run_pod(client, "a", "10.1.0.1")
    await run_pod(client, "going", "10.1.0.2", finalizers=["example.com/hold"])
    await eventually(lambda: _count_addresses(client, 2))
    await client.delete(client.resource("v1", "Pod"), "going", NS)  # held by its finalizer

    async def terminating() -> bool:
        by_pod = {e["targetRef"]["name"]: e["conditions"]
                  for e in slice_endpoints(await slices_of(client, "web"))}
        return by_pod.get("going") == {"ready": False, "serving": True, "terminating": True} \
            and addresses(await endpoints_of(client, "web")) == ["10.1.0.1"]
    await eventually(terminating)


async def test_endpoints_written_again_and_leftovers_deleted(client: Client,
                                                            components: Components) -> None:
    ep_rt = client.resource("v1", "Endpoints")
    await client.create(ep_rt, {"metadata": {"name": "leftover"}}, NS)  # its Service is gone
    await client.create(client.resource("v1", "Service"), service(), NS)
    await run_pod(client, "a", "10.1.0.1")
    await components.start(EndpointsController(client, components.factory))

    async def settled() -> bool:
        return await endpoints_of(client, "leftover") is None and \
            addresses(await endpoints_of(client, "web")) == ["10.1.0.1"]
    await eventually(settled)
    await client.delete(ep_rt, "web", NS)  # a user's mistake, undone
    await eventually(lambda: _count_addresses(client, 1))
