"""Pod traffic between nodes, flannel host-gw style: a host route to every other node's
pod CIDR via that node's InternalIP, kept in step with the Node objects.

    10.42.1.0/24 via 10.43.0.2   (node b's pod CIDR via node b's address)
    10.42.2.0/24 via 10.43.0.3

Nodes must share one L2 segment (each InternalIP directly reachable): a route via an
address that is not on a connected network is refused by the kernel and logged. There is
no overlay. The routes this node made are listed in `DATA_DIR/runtime/routes.json`, so
they are found again after a restart (stale ones removed) and by `pinnace down`, and
nothing else in the routing table is touched (other clusters on this machine included).

Traffic from this node's pods to addresses outside the cluster CIDR and the nodes' pod
CIDRs is masqueraded (an nftables table `pinnace-net-<dir hash>`, rewritten when the set
of pod CIDRs changes), as flannel's `ipMasq` does: replies from outside the cluster come
back to the node, which alone knows the pod; pod-to-pod traffic keeps its source. IP forwarding is
switched on (the kernel's default in a new network namespace is off).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from pathlib import Path

from pinnace.agent.network.cni import NetworkError, _run, dir_hash
from pinnace.api.types import Obj
from pinnace.client.factory import InformerFactory

log = logging.getLogger(__name__)

ROUTES_FILE = "routes.json"
CLUSTER_CIDR = "10.42.0.0/16"


def node_route(node: Obj) -> tuple[str, str] | None:
    """(pod CIDR, InternalIP) of a node, None when it lacks either."""
    cidr = (node.get("spec") or {}).get("podCIDR")
    ip = next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
               if a.get("type") == "InternalIP"), None)
    if not cidr or not ip:
        return None
    return str(ipaddress.ip_network(cidr, strict=False)), ip


def desired_routes(nodes: list[Obj], own_name: str) -> dict[str, str]:
    """pod CIDR -> next hop for every other node with both (loopback nodes excepted:
    they are on this machine and reach nothing else)."""
    out: dict[str, str] = {}
    for node in nodes:
        if node["metadata"]["name"] == own_name:
            continue
        route = node_route(node)
        if route is not None and not ipaddress.ip_address(route[1]).is_loopback:
            out[route[0]] = route[1]
    return out


def masquerade_table(table: str, pod_cidr: str, inside: list[str]) -> str:
    """Pods' traffic to anywhere but `inside` (the cluster CIDR, this node's and every
    node's pod CIDR: pod to pod keeps its source address) leaves masqueraded."""
    # overlapping intervals are merged first (an other node's CIDR in the cluster CIDR)
    merged = ipaddress.collapse_addresses(ipaddress.ip_network(c) for c in inside)
    cidrs = ", ".join(str(n) for n in merged)
    return f"""table ip {table}
delete table ip {table}
table ip {table} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {pod_cidr} ip daddr != {{ {cidrs} }} fib daddr type != local masquerade
  }}
}}
"""


class NodeRoutes:
    """The host-gw routes and the masquerade of one node (a component: `run()`)."""

    def __init__(self, factory: InformerFactory, *, node_name: str, data_dir: Path,
                 pod_cidr: str, cluster_cidr: str = CLUSTER_CIDR) -> None:
        self.node_name = node_name
        self.pod_cidr = pod_cidr
        self.cluster_cidr = cluster_cidr
        self.table = f"pinnace-net-{dir_hash(data_dir)}"
        self._file = Path(data_dir) / "runtime" / ROUTES_FILE
        self.nodes = factory.informer("v1", "Node")
        self._wake = asyncio.Event()
        self._failed: set[str] = set()
        self._masquerade = ""  # the table as last written
        self.nodes.add_handler(on_add=lambda _n: self._wake.set(),
                               on_update=lambda _o, _n: self._wake.set(),
                               on_delete=lambda _n: self._wake.set())

    async def run(self) -> None:
        await self.nodes.wait_synced()
        _enable_forwarding()
        while True:
            self._wake.clear()
            await self.sync()
            await self._wake.wait()
            await asyncio.sleep(0.05)  # a burst of Node updates is one sync

    async def sync(self) -> None:
        want = desired_routes(self.nodes.list(), self.node_name)
        await self._write_masquerade([self.cluster_cidr, self.pod_cidr, *want])
        have = made_routes(self._file)
        for cidr, via in have.items():
            if want.get(cidr) != via:
                await self._ip("route", "del", cidr, "via", via)
        made = {}
        for cidr, via in want.items():
            if await self._ip("route", "replace", cidr, "via", via):
                made[cidr] = via
        self._file.parent.mkdir(parents=True, exist_ok=True)
        self._file.write_text(json.dumps(made))

    async def _write_masquerade(self, inside: list[str]) -> None:
        text = masquerade_table(self.table, self.pod_cidr, inside)
        if text == self._masquerade:
            return
        try:
            await _run("nft", "-f", "-", stdin=text.encode())
            self._masquerade = text
        except (NetworkError, OSError) as e:
            log.warning("pod masquerade table: %s", e)

    async def _ip(self, *args: str) -> bool:
        key = " ".join(args)
        try:
            await _run("ip", *args)
            self._failed.discard(key)
            return True
        except NetworkError as e:
            if key not in self._failed and args[1] != "del":  # once, not at every heartbeat
                log.warning("ip %s: %s (are the nodes on one L2 segment?)", key, e)
                self._failed.add(key)
            return False


def _enable_forwarding() -> None:
    try:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1\n")
    except OSError as e:
        log.warning("cannot switch on IP forwarding: %s", e)


def made_routes(path: Path) -> dict[str, str]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


async def remove_routes(data_dir: Path) -> None:
    """`pinnace down`: the masquerade table and the routes data_dir's node made."""
    path = Path(data_dir) / "runtime" / ROUTES_FILE
    commands = [("nft", "delete", "table", "ip", f"pinnace-net-{dir_hash(data_dir)}")]
    commands += [("ip", "route", "del", cidr, "via", via)
                 for cidr, via in made_routes(path).items()]
    for args in commands:
        try:
            await _run(*args)
        except (NetworkError, OSError):
            pass
    path.unlink(missing_ok=True)
