"""`pinnace up --nodes N`: N real nodes on one machine, each extra one joined over the
network exactly as a remote `pinnace agent` joins.

    host netns                                  netns pinnace-node-<h>-2 (node 2)
    ┌──────────────────────────────┐             ┌──────────────────────────────┐
    │ pinnace up: API, controllers │  bridge     │ pinnace agent --server       │
    │ node 1 (kubelet, proxy, DNS) │  pnl<h>     │   https://10.43.0.1:PORT     │
    │ 10.43.0.1/24 ────────────────┼──veth──────►│ eth0 10.43.0.2/24            │
    │ routes: 10.42.x/24 via .2 …  │             │ its own pod bridge, nft, DNS │
    └──────────────────────────────┘             └──────────────────────────────┘

Node 1 stays in the host's network namespace, as `pinnace up` runs it alone, with the
bridge's first address as its InternalIP; node i (2…N) is a `pinnace agent` process in
the network namespace `pinnace-node-<dir hash>-<i>`, with address i of the bridge's
subnet on a veth into the host bridge `pnl<dir hash>`, its data dir `DATA_DIR/nodes/<name>`
and the token of DATA_DIR/node-token. The agent runs under `nsenter --net` only, so it
shares the host's mount namespace: its containers' mounts are where `pinnace down` finds
them. Every name on the host carries the data dir's hash, and inside a node's namespace
its own data dir's, so nothing collides. `pinnace down` stops the agents, runs each
node's own `down` inside its namespace, then deletes the namespaces (their veths go with
them) and the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pinnace.agent.network import dir_hash

DEFAULT_NODES_CIDR = "10.43.0.0/24"
NODES_DIR = "nodes"
AGENT_PID_FILE = "agent.pid"
AGENT_LOG = "agent.log"
NETNS_FILE = "netns"  # in a node's data dir: the name of its network namespace


class LocalNodesError(Exception):
    """Setting up the nodes' network failed; the message says which command."""


@dataclass(frozen=True)
class LocalNode:
    index: int  # 2…N
    name: str
    ip: str
    netns: str
    data_dir: Path


def _ip_cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise LocalNodesError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


class LocalNodes:
    """The extra nodes of one data dir: their network, their agent processes."""

    def __init__(self, data_dir: Path, count: int, *, cidr: str = DEFAULT_NODES_CIDR,
                 name_prefix: str = "node") -> None:
        self.data_dir = Path(data_dir)
        self.count = count
        self.network = ipaddress.ip_network(cidr)
        hosts = list(self.network.hosts())
        if count > len(hosts):
            raise LocalNodesError(f"{cidr} has room for {len(hosts)} nodes, not {count}")
        self.host_ip = str(hosts[0])
        h = dir_hash(self.data_dir)
        self.bridge = f"pnl{h}"
        self.nodes = [LocalNode(i, f"{name_prefix}{i}", str(hosts[i - 1]),
                                f"pinnace-node-{h}-{i}",
                                self.data_dir / NODES_DIR / f"{name_prefix}{i}")
                      for i in range(2, count + 1)]
        self._procs: list[asyncio.subprocess.Process] = []

    def setup(self) -> None:
        """The host bridge with the first address, and each node's namespace wired to it
        (idempotent: a second `up` finds what the first made)."""
        prefix = self.network.prefixlen
        if not Path(f"/sys/class/net/{self.bridge}").exists():
            _ip_cmd("link", "add", self.bridge, "type", "bridge")
        _ip_cmd("addr", "replace", f"{self.host_ip}/{prefix}", "dev", self.bridge)
        _ip_cmd("link", "set", self.bridge, "up")
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            (node.data_dir / NETNS_FILE).write_text(node.netns + "\n")
            veth = f"{self.bridge[:11]}v{node.index}"
            if node.netns not in _ip_cmd("netns", "list").stdout.split():
                _ip_cmd("netns", "add", node.netns)
            if not Path(f"/sys/class/net/{veth}").exists():
                _ip_cmd("link", "add", veth, "type", "veth", "peer", "name", "eth0",
                        "netns", node.netns)
            _ip_cmd("link", "set", veth, "master", self.bridge, "up")
            ns = ("-n", node.netns)
            _ip_cmd(*ns, "link", "set", "lo", "up")
            _ip_cmd(*ns, "addr", "replace", f"{node.ip}/{prefix}", "dev", "eth0")
            _ip_cmd(*ns, "link", "set", "eth0", "up")
            _ip_cmd(*ns, "route", "replace", "default", "via", self.host_ip)
            subprocess.run(["ip", "netns", "exec", node.netns, "sysctl", "-qw",
                            "net.ipv4.ip_forward=1"], capture_output=True, check=False)

    async def start_agents(self, server_url: str, token_file: Path, *extra: str) -> None:
        """One `pinnace agent` per extra node, in its namespace; logs in its data dir."""
        for node in self.nodes:
            log = _prepare(self.data_dir, node)
            try:
                proc = await asyncio.create_subprocess_exec(
                    "nsenter", f"--net=/run/netns/{node.netns}", "--",
                    sys.executable, "-m", "pinnace.cli", "agent", "--server", server_url,
                    "--token-file", str(token_file), "--node-name", node.name, "--node-ip", node.ip,
                    "--data-dir", str(node.data_dir), *extra,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            finally:
                log.close()
            (node.data_dir / AGENT_PID_FILE).write_text(f"{proc.pid}\n")
            self._procs.append(proc)

    async def stop_agents(self, within: float = 10.0) -> None:
        """SIGTERM every agent this process started; SIGKILL what still runs after
        `within` seconds."""
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                await asyncio.wait_for(proc.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._procs.clear()


def _prepare(data_dir: Path, node: LocalNode) -> io.BufferedWriter:
    """The node's data dir, with node 1's registry mirrors; its log, opened to append."""
    node.data_dir.mkdir(parents=True, exist_ok=True)
    registries = data_dir / "registries.yaml"
    if registries.exists() and not (node.data_dir / "registries.yaml").exists():
        (node.data_dir / "registries.yaml").write_bytes(registries.read_bytes())
    return open(node.data_dir / AGENT_LOG, "ab")


def agent_pid(node_dir: Path) -> int | None:
    """The pid of the agent of node_dir, if its pid file names a `pinnace agent` of it."""
    try:
        pid = int((node_dir / AGENT_PID_FILE).read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"agent" in argv and str(node_dir).encode() in argv else None


def teardown(data_dir: Path) -> list[str]:
    """`pinnace down` for the extra nodes of data_dir: agents stopped, each node's own
    `down` run inside its namespace, namespaces and the bridge deleted. Returns what
    each node's `down` said."""
    h = dir_hash(data_dir)
    said: list[str] = []
    nodes_dir = Path(data_dir) / NODES_DIR
    namespaces = [n for n in _ip_cmd("netns", "list", check=False).stdout.split()
                  if n.startswith(f"pinnace-node-{h}-")]
    for node_dir in sorted(nodes_dir.iterdir()) if nodes_dir.is_dir() else []:
        pid = agent_pid(node_dir)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                _wait_gone(pid, 10.0)
        try:
            netns: str | None = (node_dir / NETNS_FILE).read_text().strip()
        except OSError:
            netns = None
        if netns not in namespaces:
            netns = None
        command = [sys.executable, "-m", "pinnace.cli", "down", "--data-dir", str(node_dir)]
        if netns is not None:
            command = ["nsenter", f"--net=/run/netns/{netns}", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        said.append(f"{node_dir.name}: {(result.stdout or result.stderr).strip()}")
    for netns in namespaces:
        _ip_cmd("netns", "delete", netns, check=False)
    if Path(f"/sys/class/net/pnl{h}").exists():
        _ip_cmd("link", "delete", f"pnl{h}", check=False)
    return said


def _wait_gone(pid: int, within: float) -> None:
    import time
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"]):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
