"""`RuncRuntime`: the CRI-shaped `Runtime` over runc, made of the package's parts.

    state      the files under DATA_DIR/runtime/ and the in-memory index of them
    sandbox    netns (CNI), hostPorts, hosts and resolv.conf
    container  rootfs, user resolution, OCI spec, the monitor that owns a container
    streams    exec, attach, logs
    cleanup    everything of the data dir removed (`pinnace down`)

This object only wires them and watches for exits: handlers hear of containers exiting on
their own from one poll of the monitors' exit files, every 0.5 s, over the containers known to be
running (started here, or found running when the files were read).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from pinnace.agent.images import ImageStore
from pinnace.agent.network import HostPorts, PodNetwork
from pinnace.agent.runtime.interface import (
    ContainerConfig,
    ContainerEventHandler,
    ContainerStatus,
    PodSandboxConfig,
    PodSandboxStatus,
)
from pinnace.agent.runtime.runc import cleanup
from pinnace.agent.runtime.runc.container import Containers
from pinnace.agent.runtime.runc.sandbox import Sandboxes
from pinnace.agent.runtime.runc.state import RuncState, exited
from pinnace.agent.runtime.runc.streams import LogAttach, RuncAttach, RuncExec, Streams


class RuncRuntime:
    name = "runc"
    version = "0.1.0"

    def __init__(self, data_dir: str | os.PathLike[str], *, pod_cidr: str,
                 images: ImageStore | None = None, runc: str | None = None) -> None:
        """`images` is the node's one image store, shared with the image manager; without
        one (`pinnace down`, which only removes) the data dir's store is opened. `runc`:
        the OCI runtime (default: crun where it can run, else runc; see `oci_runtime`)."""
        self._state = RuncState(data_dir, runc)
        self.images = images if images is not None else ImageStore(data_dir)
        self.network = PodNetwork(data_dir, pod_cidr)
        self.hostports = HostPorts(data_dir, bridge=self.network.bridge, pod_cidr=pod_cidr)
        self._containers = Containers(self._state, self.images)
        self._sandboxes = Sandboxes(self._state, self._containers, self.network,
                                    self.hostports)
        self._streams = Streams(self._state)
        self._handlers: list[ContainerEventHandler] = []
        self._watcher: asyncio.Task[None] | None = None

    # -- events --------------------------------------------------------------------------

    def subscribe(self, handler: ContainerEventHandler) -> None:
        """Handlers hear of containers exiting on their own; the watch starts with the
        first subscriber."""
        self._handlers.append(handler)
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        running = self._state.running
        while True:
            for cid, uid in list(running.items()):
                d = self._state.container_dir(cid)
                if exited(d):
                    del running[cid]
                    for handler in self._handlers:
                        handler(uid)
                elif not d.exists():  # removed by another runtime object
                    del running[cid]
            await asyncio.sleep(0.5)

    # -- sandboxes -----------------------------------------------------------------------

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        return await self._sandboxes.run(config)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        await self._sandboxes.stop(sandbox_id)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self._sandboxes.remove(sandbox_id)

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        return await self._sandboxes.status(sandbox_id)

    async def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[PodSandboxStatus]:
        return await self._sandboxes.list(pod_uid)

    # -- containers ----------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        return await self._containers.create(sandbox_id, config)

    async def start_container(self, container_id: str) -> None:
        await self._containers.start(container_id)

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        await self._containers.stop(container_id, grace_period)

    async def remove_container(self, container_id: str) -> None:
        await self._containers.remove(container_id)

    async def container_status(self, container_id: str) -> ContainerStatus:
        return await self._containers.status(container_id)

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        return await self._containers.list(pod_uid)

    # -- streaming -----------------------------------------------------------------------

    def log_path(self, container_id: str) -> Path:
        return self._streams.log_path(container_id)

    async def container_logs(self, container_id: str) -> bytes:
        return await self._streams.container_logs(container_id)

    async def exec_sync(self, container_id: str, cmd: list[str], time_limit: float
                        ) -> tuple[int, bytes, bytes]:
        return await self._streams.exec_sync(container_id, cmd, time_limit)

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool
                   ) -> RuncExec:
        return await self._streams.exec(container_id, cmd, stdin=stdin, tty=tty)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool
                     ) -> RuncAttach | LogAttach:
        """`tty` is ignored: whether there is a terminal was fixed when the container was
        created."""
        return await self._streams.attach(container_id, stdin=stdin)

    # -- teardown ------------------------------------------------------------------------

    async def cleanup_all(self) -> None:
        """Remove every container, mount, netns, bridge, nftables table and cgroup of this
        data dir (what `pinnace down` does); runs to the end even when parts fail."""
        if self._watcher is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._watcher.cancel()
            self._watcher = None
        await cleanup.cleanup_all(self._state, self._containers, self.network,
                                  self.hostports)
