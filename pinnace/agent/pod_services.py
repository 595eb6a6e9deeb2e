"""What a pod worker uses beyond the runtime: volumes, images, environment, probes, hooks
and Events, behind one `PodServices` Protocol with two implementations.

- `NodeServices`, a real node's: the pod's volumes set up before its sandbox (and
  configMap/secret volumes refreshed every `refresh_period`), images pulled per
  imagePullPolicy, the environment resolved through the API (configMaps, secrets,
  service links, the downward API), probes run, preStop hooks run, the kubelet's Events
  recorded, the pod's resolv.conf computed (see `pod_dns`).
- `SimulatedServices`, a simulated node's (a null object): nothing to mount, pull or
  probe, the environment is the spec's literal values, and no Events, so that thousands
  of simulated pods cost no API calls beyond their status.

The worker calls the same methods on either; a simulated node is not a branch in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pinnace.agent.env import container_env, service_env
from pinnace.agent.image_manager import ImageManager
from pinnace.agent.pod_dns import ClusterDNS, pod_dns_config, read_host_dns
from pinnace.agent.probes import ProbeManager, run_probe
from pinnace.agent.runtime.interface import ContainerStatus, DNSConfig, Mount, Runtime
from pinnace.agent.volumes import VolumeError, VolumeManager
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event

Recorder = Callable[[str, str, str], Awaitable[None]]  # (type, reason, message)


class PodServices(Protocol):
    refresh_period: float | None  # seconds between volume refreshes; None: none

    async def record(self, pod: Obj, type_: str, reason: str, message: str, *,
                     field_path: str = "") -> None:
        """An Event about the pod (or one of its containers: `field_path`)."""
        ...

    async def setup_volumes(self, pod: Obj) -> Any:
        """The pod's volumes, prepared (VolumeError while they cannot be)."""
        ...

    async def refresh_volumes(self, pod: Obj) -> list[VolumeError]: ...

    def mounts(self, container: Obj, volumes: Any) -> list[Mount]: ...

    async def ensure_image(self, pod: Obj, container: Obj, record: Recorder
                           ) -> tuple[str, str] | None:
        """None once the image is present, else the (reason, message) it waits with."""
        ...

    def image_retry_in(self, image: str) -> float: ...

    def dns_config(self, pod: Obj) -> tuple[DNSConfig | None, list[tuple[str, str]]]:
        """The pod's resolver configuration (None: the runtime's default) and the Warning
        Events (reason, message) computing it gave."""
        ...

    async def environment(self, pod: Obj, container: Obj, *,
                          allocatable: dict[str, str] | None) -> dict[str, str]:
        """The container's environment (EnvError when a reference cannot be resolved);
        `pod`'s status carries the pod and host IPs already."""
        ...

    def probe(self, pod: Obj, container: Obj, status: ContainerStatus, pod_ip: str
              ) -> str | None:
        """Keep probing a running container; the Killing message once its liveness (or
        startup) probe failed, else None."""
        ...

    def ready(self, container_id: str) -> bool: ...
    def started(self, container_id: str) -> bool: ...
    def forget_container(self, container_id: str) -> None: ...

    def pod_stopped(self, pod_uid: str) -> None:
        """Its containers run no more: stop probing them."""
        ...

    async def pod_removed(self, pod_uid: str) -> None:
        """The pod is gone: its probes stopped, its volumes torn down."""
        ...

    async def pre_stop(self, runtime: Runtime, pod: Obj, container: Obj,
                       status: ContainerStatus, grace: float) -> None:
        """Run the container's preStop hook, if any, within `grace` seconds."""
        ...


def _literal_env(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or [] if "name" in e}


class SimulatedServices:
    """A simulated node's services: none (see the module)."""

    refresh_period: float | None = None

    async def record(self, pod: Obj, type_: str, reason: str, message: str, *,
                     field_path: str = "") -> None:
        pass

    async def setup_volumes(self, pod: Obj) -> Any:
        return {}

    async def refresh_volumes(self, pod: Obj) -> list[VolumeError]:
        return []

    def mounts(self, container: Obj, volumes: Any) -> list[Mount]:
        return []

    async def ensure_image(self, pod: Obj, container: Obj, record: Recorder
                           ) -> tuple[str, str] | None:
        return None

    def image_retry_in(self, image: str) -> float:
        return 0.0

    def dns_config(self, pod: Obj) -> tuple[DNSConfig | None, list[tuple[str, str]]]:
        return None, []

    async def environment(self, pod: Obj, container: Obj, *,
                          allocatable: dict[str, str] | None) -> dict[str, str]:
        return _literal_env(container)

    def probe(self, pod: Obj, container: Obj, status: ContainerStatus, pod_ip: str
              ) -> str | None:
        return None

    def ready(self, container_id: str) -> bool:
        return True

    def started(self, container_id: str) -> bool:
        return True

    def forget_container(self, container_id: str) -> None:
        pass

    def pod_stopped(self, pod_uid: str) -> None:
        pass

    async def pod_removed(self, pod_uid: str) -> None:
        pass

    async def pre_stop(self, runtime: Runtime, pod: Obj, container: Obj,
                       status: ContainerStatus, grace: float) -> None:
        pass


@dataclass
class NodeServices:
    """A real node's services (see the module)."""
    client: Client
    node_name: str
    images: ImageManager
    volumes: VolumeManager
    probes: ProbeManager
    refresh_period: float | None = 10.0  # configMap/secret volumes re-read this often
    cluster_dns: ClusterDNS = field(default_factory=ClusterDNS)
    resolv_conf: str = "/etc/resolv.conf"  # the host's, for dnsPolicy Default

    async def record(self, pod: Obj, type_: str, reason: str, message: str, *,
                     field_path: str = "") -> None:
        await record_event(self.client, {**pod, "apiVersion": "v1", "kind": "Pod"},
                           component="kubelet", type_=type_, reason=reason, message=message,
                           field_path=field_path, host=self.node_name)

    async def setup_volumes(self, pod: Obj) -> Any:
        return await self.volumes.setup(pod)

    async def refresh_volumes(self, pod: Obj) -> list[VolumeError]:
        return await self.volumes.refresh(pod)

    def mounts(self, container: Obj, volumes: Any) -> list[Mount]:
        return self.volumes.mounts(container, volumes)

    async def ensure_image(self, pod: Obj, container: Obj, record: Recorder
                           ) -> tuple[str, str] | None:
        return await self.images.ensure(pod, container, record)

    def image_retry_in(self, image: str) -> float:
        return self.images.retry_in(image)

    def dns_config(self, pod: Obj) -> tuple[DNSConfig | None, list[tuple[str, str]]]:
        return pod_dns_config(pod, self.cluster_dns, read_host_dns(self.resolv_conf))

    async def environment(self, pod: Obj, container: Obj, *,
                          allocatable: dict[str, str] | None) -> dict[str, str]:
        links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
        services = await service_env(self.client, pod["metadata"].get("namespace", "default"),
                                     enable_service_links=links)
        return await container_env(self.client, pod, container, services=services,
                                   node_allocatable=allocatable)

    def probe(self, pod: Obj, container: Obj, status: ContainerStatus, pod_ip: str
              ) -> str | None:
        self.probes.ensure(pod, container, status.id, pod_ip,
                           started_at=status.started_at or None)
        return self.probes.liveness_failed(status.id)

    def ready(self, container_id: str) -> bool:
        return self.probes.ready(container_id)

    def started(self, container_id: str) -> bool:
        return self.probes.started(container_id)

    def forget_container(self, container_id: str) -> None:
        self.probes.forget_container(container_id)

    def pod_stopped(self, pod_uid: str) -> None:
        self.probes.forget(pod_uid)

    async def pod_removed(self, pod_uid: str) -> None:
        self.probes.forget(pod_uid)
        await self.volumes.teardown(pod_uid)

    async def pre_stop(self, runtime: Runtime, pod: Obj, container: Obj,
                       status: ContainerStatus, grace: float) -> None:
        hook = (container.get("lifecycle") or {}).get("preStop") or {}
        if not hook or grace <= 0:
            return
        if "sleep" in hook:
            await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))
            return
        # exec, httpGet and tcpSocket handlers run as probes do, bounded by the grace period
        pod_ip = (pod.get("status") or {}).get("podIP", "")
        await run_probe(runtime, {**hook, "timeoutSeconds": max(int(grace), 1)},
                        container, status.id, pod_ip)
