"""The `runc` runtime: real pods (a CNI netns each) and containers (runc, an overlayfs
rootfs from the image store's unpacked layers, cgroups), shaped by the CRI interface.

The package reads in the order a pod is made: `state` (the files that are the source of
truth, and their index), `sandbox`, `container`, `streams`, `cleanup`; `runtime` wires
them into `RuncRuntime`. A started container is owned by its monitor process
(`runtime.monitor`), not by any object here: it outlives a restart of the agent.
"""

from pinnace.agent.runtime.runc.runtime import RuncRuntime
from pinnace.agent.runtime.runc.state import CGROUP_ROOT
from pinnace.agent.runtime.runc.streams import LogAttach, RuncAttach, RuncExec

__all__ = ["CGROUP_ROOT", "LogAttach", "RuncAttach", "RuncExec", "RuncRuntime"]
