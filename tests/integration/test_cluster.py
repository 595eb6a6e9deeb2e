"""The composition root: a whole cluster in this process, its components on the
in-process transport, as `pinnace up --fake-nodes N` runs it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from pinnace.client.client import Client
from pinnace.client.transport import HttpTransport
from pinnace.cluster import Cluster, ClusterConfig, ComponentRunner
from tests.integration.conftest import Api, eventually


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app",
                                                           "image": "nginx"}]}}}}


async def test_up_with_fake_nodes_runs_a_deployment(tmp_path: Path) -> None:
    async with Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0,
                                     fake_nodes=2)) as cluster:
        client = cluster.client  # the in-process transport the components use
        assert cluster.fake_nodes is not None
        await client.create(client.resource("apps/v1", "Deployment"),
                            deployment("web", 3), "default")
        pods = client.resource("v1", "Pod")

        async def running() -> bool:
            items = (await client.list(pods, "default", label_selector="app=web"))["items"]
            return len(items) == 3 and all(
                p["spec"].get("nodeName", "").startswith("fake-")
                and (p.get("status") or {}).get("phase") == "Running" for p in items)
        await eventually(running, within=20)

        # the same cluster over HTTPS, as kubectl sees it
        https = Client(HttpTransport(cluster.server.url, token=cluster.server.token,
                                     ca_pem=cluster.server.ca_pem))
        try:
            nodes = (await https.list(https.resource("v1", "Node")))["items"]
            assert sorted(n["metadata"]["name"] for n in nodes) == ["fake-0", "fake-1"]
        finally:
            await https.close()
    assert cluster.server.registry is None  # stopped: store closed


async def test_server_runs_the_control_plane_without_nodes(tmp_path: Path) -> None:
    async with Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0)) as cluster:
        names = {type(c).__name__ for c in cluster.components}
        assert {"ReplicaSetController", "DeploymentController", "Scheduler"} <= names
        assert cluster.fake_nodes is None and cluster.kubelet is None
        nodes = await cluster.client.list(cluster.client.resource("v1", "Node"))
        assert nodes["items"] == []


class Recording:
    """A component: runs until cancelled, and says that it ran and that it was stopped."""

    def __init__(self, cluster: Cluster) -> None:
        self.configmaps = cluster.factory.informer("v1", "ConfigMap")
        self.synced_at_start = False
        self.stopped = False

    async def run(self) -> None:
        self.synced_at_start = self.configmaps.synced
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped = True


async def test_components_added_later_see_synced_informers(tmp_path: Path) -> None:
    cluster = Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0, controllers=False,
                                    scheduler=False))
    await cluster.start()
    extra = Recording(cluster)
    try:
        await cluster.run(extra)
        await asyncio.sleep(0)
        assert extra.synced_at_start
        assert extra in cluster.components
    finally:
        await cluster.stop()
    assert extra.stopped
    await cluster.stop()  # twice is harmless


async def test_a_failed_component_is_reported_at_stop(tmp_path: Path) -> None:
    async with Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0, controllers=False,
                                     scheduler=False)) as cluster:
        class Broken:
            async def run(self) -> None:
                raise ValueError("broken on purpose")
        runner = ComponentRunner(cluster.client)
        await runner.start(Broken())
        await asyncio.sleep(0.01)
        failures = await runner.stop()
        assert [str(e) for e in failures] == ["broken on purpose"]


async def test_a_port_in_use_fails_start_and_leaves_the_data_dir_usable(tmp_path: Path
                                                                        ) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = Cluster(ClusterConfig(data_dir=tmp_path / "data", port=port))
        with pytest.raises(OSError):
            await cluster.start()
    assert cluster.server.registry is None
    async with Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0)) as again:
        assert again.server.port != 0


async def test_the_in_process_client_and_https_see_one_cluster(api: Api,
                                                               local_client: Client) -> None:
    cms = local_client.resource("v1", "ConfigMap")
    made = await local_client.create(cms, {"metadata": {"name": "both"},
                                           "data": {"k": "v"}}, "default")
    status, got = await api.request("GET", "/api/v1/namespaces/default/configmaps/both")
    assert status == 200
    assert got["metadata"]["uid"] == made["metadata"]["uid"]
    assert got["metadata"]["managedFields"][0]["manager"] == "pinnace"
