"""Container runtimes behind one CRI-shaped interface; see `interface` for the design."""

from pinnace.agent.runtime.fake import FakeRuntime
from pinnace.agent.runtime.interface import (
    CONTAINER_NAME,
    INIT_CONTAINER,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    ContainerConfig,
    ContainerConfigError,
    ContainerEventHandler,
    ContainerState,
    ContainerStatus,
    LinuxSecurity,
    Mount,
    PodSandboxConfig,
    PodSandboxStatus,
    PortMapping,
    Runtime,
    RuntimeError_,
)

__all__ = [
    "CONTAINER_NAME",
    "INIT_CONTAINER",
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_UID",
    "ContainerConfig",
    "ContainerConfigError",
    "ContainerEventHandler",
    "ContainerState",
    "ContainerStatus",
    "FakeRuntime",
    "LinuxSecurity",
    "Mount",
    "PodSandboxConfig",
    "PodSandboxStatus",
    "PortMapping",
    "Runtime",
    "RuntimeError_",
]
