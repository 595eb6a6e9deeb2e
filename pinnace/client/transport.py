"""Transports: how a component's requests reach the API server.

`Transport` is the one seam between components and the API. `HttpTransport`
speaks HTTPS with a bearer token (what `pinnace agent` on another machine uses,
and what components in `pinnace up` use today). A transport answers with the
decoded JSON body and the HTTP status; it never interprets Kubernetes errors
(`client.py` does).
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml


class Transport(Protocol):
    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      ) -> tuple[int, Any]: ...

    def stream(self, path: str, params: Mapping[str, str]) -> AsyncIterator[tuple[int, Any]]:
        """GET a watch: yields (status, event) per line; a non-200 answer yields once."""
        ...

    async def close(self) -> None: ...


class HttpTransport:
    """HTTPS to one API server, or to the first of several that answers: a request whose
    connection could not be made (nothing was sent) goes to the next server, and the
    transport stays there (the servers of one cluster on one etcd serve the same API)."""

    def __init__(self, server: str | Sequence[str], *, token: str,
                 ca_pem: bytes | None = None, limit: int = 64) -> None:
        urls = [server] if isinstance(server, str) else list(server)
        if not urls:
            raise ValueError("no API server URL")
        self.servers = [u.rstrip("/") for u in urls]
        self._current = 0
        self._token = token
        self._ca_pem = ca_pem
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._failures = 0  # connections failed in a row

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> HttpTransport:
        cfg = yaml.safe_load(Path(path).read_text())
        current = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg["contexts"] if c["name"] == current),
                   cfg["contexts"][0]["context"])
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        ca = cluster.get("certificate-authority-data")
        return cls(cluster["server"], token=user.get("token", ""),
                   ca_pem=base64.b64decode(ca) if ca else None)

    @property
    def server(self) -> str:
        """The server requests go to now."""
        return self.servers[self._current]

    def add_server(self, url: str) -> bool:
        """Another server of the cluster, tried after those known already; False when it
        is one of them."""
        url = url.rstrip("/")
        if url in self.servers:
            return False
        self.servers.append(url)
        return True

    def _failed(self, url: str) -> bool:
        """After a connection to url failed: move on; False when every server was tried
        since the last success (the caller gives up)."""
        index = self.servers.index(url)
        if index == self._current:
            self._current = (index + 1) % len(self.servers)
        self._failures += 1
        return self._failures < len(self.servers)

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ctx: ssl.SSLContext | bool = True
            if self._ca_pem:
                ctx = ssl.create_default_context(cadata=self._ca_pem.decode())
            conn = aiohttp.TCPConnector(ssl=ctx, limit=self._limit)
            self._session = aiohttp.ClientSession(
                connector=conn, headers={"Authorization": f"Bearer {self._token}",
                                         "User-Agent": "pinnace"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                read_bufsize=4 * 1024 * 1024)  # one watch event is one line, up to 3 MiB
        return self._session

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      ) -> tuple[int, Any]:
        session = self._ensure()
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        while True:
            url = self.server
            try:
                async with session.request(method, url + path, params=params or None,
                                           data=data, headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=60)) as resp:
                    raw = await resp.read()
                    self._failures = 0
                    try:
                        return resp.status, json.loads(raw) if raw else None
                    except ValueError:
                        return resp.status, {"message": raw.decode(errors="replace")}
            except aiohttp.ClientConnectorError:
                if not self._failed(url):
                    self._failures = 0
                    raise

    async def stream(self, path: str, params: Mapping[str, str]
                     ) -> AsyncIterator[tuple[int, Any]]:
        session = self._ensure()
        while True:
            url = self.server
            try:
                resp = await session.get(url + path, params=params,
                                         headers={"Accept": "application/json"})
                self._failures = 0
                break
            except aiohttp.ClientConnectorError:
                if not self._failed(url):
                    self._failures = 0
                    raise
        async with resp:
            if resp.status != 200:
                raw = await resp.read()
                try:
                    yield resp.status, json.loads(raw)
                except ValueError:
                    yield resp.status, {"message": raw.decode(errors="replace")}
                return
            async for line in resp.content:
                if line.strip():
                    yield 200, json.loads(line)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
