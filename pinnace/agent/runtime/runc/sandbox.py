"""Pod sandboxes under runc: a network namespace (CNI), published hostPorts, and the pod's
/etc/hosts and /etc/resolv.conf, which every container of the pod mounts (the resolv.conf
the agent computed from the pod's dnsPolicy and dnsConfig, else a copy of the node's).

A sandbox is a directory holding sandbox.json; it runs no process of its own (no pause
container): the netns is a bind mount that CNI made, and containers join it by path.
Other sandboxes publish their hostPorts while they are ready: added with the sandbox,
withdrawn when it stops. A hostNetwork sandbox has no netns and runs no CNI: its IP is ""
(the agent reports the node's IP), its containers join no network namespace (the
host's), see the node's hostname and get a copy of the node's /etc/hosts, as the kubelet
gives them. Stopping a sandbox stops its containers and releases its network (it stays
listed, not ready); removing it removes its containers, its cgroups and its directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import time
from pathlib import Path

from pinnace.agent.network import HostPortMapping, HostPorts, NetworkError, PodNetwork
from pinnace.agent.runtime.interface import (
    POD_UID,
    PodSandboxConfig,
    PodSandboxStatus,
    RuntimeError_,
)
from pinnace.agent.runtime.runc.container import Containers
from pinnace.agent.runtime.runc.state import (
    Record,
    RuncState,
    read_json,
    read_text,
    remove_cgroup,
    remove_tree,
    write_json,
)


def _hosts(config: PodSandboxConfig, ip: str) -> str:
    if config.host_network:
        return read_text(Path("/etc/hosts"))
    return ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{ip}\t{config.name}\n")


def _status(sb: Record) -> PodSandboxStatus:
    return PodSandboxStatus(sb["id"], sb["pod_uid"], sb["ready"], sb["ip"], sb["created_at"],
                            sb["labels"])


class Sandboxes:
    def __init__(self, state: RuncState, containers: Containers, network: PodNetwork,
                 hostports: HostPorts) -> None:
        self._state = state
        self._containers = containers
        self._network = network
        self._hostports = hostports

    async def run(self, config: PodSandboxConfig) -> str:
        sid = secrets.token_hex(32)
        d = self._state.sandbox_dir(sid)
        d.mkdir(parents=True)
        host = config.host_network
        # a hostNetwork pod's ports are the host's already: nothing to publish
        mappings = [] if host else [HostPortMapping(m.container_port, m.host_port, m.protocol,
                                                    m.host_ip) for m in config.port_mappings]
        ip = ""
        try:
            if not host:
                ip = await self._network.add(sid)
                await self._hostports.add(sid, ip, mappings)
        except NetworkError as e:
            if ip:
                with contextlib.suppress(NetworkError):
                    await self._network.delete(sid)
            shutil.rmtree(d, ignore_errors=True)
            raise RuntimeError_(f"pod network: {e}") from None
        (d / "hosts").write_text(_hosts(config, ip))
        (d / "resolv.conf").write_text(config.dns.resolv_conf() if config.dns is not None
                                       else read_text(Path("/etc/resolv.conf")))
        write_json(d / "sandbox.json", {
            "id": sid, "pod_uid": config.pod_uid, "name": config.name,
            "namespace": config.namespace, "labels": {**config.labels, POD_UID: config.pod_uid},
            "annotations": config.annotations, "ip": ip, "ready": True,
            "host_network": host, "netns": "" if host else self._network.netns_path(sid),
            "port_mappings": [dataclasses.asdict(m) for m in mappings],
            "created_at": time.time()})
        self._state.index.add_sandbox(sid, config.pod_uid)
        return sid

    async def stop(self, sandbox_id: str) -> None:
        try:
            sb = self._state.sandbox(sandbox_id)
        except RuntimeError_:
            return
        for cid in self._state.sandbox_containers(sandbox_id):
            await self._containers.stop(cid, 0)
        try:
            await self._hostports.remove(sandbox_id)
            if not sb.get("host_network"):
                await self._network.delete(sandbox_id)
        except NetworkError as e:
            raise RuntimeError_(f"pod network: {e}") from None
        if sb["ready"]:
            sb["ready"] = False
            write_json(self._state.sandbox_dir(sandbox_id) / "sandbox.json", sb)

    async def remove(self, sandbox_id: str) -> None:
        st = self._state
        d = st.sandbox_dir(sandbox_id)
        if not d.exists():
            st.index.drop_sandbox(sandbox_id)
            return
        sb = read_json(d / "sandbox.json")
        await self.stop(sandbox_id)
        for cid in st.sandbox_containers(sandbox_id):
            await self._containers.remove(cid)
        if sb is not None:
            remove_cgroup(st.pod_cgroup(sb["pod_uid"]))
        await remove_tree(d)
        if not (d / "sandbox.json").exists():
            st.index.drop_sandbox(sandbox_id)

    async def status(self, sandbox_id: str) -> PodSandboxStatus:
        return _status(self._state.sandbox(sandbox_id))

    async def list(self, pod_uid: str | None = None) -> list[PodSandboxStatus]:
        st = self._state
        if pod_uid is None:
            st.load_sandboxes()
            sids = list(st.index.sandbox_pod)
        else:
            sids = list(st.index.pod_sandboxes.get(pod_uid, ()))
        out = []
        for sid in sorted(sids):
            sb = read_json(st.sandbox_dir(sid) / "sandbox.json")  # fresh: `ready`
            if sb is None:  # removed by another runtime object
                st.index.drop_sandbox(sid)
            else:
                out.append(_status(sb))
        return out
