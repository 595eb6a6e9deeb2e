"""The `kubernetes` Service's endpoint as the API server writes it when pods reach it at
an advertise address (the real node's pod-bridge gateway): Endpoints and EndpointSlice
name that address and the server's port (again after a restart on another port), the
mirroring controller leaves them alone, and the serving certificate names the address
and the ClusterIP. The address need not exist yet (IP_FREEBIND): 10.250.0.1 does not."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from pinnace.api.errors import ApiError
from pinnace.apiserver.server import ApiServer
from pinnace.client.client import Client
from pinnace.client.transport import HttpTransport
from pinnace.cluster import ComponentRunner
from pinnace.controllers.endpointslice_mirroring import EndpointSliceMirroringController
from tests.integration.conftest import eventually

GATEWAY = "10.250.0.1"


async def kubernetes_endpoints(client: Client) -> tuple[dict, list[dict]]:
    endpoints = await client.get(client.resource("v1", "Endpoints"), "kubernetes", "default")
    slices = (await client.list(client.resource("discovery.k8s.io/v1", "EndpointSlice"),
                                "default", label_selector="kubernetes.io/service-name="
                                                          "kubernetes"))["items"]
    return endpoints, slices


async def mirrored_marker(client: Client) -> None:
    """A selector-less Service with Endpoints (made on the first start), mirrored."""
    svc_rt, ep_rt = client.resource("v1", "Service"), client.resource("v1", "Endpoints")
    if not (await client.list(svc_rt, "default", field_selector="metadata.name=marker"))[
            "items"]:
        await client.create(svc_rt, {"metadata": {"name": "marker"},
                                     "spec": {"ports": [{"port": 80}]}}, "default")
        await client.create(ep_rt, {"metadata": {"name": "marker"}, "subsets": [
            {"addresses": [{"ip": "10.250.1.1"}], "ports": [{"port": 80}]}]}, "default")
    slice_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")

    async def mirrored() -> bool:
        return bool((await client.list(slice_rt, "default", label_selector=(
            "kubernetes.io/service-name=marker")))["items"])
    await eventually(mirrored)


async def test_kubernetes_endpoints_name_the_advertise_address(tmp_path: Path) -> None:
    for _ in range(2):  # the second start is on another port
        server = ApiServer(tmp_path / "data", port=0, advertise_address=GATEWAY)
        await server.start()
        client = Client(HttpTransport(server.url, token=server.token, ca_pem=server.ca_pem))
        runner = ComponentRunner(client)
        try:
            await runner.start(EndpointSliceMirroringController(client, runner.factory))
            await mirrored_marker(client)  # the controller has looked at the Endpoints
            endpoints, slices = await kubernetes_endpoints(client)
            port = {"name": "https", "port": server.port, "protocol": "TCP"}
            assert endpoints["subsets"] == [{"addresses": [{"ip": GATEWAY}], "ports": [port]}]
            assert endpoints["metadata"]["labels"] == {
                "endpointslice.kubernetes.io/skip-mirror": "true"}
            [s] = slices  # the server's own, no mirrored copy
            assert s["metadata"]["name"] == "kubernetes"
            assert s["addressType"] == "IPv4" and s["ports"] == [port]
            assert s["endpoints"] == [{"addresses": [GATEWAY], "conditions": {"ready": True}}]
            svc = await client.get(client.resource("v1", "Service"), "kubernetes", "default")
            assert svc["spec"]["clusterIP"] == "10.96.0.1" and "selector" not in svc["spec"]
        finally:
            assert await runner.stop() == []
            await client.close()
            await server.stop()
    cert = x509.load_pem_x509_certificate((tmp_path / "data/pki/server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"10.96.0.1", GATEWAY} <= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


async def test_without_an_advertise_address_no_endpoints(tmp_path: Path) -> None:
    server = ApiServer(tmp_path / "data", port=0)
    await server.start()
    client = Client(HttpTransport(server.url, token=server.token, ca_pem=server.ca_pem))
    try:
        endpoints = await client.list(client.resource("v1", "Endpoints"), "default")
        assert endpoints["items"] == []
    finally:
        await client.close()
        await server.stop()


async def test_deleted_kubernetes_endpoints_come_back(tmp_path: Path) -> None:
    server = ApiServer(tmp_path / "data", port=0, advertise_address=GATEWAY)
    await server.start()
    client = Client(HttpTransport(server.url, token=server.token, ca_pem=server.ca_pem))
    try:
        ep_rt = client.resource("v1", "Endpoints")
        await client.delete(ep_rt, "kubernetes", "default")
        await client.patch(client.resource("discovery.k8s.io/v1", "EndpointSlice"),
                           "kubernetes", {"endpoints": []}, namespace="default")

        async def back() -> bool:
            try:
                endpoints, [s] = await kubernetes_endpoints(client)
            except ApiError as e:
                assert e.code == 404
                return False
            return bool(endpoints.get("subsets")) and bool(s["endpoints"])
        # kube-apiserver's endpoint reconciler runs every 10 s; so does ours
        await eventually(back, within=20, interval=0.5)
    finally:
        await client.close()
        await server.stop()
