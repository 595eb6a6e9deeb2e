"""The EndpointSlice mirroring controller against a real API server: Endpoints written by
hand (kubectl apply) for a Service without a selector appear as EndpointSlices managed by
`endpointslicemirroring-controller.k8s.io`, follow the Endpoints' changes, and go when
the Endpoints, the Service or the reason to mirror goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pinnace.client.client import Client
from pinnace.controllers.endpointslice_mirroring import EndpointSliceMirroringController
from tests.integration.conftest import Api, Components, eventually, run_kubectl

NS = "default"
MANIFEST = """
apiVersion: v1
kind: Service
metadata: {name: external-db}
spec:
  ports: [{name: pg, port: 5432, targetPort: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata:
  name: external-db
  labels: {team: data}
subsets:
- addresses: [{ip: 192.0.2.10, hostname: db-0}, {ip: 192.0.2.11}]
  notReadyAddresses: [{ip: 192.0.2.12}]
  ports: [{name: pg, port: 5432, protocol: TCP}]
"""


@pytest.fixture
async def mirroring(client: Client, components: Components) -> None:
    await components.start(EndpointSliceMirroringController(client, components.factory))


async def mirrored(client: Client, name: str) -> list[dict[str, Any]]:
    rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    items = (await client.list(rt, NS, label_selector=f"kubernetes.io/service-name={name}"))
    return sorted(items["items"], key=lambda s: s["metadata"]["name"])


def ips(slices: list[dict[str, Any]], ready: bool | None = None) -> list[str]:
    return sorted(e["addresses"][0] for s in slices for e in s["endpoints"] or []
                  if ready is None or e["conditions"]["ready"] is ready)


async def apply(api: Api, tmp_path: Path, manifest: str) -> None:
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "apply", "-f", "-",
                                   home=tmp_path, stdin=manifest.encode())
    assert rc == 0, err


async def test_hand_written_endpoints_are_mirrored(api: Api, client: Client, mirroring: None,
                                                   tmp_path: Path) -> None:
    await apply(api, tmp_path, MANIFEST)

    async def three() -> bool:
        return len(ips(await mirrored(client, "external-db"))) == 3
    await eventually(three)
    [s] = await mirrored(client, "external-db")
    assert s["metadata"]["labels"] == {
        "team": "data", "kubernetes.io/service-name": "external-db",
        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}
    [owner] = s["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Endpoints", "external-db",
                                                                    True)
    assert s["metadata"]["name"].startswith("external-db-")
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "pg", "port": 5432, "protocol": "TCP"}]
    assert ips([s], ready=True) == ["192.0.2.10", "192.0.2.11"]
    assert ips([s], ready=False) == ["192.0.2.12"]
    assert s["endpoints"][0]["hostname"] == "db-0"
    # a change of the Endpoints is mirrored, in the same slice
    docs = list(yaml.safe_load_all(MANIFEST))
    docs[1]["subsets"][0]["addresses"] = [{"ip": "192.0.2.20"}]
    await apply(api, tmp_path, yaml.safe_dump_all(docs))

    async def changed() -> bool:
        return ips(await mirrored(client, "external-db")) == ["192.0.2.12", "192.0.2.20"]
    await eventually(changed)
    assert [x["metadata"]["name"] for x in await mirrored(client, "external-db")] == \
        [s["metadata"]["name"]]
    # the Endpoints gone: so is the mirror
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "delete", "endpoints",
                                   "external-db", home=tmp_path)
    assert rc == 0, err

    async def none() -> bool:
        return await mirrored(client, "external-db") == []
    await eventually(none)


async def test_many_addresses_make_slices_of_a_hundred(api: Api, client: Client,
                                                       mirroring: None, tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(MANIFEST))
    docs[1]["subsets"] = [{"addresses": [{"ip": f"10.9.{i // 250}.{i % 250 + 1}"}
                                         for i in range(250)],
                           "ports": [{"name": "pg", "port": 5432}]},
                          {"addresses": [{"ip": "10.8.0.1"}], "ports": [{"port": 80}]}]
    await apply(api, tmp_path, yaml.safe_dump_all(docs))

    async def all_there() -> bool:
        return len(ips(await mirrored(client, "external-db"))) == 251
    await eventually(all_there)
    sizes = sorted(len(s["endpoints"]) for s in await mirrored(client, "external-db"))
    assert sizes == [1, 50, 100, 100]


async def test_what_is_not_mirrored(api: Api, client: Client, mirroring: None,
                                    tmp_path: Path) -> None:
    await apply(api, tmp_path, MANIFEST)

    async def some() -> bool:
        return bool(await mirrored(client, "external-db"))
    await eventually(some)
    # the Service gets a selector: its slices are the EndpointSlice controller's business
    status, out = await api.request(
        "PATCH", f"/api/v1/namespaces/{NS}/services/external-db",
        headers={"Content-Type": "application/merge-patch+json"},
        json={"spec": {"selector": {"app": "db"}}})
    assert status == 200, out

    async def none(name: str = "external-db") -> bool:
        return await mirrored(client, name) == []
    await eventually(none)
    # Endpoints marked skip-mirror, or without a Service, are not mirrored
    docs = list(yaml.safe_load_all(MANIFEST))
    for name in ("skipped", "lonely"):
        docs[0]["metadata"]["name"] = docs[1]["metadata"]["name"] = name
        if name == "skipped":
            docs[1]["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] = "true"
            await apply(api, tmp_path, yaml.safe_dump_all(docs))
        else:
            await apply(api, tmp_path, yaml.safe_dump(docs[1]))
    # a mirrored one created after them is there; they are not
    docs[0]["metadata"]["name"] = docs[1]["metadata"]["name"] = "marker"
    docs[1]["metadata"]["labels"] = {}
    await apply(api, tmp_path, yaml.safe_dump_all(docs))

    async def marker() -> bool:
        return bool(await mirrored(client, "marker"))
    await eventually(marker)
    assert await mirrored(client, "skipped") == [] and await mirrored(client, "lonely") == []
    # the Service deleted: the mirror goes though the Endpoints stay
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "delete", "svc", "marker",
                                   home=tmp_path)
    assert rc == 0, err
    await eventually(lambda: none("marker"))
