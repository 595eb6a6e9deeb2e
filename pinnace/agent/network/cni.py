"""Pod networking: one named network namespace per sandbox, wired by the standard CNI
plugins (Debian's `containernetworking-plugins` in /usr/lib/cni).

Every name is derived from the data dir, so two agents on one machine (or a test next
to a running cluster) never collide: the netns is `pinnace-<dir hash>-<sandbox prefix>`,
the bridge `pn<dir hash>`, the host-local IPAM state lives in `DATA_DIR/runtime/ipam`.
ADD runs `loopback` (lo up) and `bridge` (at once; veth into the bridge, `isGateway` so the
bridge holds the pod CIDR's first address, host-local IPAM on the node's pod CIDR,
no masquerade: iptables stays out of it). DEL releases the address; the netns goes with
`ip netns delete`. The bridge outlives DEL (as CNI intends); `cleanup_all` removes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import shutil
from pathlib import Path

CNI_PATHS = ("/usr/lib/cni", "/opt/cni/bin")
NETNS_DIR = Path("/run/netns")
CNI_VERSION = "1.0.0"


class NetworkError(Exception):
    """A CNI plugin or `ip netns` failed."""


def dir_hash(data_dir: str | os.PathLike[str]) -> str:
    """A short stable hash of a data dir: the suffix of every host-global name."""
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]


def bridge_name(data_dir: str | os.PathLike[str]) -> str:
    """The pod bridge of a data dir's node (`pn<dir hash>`)."""
    return f"pn{dir_hash(data_dir)}"


async def _run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
               ) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise NetworkError(f"{' '.join(args[:3])}: {(err or out).decode().strip()}")
    return out


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _netns_names(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return [e.name for e in NETNS_DIR.iterdir() if e.name.startswith(prefix)]


class PodNetwork:
    """The CNI network of one node agent (one data dir, one pod CIDR)."""

    def __init__(self, data_dir: str | os.PathLike[str], pod_cidr: str) -> None:
        self.pod_cidr = str(ipaddress.ip_network(pod_cidr))
        self._hash = dir_hash(data_dir)
        self.bridge = bridge_name(data_dir)
        self.network_name = f"pinnace-{self._hash}"
        self._ipam_dir = Path(data_dir) / "runtime" / "ipam"
        self._cni_path = ":".join(p for p in CNI_PATHS if os.path.isdir(p))

    def netns_name(self, sandbox_id: str) -> str:
        return f"pinnace-{self._hash}-{sandbox_id[:12]}"

    def netns_path(self, sandbox_id: str) -> str:
        return str(NETNS_DIR / self.netns_name(sandbox_id))

    def _bridge_conf(self) -> dict:
        return {
            "cniVersion": CNI_VERSION, "name": self.network_name, "type": "bridge",
            "bridge": self.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_cidr}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self._ipam_dir)},
        }

    def _loopback_conf(self) -> dict:
        return {"cniVersion": CNI_VERSION, "name": "loopback", "type": "loopback"}

    async def _plugin(self, command: str, conf: dict, sandbox_id: str, ifname: str,
                      netns: str | None) -> dict:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": sandbox_id, "CNI_IFNAME": ifname,
               "CNI_PATH": self._cni_path, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if netns:
            env["CNI_NETNS"] = netns
        plugin = shutil.which(conf["type"], path=self._cni_path)
        if plugin is None:
            raise NetworkError(f"CNI plugin {conf['type']} not found in {self._cni_path}")
        out = await _run(plugin, stdin=json.dumps(conf).encode(), env=env)
        return json.loads(out) if out.strip() else {}

    async def add(self, sandbox_id: str) -> str:
        """Create the sandbox's netns, attach it; returns the pod IP. Undoes itself on
        failure."""
        name = self.netns_name(sandbox_id)
        self._ipam_dir.mkdir(parents=True, exist_ok=True)
        await _run("ip", "netns", "add", name)
        try:
            path = self.netns_path(sandbox_id)
            # independent (lo, eth0): the two plugins run at once
            _, result = await asyncio.gather(
                self._plugin("ADD", self._loopback_conf(), sandbox_id, "lo", path),
                self._plugin("ADD", self._bridge_conf(), sandbox_id, "eth0", path))
            ips = result.get("ips") or []
            if not ips:
                raise NetworkError(f"bridge plugin returned no IP: {result}")
            return ips[0]["address"].split("/")[0]
        except BaseException:
            await self.delete(sandbox_id)
            raise

    async def delete(self, sandbox_id: str) -> None:
        """Release the IP and delete the netns; safe to repeat."""
        path = self.netns_path(sandbox_id)
        exists = _exists(path)
        try:
            await self._plugin("DEL", self._bridge_conf(), sandbox_id, "eth0",
                               path if exists else None)
        finally:
            if exists:
                await _run("ip", "netns", "delete", self.netns_name(sandbox_id))

    async def cleanup_all(self) -> None:
        """Every netns, the bridge and the IPAM state of this data dir."""
        for name in _netns_names(f"pinnace-{self._hash}-"):
            try:
                await _run("ip", "netns", "delete", name)
            except NetworkError:
                pass
        if _exists(f"/sys/class/net/{self.bridge}"):
            await _run("ip", "link", "delete", self.bridge)
        shutil.rmtree(self._ipam_dir, ignore_errors=True)
