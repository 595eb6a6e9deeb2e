"""A real API server in this process on a free loopback port, over HTTPS, with a
real SQLite file, and an HTTP client holding the admin token."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinnace.apiserver.server import ApiServer
from tests.integration.fake_kubelet import node_loop


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


@contextlib.asynccontextmanager
async def running_api(data_dir: Path) -> AsyncIterator[Api]:
    """An API server on a free loopback port over `data_dir`, and a session trusting it."""
    server = ApiServer(data_dir, port=0)
    await server.start()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    try:
        yield Api(server, session)
    finally:
        await session.close()
        await server.stop()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "data") as a:
        yield a


@pytest.fixture
async def client(api: Api) -> AsyncIterator[Any]:
    """An API client (the one components use) for the test's server."""
    from pinnace.client.client import Client
    from pinnace.client.transport import HttpTransport
    c = Client(HttpTransport(api.url, token=api.server.token, ca_pem=api.server.ca_pem))
    yield c
    await c.close()


class Components:
    """Runs components (controllers, scheduler, agents) against the test's server; each
    gets the shared InformerFactory. Everything is cancelled at the end of the test."""

    def __init__(self, client: Any) -> None:
        from pinnace.client.factory import InformerFactory
        self.client = client
        self.factory = InformerFactory(client)
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self, *components: Any) -> None:
        """components: objects with `async run()`, already built on self.factory."""
        await self.factory.start()
        for c in components:
            self.tasks.append(asyncio.create_task(c.run()))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.factory.stop()


@pytest.fixture
async def components(client: Any) -> AsyncIterator[Components]:
    c = Components(client)
    yield c
    await c.stop()


async def eventually(cond: Any, within: float = 10.0, interval: float = 0.02) -> None:
    """Wait until cond() (sync or async) is true, or fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = cond()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


@pytest.fixture
async def ready_node(client: Any) -> AsyncIterator[None]:
    """Plays the node for controller tests: every pod in `default` becomes Ready."""
    task = asyncio.create_task(node_loop(client))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory, test_images: Path) -> Iterator[Path]:
    """A node's data dir with busybox and nginx imported, shared by a module's tests;
    nothing of it may be left on the host afterwards."""
    from pinnace.agent.images import ImageStore
    from tests.leftovers import leftovers
    data = tmp_path_factory.mktemp("node")
    store = ImageStore(data)
    for name in ("busybox_1.28.tar", "nginx_1.19.tar"):
        store.import_archive(test_images / name)
    yield data
    assert leftovers(data) == []


@pytest.fixture
def runtime(node_dir: Path) -> Iterator[Any]:
    """A runc runtime on `node_dir` with its own random pod CIDR, torn down after the test
    (`cleanup_all`) with a check that nothing is left."""
    from pinnace.agent.runtime.runc import RuncRuntime
    from tests.leftovers import leftovers, random_pod_cidr
    rt = RuncRuntime(node_dir, pod_cidr=random_pod_cidr())
    try:
        yield rt
    finally:
        asyncio.run(rt.cleanup_all())
        assert leftovers(node_dir) == []
