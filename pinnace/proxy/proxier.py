"""The service proxy of one node: keeps the node's nftables table in step with Services and
EndpointSlices (what the table holds: see `rules`).

An API client like every component: informers on Services and EndpointSlices from the
shared factory; their event handlers only note that something changed. One sync loop then
waits `debounce` seconds (a burst of changes — a Deployment rolling, a slice rewritten —
becomes one write), computes the whole table from the informer caches and writes it with
one `nft -f` transaction. A failed write is retried after `retry` seconds. Whole-table
rewrites only, for now: kube-proxy's incremental updates (only the chains and elements that
changed) are not done yet.

NodePorts answer on 127.0.0.1 too, which needs `route_localnet` on this node's bridge (set on
every sync while the table has NodePorts, since the bridge appears with the first pod); the
table carries the CVE-2020-8558 guard that goes with it. The table outlives the proxy, as
kube-proxy's rules do (the data path is the kernel's; pods keep being reachable while the
proxy restarts); `remove_table` — `pinnace down` — deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.proxy.rules import delete_ruleset, ruleset, service_ports

log = logging.getLogger(__name__)

__all__ = ["Proxier", "ProxyError", "ProxySettings", "remove_table", "table_name"]


class ProxyError(Exception):
    """`nft` refused the table."""


def table_name(dir_hash: str) -> str:
    """The proxy's table for a data dir (`dir_hash`: the suffix of its host-global names;
    the hostPort table of the same dir is `pinnace-<dir_hash>`)."""
    return f"pinnace-svc-{dir_hash}"


@dataclass(frozen=True, kw_only=True)
class ProxySettings:
    table: str  # see table_name()
    bridge: str  # this node's pod bridge
    pod_cidr: str  # this node's pods: ClusterIP traffic from elsewhere is masqueraded
    debounce: float = 0.05  # seconds from a change to the write
    retry: float = 1.0  # seconds before a failed write is tried again
    nft: str = "nft"


async def _nft(nft: str, text: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        nft, "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate(text.encode())
    if proc.returncode != 0:
        raise ProxyError(f"nft: {err.decode().strip()}")


def _route_localnet(bridge: str, on: bool) -> None:
    path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    with contextlib.suppress(FileNotFoundError):  # no bridge (yet, or any more)
        path.write_text("1" if on else "0")


async def remove_table(table: str, *, bridge: str, hostport_table: str = "",
                       nft: str = "nft") -> None:
    """Delete the proxy's table; nothing else of the host's ruleset is touched. The bridge's
    `route_localnet` goes off unless `hostport_table` (which needs it too) still exists."""
    if shutil.which(nft) is None:
        return  # no nftables here: there cannot be a table
    await _nft(nft, delete_ruleset(table))
    if hostport_table:
        proc = await asyncio.create_subprocess_exec(
            nft, "list", "table", "ip", hostport_table, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        if await proc.wait() == 0:
            return
    _route_localnet(bridge, False)


class Proxier:
    """The Service data path of this node (the component: `async run()`)."""

    def __init__(self, client: Client, factory: InformerFactory,
                 settings: ProxySettings) -> None:
        self.client = client
        self.settings = settings
        self.services = factory.informer("v1", "Service")
        self.slices = factory.informer("discovery.k8s.io/v1", "EndpointSlice")
        self._changed = asyncio.Event()
        for inf in (self.services, self.slices):
            inf.add_handler(on_add=self._on_event, on_delete=self._on_event,
                            on_update=lambda old, new: self._changed.set())
        self.syncs = 0  # tables written, for whoever watches the proxy

    def _on_event(self, _obj: object) -> None:
        self._changed.set()

    async def run(self) -> None:
        await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())
        self._changed.set()
        while True:
            await self._changed.wait()
            await asyncio.sleep(self.settings.debounce)
            self._changed.clear()  # changes from here on make another sync
            try:
                await self.sync()
            except (ProxyError, OSError) as e:
                log.error("writing the service table %s failed: %s", self.settings.table, e)
                await asyncio.sleep(self.settings.retry)
                self._changed.set()

    async def sync(self) -> None:
        """Write the whole table, as the informer caches say it should be, in one
        transaction."""
        s = self.settings
        services, slices = self.services.list(), self.slices.list()
        # before the rules: the first connection from 127.0.0.1 must already be routable
        if any(sp.node_port and sp.endpoints for sp in service_ports(services, slices)):
            _route_localnet(s.bridge, True)
        await _nft(s.nft, ruleset(s.table, services=services, slices=slices,
                                  pod_cidr=s.pod_cidr, bridge=s.bridge))
        self.syncs += 1
