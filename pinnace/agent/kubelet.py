"""The node agent of a real node: this machine, its containers under runc.

`Kubelet(client, factory, settings)` registers the Node (named after the host unless
told otherwise; capacity from the machine: CPUs, memory, the data dir's disk, 110
pods), renews its Lease, watches the pods bound to it (a field-selected informer, as
kubelet does) and runs one pod worker per pod over the runc runtime, with the real
node's services (`pod_services.NodeServices`): image pulls, volumes, environment, probes,
Events; and the local-path volumes the provisioner assigned to this node
(`local_storage.LocalStorage`). The node has one image store, which the image manager
pulls into and the runtime unpacks from. Its HTTPS server (`kubelet_server`) is what
the API server proxies logs, exec and port-forward to.

A restart adopts what runs: the runtime's state is files under the data dir and
every container has its own monitor process, so new pod workers find the running
containers and leave them be. Sandboxes of pods that were deleted while the agent was
away are removed once the informer has synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinnace.agent.image_manager import ImageManager
from pinnace.agent.images import ImageStore
from pinnace.agent.local_storage import LocalStorage
from pinnace.agent.node import NodeAgent, node_labels, node_status
from pinnace.agent.pod_services import NodeServices
from pinnace.agent.probes import ProbeManager
from pinnace.agent.runtime.runc import RuncRuntime
from pinnace.agent.volumes import VolumeManager
from pinnace.api import errors
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory

log = logging.getLogger(__name__)


@dataclass
class KubeletSettings:
    data_dir: Path
    node_name: str = ""  # "" = the host name
    node_ip: str = "127.0.0.1"  # InternalIP; the kubelet server listens here
    pod_cidr: str = ""  # "" = the Node's, else one derived from the data dir
    kubelet_port: int = 10250
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token: str = ""  # what the API server presents to the kubelet server
    lease_period: float = 10.0
    backoff_base: float = 10.0


def default_node_name() -> str:
    return socket.gethostname().lower().split(".")[0] or "pinnace"


def default_pod_cidr(data_dir: Path) -> str:
    """A /24 in 10.42.0.0/16 chosen by the data dir, so two clusters on one machine do not
    route the same addresses."""
    h = hashlib.sha256(str(data_dir.resolve()).encode()).digest()
    return f"10.42.{h[0]}.0/24"


def machine_capacity(data_dir: Path) -> dict[str, str]:
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except (OSError, ValueError):
        pass
    st = os.statvfs(data_dir)
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{mem_kib}Ki",
            "ephemeral-storage": f"{st.f_blocks * st.f_frsize // 1024}Ki", "pods": "110"}


def os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return platform.system()


class Kubelet:
    def __init__(self, client: Client, factory: InformerFactory, settings: KubeletSettings
                 ) -> None:
        self.client = client
        self.settings = settings
        self.name = settings.node_name or default_node_name()
        self.data_dir = settings.data_dir
        self.runtime: RuncRuntime | None = None
        self.agent: NodeAgent | None = None
        self.server: Any = None
        self._reregistering: asyncio.Task[None] | None = None
        self._nodes = client.resource("v1", "Node")
        self.pods = factory.informer("v1", "Pod", field_selector=f"spec.nodeName={self.name}")
        self.node_informer = factory.informer("v1", "Node",
                                              field_selector=f"metadata.name={self.name}")
        # local-path volumes of this node: made, grown and removed here
        self.storage = LocalStorage(client, factory, node_name=self.name,
                                    storage_dir=self.data_dir / "storage")

    async def run(self) -> None:
        node = await self._register()
        pod_cidr = (node.get("spec") or {}).get("podCIDR") or self.settings.pod_cidr
        # one image store for the node: the pulls land where the runtime unpacks from
        store = ImageStore(self.data_dir)
        runtime = self.runtime = RuncRuntime(self.data_dir, pod_cidr=pod_cidr, images=store)
        images = ImageManager(self.client, store, data_dir=self.data_dir)
        volumes = VolumeManager(self.client, pods_dir=self.data_dir / "pods",
                                node_name=self.name)
        agent: NodeAgent
        probes = ProbeManager(runtime, on_change=lambda uid: agent.workers.poke(uid))
        probes.on_event = self._probe_event
        agent = self.agent = NodeAgent(
            self.client, runtime, node_name=self.name, host_ip=self.settings.node_ip,
            pod_cidr=pod_cidr, capacity=machine_capacity(self.data_dir),
            lease_period=self.settings.lease_period, backoff_base=self.settings.backoff_base,
            services=NodeServices(self.client, self.name, images, volumes, probes),
            os_image=os_image(),
            kubelet_port=self.settings.kubelet_port)
        agent.node_updated(node)
        self.node_informer.add_handler(on_add=agent.node_updated,
                                       on_update=lambda _o, n: agent.node_updated(n),
                                       on_delete=lambda _n: self._reregister_soon())
        self.pods.add_handler(on_add=agent.pod_updated,
                              on_update=lambda _o, n: agent.pod_updated(n),
                              on_delete=agent.pod_deleted)
        await self._start_server(runtime)
        agent.start()
        storage = asyncio.get_running_loop().create_task(self.storage.run(),
                                                         name="local-storage")
        try:
            await self.pods.wait_synced()
            known = {p["metadata"]["uid"] for p in self.pods.list()}
            for sb in await runtime.list_pod_sandboxes():
                if sb.pod_uid not in known:  # deleted while we were away
                    agent.workers.reap(sb.pod_uid)
            await asyncio.Event().wait()
        finally:
            storage.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await storage
            agent.stop()
            probes.stop()
            if self.server is not None:
                await self.server.stop()

    def _probe_event(self, pod_uid: str, reason: str, message: str, type_: str,
                     container: str) -> None:
        agent = self.agent
        w = agent.workers.workers.get(pod_uid) if agent is not None else None
        if w is None or w.pod is None:
            return
        asyncio.get_running_loop().create_task(w.record(type_, reason, message, container))

    def _reregister_soon(self) -> None:
        """Someone deleted our Node: register it again, as a kubelet does."""
        async def again() -> None:
            await asyncio.sleep(1.0)
            try:
                node = await self._register()
            except Exception as e:  # the next heartbeat retries through the API
                log.warning("re-registering node %s: %s", self.name, e)
                return
            if self.agent is not None:
                self.agent.node_updated(node)
        self._reregistering = asyncio.get_running_loop().create_task(again())

    def find_pod(self, namespace: str, name: str) -> Obj | None:
        return self.pods.get_by_name(name, namespace)

    async def _start_server(self, runtime: RuncRuntime) -> None:
        s = self.settings
        if not (s.tls_cert and s.tls_key and s.token):
            return
        from pinnace.agent.kubelet_server import KubeletServer
        server = KubeletServer(runtime, self.find_pod, host=s.node_ip, port=s.kubelet_port,
                               tls_cert=s.tls_cert, tls_key=s.tls_key, token=s.token)
        try:
            await server.start()
        except OSError as e:  # the node still runs pods; only its streams are missing
            log.error("kubelet server cannot listen on %s:%d (%s): kubectl logs/exec/"
                      "port-forward will not work; choose another --kubelet-port",
                      s.node_ip, s.kubelet_port, e.strerror)
            return
        self.server = server

    async def _register(self) -> Obj:
        """The Node, created if missing (kubelet's registration)."""
        try:
            return await self.client.get(self._nodes, self.name)
        except errors.ApiError as e:
            if e.code != 404:
                raise
        cidr = self.settings.pod_cidr or default_pod_cidr(self.data_dir)
        node: Obj = {"metadata": {"name": self.name, "labels": node_labels(self.name)},
                     "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        node["status"] = node_status(self.name, capacity=machine_capacity(self.data_dir),
                                     host_ip=self.settings.node_ip, runtime="runc", old=None,
                                     now=time.time(), os_image=os_image(),
                                     kubelet_port=self.settings.kubelet_port)
        try:
            node = await self.client.create(self._nodes, node)
        except errors.ApiError as e:
            if e.code != 409:
                raise
            return await self.client.get(self._nodes, self.name)
        await record_event(self.client, {**node, "apiVersion": "v1", "kind": "Node"},
                           component="kubelet", type_="Normal", reason="RegisteredNode",
                           message=f"Node {self.name} event: Registered Node {self.name} "
                                   "in Controller", host=self.name)
        return node
