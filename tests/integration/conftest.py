"""A real API server in this process on a free loopback port, over HTTPS, with a
real SQLite file, and an HTTP client holding the admin token."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinnace.apiserver.server import ApiServer


@dataclass
class Api:
    server: ApiServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url

    async def request(self, method: str, path: str, *, json: Any = None, data: Any = None,
                      headers: dict[str, str] | None = None, token: str | None = "admin",
                      ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token == "admin":
            hdrs["Authorization"] = f"Bearer {self.server.token}"
        elif token:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.url + path, json=json, data=data,
                                        headers=hdrs) as resp:
            body = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("application/json"):
                import json as _json
                return resp.status, _json.loads(body)
            return resp.status, body.decode(errors="replace")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    server = ApiServer(tmp_path / "data", port=0)
    await server.start()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    try:
        yield Api(server, session)
    finally:
        await session.close()
        await server.stop()
