"""The container runtime interface the node agent drives, shaped like Kubernetes' CRI.

A pod is a *sandbox* (its network identity: one IP) holding *containers*. The
agent is stateless about containers: each sync lists what the runtime has for
a pod (by the labels it set: pod uid, container name, attempt) and decides
from that, so a restarted agent picks up where the last one left off.

Backends: `fake` (no processes; for scale and control-plane tests) and `runc`
(real containers). Every method is async because real backends do I/O; `subscribe`
delivers container events (CRI's GetContainerEvents) so the agent reacts to an
exit without polling.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# labels the agent puts on sandboxes and containers (the names kubelet uses)
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
# annotation on an init container's config: a simulated one completes at once
INIT_CONTAINER = "pinnace.io/init-container"


class ContainerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PortMapping:
    """A container port published on the node (a container's `hostPort`)."""
    container_port: int
    host_port: int
    protocol: str = "TCP"  # TCP, UDP or SCTP
    host_ip: str = ""  # "" = every address of the node


@dataclass(frozen=True)
class DNSConfig:
    """The pod's resolver configuration (CRI's DNSConfig), which the runtime writes as the
    pod's /etc/resolv.conf; the agent computes it from dnsPolicy and dnsConfig."""
    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # "ndots:5", "edns0", ...

    def resolv_conf(self) -> str:
        lines = [f"nameserver {s}" for s in self.servers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class PodSandboxConfig:
    pod_uid: str
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    port_mappings: list[PortMapping] = field(default_factory=list)
    host_network: bool = False  # share the node's network namespace: no netns, no pod IP
    dns: DNSConfig | None = None  # None: a copy of the node's /etc/resolv.conf


@dataclass(frozen=True)
class PodSandboxStatus:
    id: str
    pod_uid: str
    ready: bool
    ip: str
    created_at: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mount:
    """A host path (a prepared volume, or a file of one for subPath) seen in the container."""
    host_path: str
    container_path: str
    readonly: bool = False


@dataclass(frozen=True)
class LinuxSecurity:
    """The pod's and container's securityContext, merged (the container's wins)."""
    run_as_user: int | None = None  # None: the image's user
    run_as_group: int | None = None
    run_as_non_root: bool = False
    supplemental_groups: tuple[int, ...] = ()
    privileged: bool = False
    add_capabilities: tuple[str, ...] = ()  # CAP_ names
    drop_capabilities: tuple[str, ...] = ()  # CAP_ names, or ALL
    read_only_root: bool = False
    no_new_privileges: bool = False


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    image: str
    attempt: int = 0  # the restart count this container is created for
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    working_dir: str = ""  # empty: the image's
    memory_limit: int | None = None  # bytes (resources.limits.memory)
    cpu_limit_millis: int | None = None  # resources.limits.cpu in millicores
    stdin: bool = False  # the container's stdin stays open for attach
    stdin_once: bool = False  # close it when the first attached client is done with it
    tty: bool = False
    security: LinuxSecurity = field(default_factory=LinuxSecurity)


@dataclass(frozen=True)
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    image: str
    image_id: str
    attempt: int
    state: ContainerState
    created_at: float
    started_at: float = 0.0  # wall-clock seconds; 0 = never
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""  # Completed, Error, OOMKilled, …
    message: str = ""
    labels: dict[str, str] = field(default_factory=dict)


ContainerEventHandler = Callable[[str], None]
"""Called with a pod uid whenever one of its containers changes state on its own."""


class RuntimeError_(Exception):
    """A runtime operation failed (the agent retries the sync later).

    RuntimeError_                 the runtime could not do it: the kubelet's
    │                             CreateContainerError for a create
    └── ContainerConfigError      the node refuses the container as specified (runAsNonRoot
                                  with an image that runs as root): CreateContainerConfigError
    """


class ContainerConfigError(RuntimeError_):
    """The container's configuration cannot run on this node; only a new spec helps."""


class ExecSession(Protocol):
    """A command running in a container with its streams open (CRI's Exec, kept in the
    process rather than served by the runtime). `read` gives output chunks as
    (1 stdout | 2 stderr, data) — the exec stream channel numbers — and None once all
    output has been read; with a tty everything arrives on 1."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def read(self) -> tuple[int, bytes] | None: ...
    def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int: ...
    async def kill(self) -> None: ...


class Runtime(Protocol):
    name: str
    version: str

    # sandboxes
    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str: ...
    async def stop_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus: ...
    async def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[PodSandboxStatus]: ...

    # containers
    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, grace_period: float) -> None: ...
    async def remove_container(self, container_id: str) -> None: ...
    async def container_status(self, container_id: str) -> ContainerStatus: ...
    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]: ...

    # streaming
    async def exec_sync(self, container_id: str, cmd: list[str], time_limit: float
                        ) -> tuple[int, bytes, bytes]: ...
    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool
                   ) -> ExecSession: ...
    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession:
        """Attach to a running container's own process (CRI's Attach): its output from now
        on, and `stdin` writes its stdin (when the container has one). The session's
        `wait` returns the exit code once the container exits; `kill` only detaches.
        `tty` is the client's wish; whether there is a terminal is the container's."""
        ...
    async def container_logs(self, container_id: str) -> bytes: ...
    def log_path(self, container_id: str) -> Path | None:
        """The container's CRI-format log file; None when the backend keeps no logs."""
        ...

    def subscribe(self, handler: ContainerEventHandler) -> None: ...
