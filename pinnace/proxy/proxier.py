"""The service proxy of one node: keeps the node's nftables table in step with Services and
EndpointSlices (what the table holds: see `rules`; how it is changed: see `table`).

An API client like every component: informers on Services and EndpointSlices from the
shared factory (slices indexed by their Service); the event handlers only note which
Service changed. One sync loop then writes, in one `nft -f` transaction, the rules of the
changed Services alone (a partial sync: one change costs the same with 10 or 10,000
Services), or the whole table on the first sync, after a failure, and every
`full_sync_period`. Syncs are at least `min_sync_interval` apart, as kube-proxy's
minSyncPeriod: a change after a quiet spell is written at once, a burst of changes (a
Deployment rolling, a slice rewritten) becomes a few writes. A failed write is retried,
as a full sync, after `retry` seconds. Stale chains are deleted by a later sync.

NodePorts and LoadBalancer addresses in 127.0.0.0/8 answer from the host, which needs
`route_localnet` on this node's bridge (set before the write that needs it, since the bridge
appears with the first pod); the table carries the CVE-2020-8558 guard that goes with it.
The table outlives the proxy, as kube-proxy's rules do (the data path is the kernel's; pods
keep being reachable while the proxy restarts); `remove_table` — `pinnace down` — deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.proxy.rules import ServiceRules, delete_ruleset, service_rules, slice_service_key
from pinnace.proxy.table import ServiceTable

log = logging.getLogger(__name__)

__all__ = ["Proxier", "ProxyError", "ProxySettings", "remove_table", "table_name"]

SERVICE_INDEX = "proxy/service"  # EndpointSlices by `namespace/service`


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
    node_name: str = ""  # this node: endpoints with this nodeName are local
    min_sync_interval: float = 0.05  # seconds between the starts of two writes
    full_sync_period: float = 3600.0  # seconds; 0: every write is a full one
    retry: float = 1.0  # seconds before a failed write is tried again
    nft: str = "nft"


async def _nft(nft: str, *args: str, text: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        nft, *(args or ("-f", "-")),
        stdin=asyncio.subprocess.PIPE if text is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(text.encode() if text is not None else None)
    if proc.returncode != 0:
        raise ProxyError(f"nft: {err.decode().strip()}")
    return out.decode()


async def _listed(nft: str, table: str, what: str) -> set[str]:
    """Names of the chains or sets (`what`) of `table` (empty when it does not exist)."""
    text = await _nft(nft, "-j", "-t", "list", what, "ip")
    names: set[str] = set()
    for item in json.loads(text).get("nftables", []):
        for kind in ("chain", "set", "map"):
            obj = item.get(kind)
            if obj and obj.get("table") == table and not obj["name"].startswith("__"):
                names.add(obj["name"])
    return names


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
    await _nft(nft, text=delete_ruleset(table))
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
        self.slices.add_index(SERVICE_INDEX, _slice_service_keys)
        self.table = ServiceTable(settings.table, bridge=settings.bridge)
        self._changed: set[str] = set()  # Service keys whose rules may differ
        self._wake = asyncio.Event()
        self._need_full = True
        self._last_full = 0.0
        self._localnet: set[str] = set()  # Services that answer on 127.0.0.0/8
        self.services.add_handler(on_add=self._on_service, on_delete=self._on_service,
                                  on_update=lambda old, new: self._on_service(new))
        self.slices.add_handler(on_add=self._on_slice, on_delete=self._on_slice,
                                on_update=self._on_slice_update)
        # for whoever watches the proxy: transactions written, and when each Service's
        # rules were last (monotonic clock, at the transaction's end)
        self.syncs = 0
        self.full_syncs = 0
        self.written_at: dict[str, float] = {}

    # -- event handlers: note the Service ------------------------------------------------

    def _note(self, key: str | None) -> None:
        if key:
            self._changed.add(key)
            self._wake.set()

    def _on_service(self, svc: Obj) -> None:
        self._note(key_of(svc))

    def _on_slice(self, es: Obj) -> None:
        self._note(slice_service_key(es))

    def _on_slice_update(self, old: Obj, new: Obj) -> None:
        self._note(slice_service_key(old))  # the label may have moved it
        self._note(slice_service_key(new))

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())
        self._wake.set()
        last_start = -self.settings.min_sync_interval
        while True:
            stale_due = self.table.next_stale_deletion()
            timeout = None if stale_due is None else max(stale_due - time.monotonic(), 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            # at most one write per min_sync_interval; what comes meanwhile waits for it
            await asyncio.sleep(max(last_start + self.settings.min_sync_interval
                                    - time.monotonic(), 0))
            self._wake.clear()  # changes from here on make another sync
            started = time.monotonic()
            try:
                if await self.sync():  # one that wrote nothing does not hold the next back
                    last_start = started
            except (ProxyError, OSError) as e:
                log.error("writing the service table %s failed: %s", self.settings.table, e)
                self._need_full = True
                await asyncio.sleep(self.settings.retry)
                self._wake.set()

    async def sync(self) -> bool:
        """Write what changed since the last sync (or everything: see the module
        docstring), as the informer caches say it should be, in one transaction; False
        when there was nothing to write."""
        s = self.settings
        now = time.monotonic()
        changed, self._changed = self._changed, set()
        full = self._need_full or s.full_sync_period <= 0 or \
            now - self._last_full >= s.full_sync_period
        if full:
            self._localnet.clear()  # filled again by _rules
            keys = {key_of(svc) for svc in self.services.list()}
            desired = {k: r for k in sorted(keys) if (r := self._rules(k)).chains
                       or r.elements}
            existing_chains = await _listed(s.nft, s.table, "chains")
            existing_sets = await _listed(s.nft, s.table, "sets")
            text = self.table.full(desired, existing_chains=existing_chains,
                                   existing_sets=existing_sets, now=now)
            written = keys
        else:
            text = self.table.partial({k: self._rules(k) for k in sorted(changed)}, now=now)
            written = changed
        # before the rules: the first connection from 127.0.0.1 must already be routable
        if self._localnet:
            _route_localnet(s.bridge, True)
        if text:
            try:
                await _nft(s.nft, text=text)
            except ProxyError:
                self._changed |= changed
                raise
            self.syncs += 1
        done = time.monotonic()
        for key in written:
            if key in self.table.services:
                self.written_at[key] = done
            else:
                self.written_at.pop(key, None)
        if full:
            self._need_full = False
            self._last_full = now
            self.full_syncs += 1
        return bool(text)

    def _rules(self, key: str) -> ServiceRules:
        svc = self.services.get(key)
        rules = service_rules(svc, self.slices.by_index(SERVICE_INDEX, key),
                              pod_cidr=self.settings.pod_cidr,
                              node_name=self.settings.node_name)
        if rules.route_localnet:
            self._localnet.add(key)
        else:
            self._localnet.discard(key)
        return rules


def _slice_service_keys(es: Obj) -> list[str]:
    key = slice_service_key(es)
    return [key] if key else []
