"""hostPort: a container port published on the node, by DNAT in an nftables table of our own.

One table per data dir, `table ip pinnace-<dir hash>`, always written whole by one
`nft -f` transaction (create-if-absent, delete, define), so every change is atomic and
writing the same mappings twice changes nothing. What it holds comes from one JSON file,
`DATA_DIR/runtime/hostports.json` (sandbox id → pod IP and mappings): the file is the
truth, the table is rebuilt from it on every change (a restarted agent keeps the mappings,
and a table lost meanwhile comes back with the next change). The table is deleted when no
mapping is left.

    chain prerouting  (nat, dstnat)   jump hostports           traffic from elsewhere
    chain output      (nat, -100)     fib daddr type local → jump hostports
                                      (the host's own connections: prerouting never sees them)
    chain hostports   [ip daddr H] tcp|udp|sctp dport P dnat to <pod IP>:<container port>
    chain postrouting (nat, srcnat)   DNATed into the bridge from 127.0.0.0/8 or from a pod:
                                      masquerade (replies must come back through the host)
    chain input       (filter)        drop what arrives from the bridge for 127.0.0.0/8
                                      unless it belongs to a DNATed connection

DNAT of a connection from 127.0.0.1 to a pod needs `route_localnet` (the kernel otherwise
drops packets with a loopback source leaving on, or a loopback destination arriving from, a
non-loopback device). Sysctls are global, so it is set on this data dir's bridge alone
(`net.ipv4.conf.<bridge>.route_localnet`), only while mappings exist; the input rule is
kube-proxy's answer to what it opens (CVE-2020-8558: a pod reaching the host's
localhost-only services). External clients keep their source address, as with Kubernetes'
portmap plugin. Changes are serialized by a flock on `hostports.lock`, so several runtime
objects (or processes) of one data dir never write stale tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pinnace.agent.network.cni import NetworkError, dir_hash

PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class HostPortMapping:
    """One published port: `host_ip:host_port/protocol` → `pod_ip:container_port` (the
    fields of the runtime's `PortMapping`, in its order)."""
    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""  # "" or 0.0.0.0: every address of the node


def _rule(pod_ip: str, m: HostPortMapping) -> str:
    proto = m.protocol.lower()
    daddr = f"ip daddr {m.host_ip} " if m.host_ip not in ("", "0.0.0.0") else ""
    return f"{daddr}{proto} dport {m.host_port} dnat to {pod_ip}:{m.container_port}"


def ruleset(table: str, bridge: str, pod_cidr: str,
            sandboxes: dict[str, dict[str, Any]]) -> str:
    """The `nft -f` text that replaces `table` with the rules of `sandboxes` (as kept in
    the JSON file: id → {"ip", "mappings"}); with none, it just deletes the table."""
    head = f"table ip {table}\ndelete table ip {table}\n"
    rules = [_rule(sb["ip"], HostPortMapping(**m))
             for _, sb in sorted(sandboxes.items(), key=lambda kv: kv[1].get("seq", 0))
             for m in sb["mappings"]]
    if not rules:
        return head
    body = "\n".join(f"    {r}" for r in rules)
    return head + f"""table ip {table} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump hostports
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local jump hostports
  }}
  chain hostports {{
{body}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{bridge}" ct status dnat ip saddr {{ 127.0.0.0/8, {pod_cidr} }} masquerade
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{bridge}" ip daddr 127.0.0.0/8 ct status & dnat != dnat drop
  }}
}}
"""


def _valid(m: HostPortMapping) -> HostPortMapping | None:
    """The mapping as the table can hold it; None for what an `ip` table cannot (IPv6)."""
    if m.protocol.upper() not in PROTOCOLS:
        raise NetworkError(f"hostPort {m.host_port}: unsupported protocol {m.protocol!r}")
    if not (0 < m.host_port < 65536 and 0 < m.container_port < 65536):
        raise NetworkError(f"hostPort {m.host_port}→{m.container_port}: port out of range")
    host_ip = m.host_ip
    if host_ip:
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError:
            raise NetworkError(f"hostPort {m.host_port}: bad hostIP {host_ip!r}") from None
        if addr.version != 4:
            return None
        host_ip = str(addr)
    return HostPortMapping(m.container_port, m.host_port, m.protocol.upper(), host_ip)


class HostPorts:
    """The hostPort table of one data dir (one bridge, one pod CIDR)."""

    def __init__(self, data_dir: str | os.PathLike[str], *, bridge: str, pod_cidr: str,
                 nft: str = "nft") -> None:
        self.table = f"pinnace-{dir_hash(data_dir)}"
        self.bridge = bridge
        self.pod_cidr = str(ipaddress.ip_network(pod_cidr))
        self._root = Path(data_dir) / "runtime"
        self._file = self._root / "hostports.json"
        self._lock_file = self._root / "hostports.lock"
        self._nft = nft

    async def add(self, sandbox_id: str, pod_ip: str, mappings: list[HostPortMapping]
                  ) -> None:
        """Publish the sandbox's mappings (replacing any it had); nothing to do without
        mappings."""
        valid = [v for m in mappings if (v := _valid(m)) is not None]
        if not valid:
            return

        def change(state: dict[str, dict[str, Any]]) -> None:
            seq = max((sb.get("seq", 0) for sb in state.values()), default=0) + 1
            state[sandbox_id] = {"ip": pod_ip, "seq": seq,
                                 "mappings": [asdict(m) for m in valid]}
        await asyncio.to_thread(self._update, change)

    async def remove(self, sandbox_id: str) -> None:
        """Withdraw the sandbox's mappings; safe to repeat."""
        if sandbox_id in self._read():
            await asyncio.to_thread(self._update, lambda s: s.pop(sandbox_id, None))

    def mappings(self) -> dict[str, list[HostPortMapping]]:
        """Sandbox id → its published mappings, as kept in the file."""
        return {sid: [HostPortMapping(**m) for m in sb["mappings"]]
                for sid, sb in self._read().items()}

    async def sync(self) -> None:
        """Rewrite the table from the file (after the table was lost, say)."""
        await asyncio.to_thread(self._update, lambda s: None)

    async def cleanup_all(self) -> None:
        """Delete the table and the file: no hostPort of this data dir is left."""
        await asyncio.to_thread(self._update, lambda s: s.clear())
        self._file.unlink(missing_ok=True)
        self._lock_file.unlink(missing_ok=True)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}

    def _update(self, change: Any) -> None:
        """Under the lock: read the file, change it, write the table, then the file (a
        failed `nft` leaves both as they were)."""
        self._root.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            change(state)
            state = {sid: sb for sid, sb in state.items() if sb["mappings"]}
            self._apply(state)
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self._file)

    def _apply(self, state: dict[str, dict[str, Any]]) -> None:
        if not state and shutil.which(self._nft) is None:
            return  # no nftables here: there cannot be a table to delete
        if state:  # before the rules: the first connection must already be routable
            self._route_localnet(True)
        proc = subprocess.run([self._nft, "-f", "-"],
                              input=ruleset(self.table, self.bridge, self.pod_cidr, state),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetworkError(f"nft: {proc.stderr.strip()}")
        if not state and not self._service_table_exists():
            self._route_localnet(False)

    def _service_table_exists(self) -> bool:
        """The Service proxy's table of this data dir (`pinnace-svc-<dir hash>`, see
        proxy/proxier.py) answers NodePorts on 127.0.0.1 through this bridge too, so
        route_localnet stays on while it exists (its own guard rule goes with it)."""
        svc_table = self.table.replace("pinnace-", "pinnace-svc-", 1)
        return subprocess.run([self._nft, "list", "table", "ip", svc_table],
                              capture_output=True).returncode == 0

    def _route_localnet(self, on: bool) -> None:
        path = Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet")
        with contextlib.suppress(FileNotFoundError):  # no bridge yet/any more: nothing to do
            path.write_text("1" if on else "0")
