"""What `pinnace down` calls: remove everything a data dir's runtime made on the host.

`cleanup_all` stops and removes every container (then the half-made ones, without
container.json, whose overlay may still be mounted), every sandbox's netns, the hostPort
table, the bridge and the data dir's cgroups, and runs to the end even when parts fail:
what is left after it is what `tests/leftovers.py` reports.
"""

from __future__ import annotations

import contextlib
import shutil

from pinnace.agent.network import HostPorts, NetworkError, PodNetwork
from pinnace.agent.runtime.interface import RuntimeError_
from pinnace.agent.runtime.runc.container import Containers
from pinnace.agent.runtime.runc.state import (
    RuncState,
    mounted,
    read_json,
    remove_cgroup,
    run,
)


async def cleanup_all(state: RuncState, containers: Containers, network: PodNetwork,
                      hostports: HostPorts) -> None:
    for cid, _ in state.container_records():
        with contextlib.suppress(RuntimeError_):
            await containers.stop(cid, 0)
        with contextlib.suppress(RuntimeError_, OSError):
            await containers.remove(cid)
    for d in (state.root / "containers").iterdir():  # half-made ones without container.json
        rootfs = d / "bundle" / "rootfs"
        if mounted(rootfs):
            await run("umount", "-l", str(rootfs), check=False)
        shutil.rmtree(d, ignore_errors=True)
    for d in (state.root / "sandboxes").iterdir():
        if not (read_json(d / "sandbox.json") or {}).get("host_network"):
            with contextlib.suppress(NetworkError):
                await network.delete(d.name)
        shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(NetworkError, OSError):
        await hostports.cleanup_all()
    with contextlib.suppress(NetworkError):
        await network.cleanup_all()
    remove_cgroup(f"/pinnace/{state.hash}")
    remove_cgroup("/pinnace")  # only if empty: other data dirs may use it
    state.load_containers()
    state.load_sandboxes()
