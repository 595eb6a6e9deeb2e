"""The agent's API servers follow the cluster's, as k3s' agent load balancer does.

`pinnace agent --server URL[,URL…]` starts with the servers it is given. The Endpoints
`default/kubernetes` list every live API server of the cluster (`apiserver/
peer_leases.py`, one address each, their common port); each one listed joins the
agent's transport after the given ones, so an agent started with one URL still reaches
the cluster when that server goes away. Servers are only added, never dropped: the
transport skips one that does not answer, and a restarted server comes back at the
address it had.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from pinnace.api.types import Obj
from pinnace.client.factory import InformerFactory

log = logging.getLogger(__name__)


class ServerList(Protocol):
    def add_server(self, url: str) -> bool: ...


def server_urls(endpoints: Obj) -> list[str]:
    """https URLs of the addresses of the `kubernetes` Endpoints, on its https port."""
    urls = []
    for subset in endpoints.get("subsets") or []:
        port = next((p.get("port") for p in subset.get("ports") or []
                     if p.get("name") in ("https", None)), None)
        if port is None:
            continue
        for address in subset.get("addresses") or []:
            ip = str(address.get("ip") or "")
            if ip:
                host = f"[{ip}]" if ":" in ip else ip
                urls.append(f"https://{host}:{port}")
    return urls


class ApiServerFollower:
    """Adds the servers the `kubernetes` Endpoints list to `servers` (the transport)."""

    def __init__(self, factory: InformerFactory, servers: ServerList) -> None:
        self.servers = servers
        self._changed = asyncio.Event()
        self.endpoints = factory.informer("v1", "Endpoints",
                                          field_selector="metadata.name=kubernetes")
        self.endpoints.add_handler(on_add=self._wake, on_update=lambda _o, _n: self._wake())

    def _wake(self, _obj: Any = None) -> None:
        self._changed.set()

    async def run(self) -> None:
        await self.endpoints.wait_synced()
        while True:
            self._changed.clear()
            ep = self.endpoints.get("default/kubernetes")
            for url in server_urls(ep or {}):
                if self.servers.add_server(url):
                    log.info("API server %s (from the kubernetes Endpoints) added", url)
            await self._changed.wait()
