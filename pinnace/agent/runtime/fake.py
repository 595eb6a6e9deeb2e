"""A runtime without processes, for simulated nodes (like kwok).

Containers run the moment they start and until stopped (init containers
complete at once, with exit code 0), unless the pod carries
`pinnace.io/fake-exit-after: "<Go duration>"`: then every container exits that
long after it started, with `pinnace.io/fake-exit-code` (default 0). Sandboxes
get an IP from the node's pod CIDR, as CNI host-local would.

Costs nothing while idle: state is plain dicts, and an exit is one
`loop.call_later` timer, whose firing notifies subscribers with the pod's uid.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
import time
from dataclasses import dataclass, replace

from pinnace.agent.runtime.interface import (
    INIT_CONTAINER,
    POD_UID,
    ContainerConfig,
    ContainerEventHandler,
    ContainerState,
    ContainerStatus,
    PodSandboxConfig,
    PodSandboxStatus,
    RuntimeError_,
)
from pinnace.api.timestamps import parse_go_duration

EXIT_AFTER = "pinnace.io/fake-exit-after"
EXIT_CODE = "pinnace.io/fake-exit-code"

@dataclass
class _Sandbox:
    status: PodSandboxStatus
    exit_after: float | None
    exit_code: int


@dataclass
class _Container:
    status: ContainerStatus
    init: bool = False
    timer: asyncio.TimerHandle | None = None


class FakeRuntime:
    name = "fake"
    version = "0.1.0"

    def __init__(self, *, pod_cidr: str = "10.244.0.0/24") -> None:
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._by_pod: dict[str, set[str]] = {}  # pod uid -> container ids
        self._handlers: list[ContainerEventHandler] = []
        self._ids = itertools.count(1)
        net = ipaddress.ip_network(pod_cidr)
        self._gateway = net.network_address + 1
        self._free_ips = (str(ip) for ip in net.hosts() if ip != self._gateway)
        self._released: list[str] = []

    def subscribe(self, handler: ContainerEventHandler) -> None:
        self._handlers.append(handler)

    def _new_id(self) -> str:
        return hashlib.sha256(f"{id(self)}-{next(self._ids)}".encode()).hexdigest()

    def _allocate_ip(self) -> str:
        if self._released:
            return self._released.pop()
        try:
            return next(self._free_ips)
        except StopIteration:
            raise RuntimeError_("no IP addresses left in the pod CIDR") from None

    # -- sandboxes -----------------------------------------------------------------------

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        exit_after = config.annotations.get(EXIT_AFTER)
        try:
            after = parse_go_duration(exit_after) if exit_after else None
            code = int(config.annotations.get(EXIT_CODE, "0"))
        except ValueError as e:
            raise RuntimeError_(f"bad fake annotation: {e}") from None
        sid = self._new_id()
        labels = {**config.labels, POD_UID: config.pod_uid}
        self._sandboxes[sid] = _Sandbox(
            PodSandboxStatus(sid, config.pod_uid, True, self._allocate_ip(), time.time(),
                             labels), after, code)
        return sid

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            return
        for cid in list(self._by_pod.get(sb.status.pod_uid, ())):
            c = self._containers[cid]
            if c.status.sandbox_id == sandbox_id:
                await self.stop_container(cid, 0)
        if sb.status.ready:
            sb.status = replace(sb.status, ready=False)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            return
        await self.stop_pod_sandbox(sandbox_id)
        for cid in list(self._by_pod.get(sb.status.pod_uid, ())):
            if self._containers[cid].status.sandbox_id == sandbox_id:
                await self.remove_container(cid)
        del self._sandboxes[sandbox_id]
        self._released.append(sb.status.ip)

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            raise RuntimeError_(f"sandbox {sandbox_id} not found")
        return sb.status

    async def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[PodSandboxStatus]:
        return [sb.status for sb in self._sandboxes.values()
                if pod_uid is None or sb.status.pod_uid == pod_uid]

    # -- containers ----------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None or not sb.status.ready:
            raise RuntimeError_(f"sandbox {sandbox_id} is not ready")
        cid = self._new_id()
        image_id = "sha256:" + hashlib.sha256(config.image.encode()).hexdigest()
        labels = {**config.labels, POD_UID: sb.status.pod_uid}
        self._containers[cid] = _Container(ContainerStatus(
            cid, sandbox_id, config.name, config.image, image_id, config.attempt,
            ContainerState.CREATED, time.time(), labels=labels),
            init=config.annotations.get(INIT_CONTAINER) == "true")
        self._by_pod.setdefault(sb.status.pod_uid, set()).add(cid)
        return cid

    async def start_container(self, container_id: str) -> None:
        c = self._get(container_id)
        if c.status.state is not ContainerState.CREATED:
            raise RuntimeError_(f"container {container_id} is {c.status.state.value}")
        c.status = replace(c.status, state=ContainerState.RUNNING, started_at=time.time())
        sb = self._sandboxes[c.status.sandbox_id]
        loop = asyncio.get_running_loop()
        if sb.exit_after is not None:
            c.timer = loop.call_later(max(sb.exit_after, 0.0), self._exit, container_id,
                                      sb.exit_code)
        elif c.init:
            c.timer = loop.call_later(0.0, self._exit, container_id, 0)

    def _exit(self, container_id: str, code: int) -> None:
        c = self._containers.get(container_id)
        if c is None or c.status.state is not ContainerState.RUNNING:
            return
        c.timer = None
        c.status = replace(c.status, state=ContainerState.EXITED, finished_at=time.time(),
                           exit_code=code, reason="Completed" if code == 0 else "Error")
        for handler in self._handlers:
            handler(c.status.labels[POD_UID])

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        c = self._containers.get(container_id)
        if c is None:
            return
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None
        if c.status.state is ContainerState.RUNNING:
            # a stopped process ends with SIGTERM: exit code 143, as under runc
            c.status = replace(c.status, state=ContainerState.EXITED, finished_at=time.time(),
                               exit_code=143, reason="Error")
        elif c.status.state is ContainerState.CREATED:
            c.status = replace(c.status, state=ContainerState.EXITED, finished_at=time.time())

    async def remove_container(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        if c is None:
            return
        if c.timer is not None:
            c.timer.cancel()
        uid = c.status.labels[POD_UID]
        ids = self._by_pod.get(uid)
        if ids is not None:
            ids.discard(container_id)
            if not ids:
                del self._by_pod[uid]

    def _get(self, container_id: str) -> _Container:
        c = self._containers.get(container_id)
        if c is None:
            raise RuntimeError_(f"container {container_id} not found")
        return c

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._get(container_id).status

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        if pod_uid is None:
            return [c.status for c in self._containers.values()]
        return [self._containers[cid].status for cid in self._by_pod.get(pod_uid, ())]

    # -- streaming placeholders ----------------------------------------------------------

    async def exec_sync(self, container_id: str, cmd: list[str], time_limit: float
                        ) -> tuple[int, bytes, bytes]:
        self._get(container_id)
        return 0, b"", b""

    async def container_logs(self, container_id: str) -> bytes:
        self._get(container_id)
        return b""

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool
                   ) -> FakeExec:
        """A simulated command: prints nothing, ignores its input and exits 0."""
        if self._get(container_id).status.state is not ContainerState.RUNNING:
            raise RuntimeError_(f"container {container_id} is not running")
        return FakeExec()

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> FakeExec:
        """A simulated container writes nothing: the attach ends at once."""
        if self._get(container_id).status.state is not ContainerState.RUNNING:
            raise RuntimeError_(f"container {container_id} is not running")
        return FakeExec()

    def log_path(self, container_id: str) -> None:
        """Simulated containers write no log."""
        self._get(container_id)
        return None


class FakeExec:
    """The session of a simulated exec: no output, exit code 0."""

    async def write_stdin(self, data: bytes) -> None:
        pass

    async def close_stdin(self) -> None:
        pass

    async def read(self) -> tuple[int, bytes] | None:
        return None

    def resize(self, width: int, height: int) -> None:
        pass

    async def wait(self) -> int:
        return 0

    async def kill(self) -> None:
        pass
