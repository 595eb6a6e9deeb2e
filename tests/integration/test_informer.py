"""The client and informer against a real API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.client.informer import Informer
from pinnace.client.transport import HttpTransport
from tests.integration.conftest import Api, eventually


async def test_client_errors_carry_status(client: Client) -> None:
    cms = client.resource("v1", "ConfigMap")
    with pytest.raises(errors.ApiError) as err:
        await client.get(cms, "missing", "default")
    assert err.value.code == 404 and err.value.reason == "NotFound"
    await client.create(cms, {"metadata": {"name": "a"}}, "default")
    with pytest.raises(errors.ApiError) as err:
        await client.create(cms, {"metadata": {"name": "a"}}, "default")
    assert err.value.code == 409 and err.value.reason == "AlreadyExists"


async def test_informer_follows_changes(client: Client) -> None:
    cms = client.resource("v1", "ConfigMap")
    await client.create(cms, {"metadata": {"name": "before", "labels": {"t": "1"}}}, "default")
    inf = Informer(client, cms, namespace="default")
    seen: list[tuple[str, str]] = []
    inf.add_handler(on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                    on_update=lambda a, b: seen.append(("update", b["metadata"]["name"])),
                    on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])))
    inf.add_index("t", lambda o: [(o["metadata"].get("labels") or {}).get("t", "")])
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.wait_synced(), 5)
        assert ("add", "before") in seen
        await client.create(cms, {"metadata": {"name": "after", "labels": {"t": "1"}}},
                            "default")
        await client.patch(cms, "after", {"data": {"k": "v"}}, namespace="default")
        await client.delete(cms, "before", "default")
        await eventually(lambda: ("delete", "before") in seen and ("update", "after") in seen)
        assert [o["metadata"]["name"] for o in inf.by_index("t", "1")] == ["after"]
        assert inf.get("default/after")["data"] == {"k": "v"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_shared_factory_indexes_one_name_one_function(client: Client) -> None:
    """Two CronJob controllers on one factory register the same index (the same lambda
    of one line); another function under that name is refused, naming the index. The
    index registered late on a synced informer covers what it already holds."""
    from pinnace.client.factory import InformerFactory
    from pinnace.controllers.cronjob import CronJobController
    factory = InformerFactory(client)
    CronJobController(client, factory)
    CronJobController(client, factory)
    jobs = factory.informer("batch/v1", "Job")
    with pytest.raises(ValueError, match="cronjob-controller:owner"):
        jobs.add_index("cronjob-controller:owner", lambda j: [j["metadata"]["name"]])
    cms = client.resource("v1", "ConfigMap")
    await client.create(cms, {"metadata": {"name": "c1", "labels": {"t": "x"}}}, "default")
    configmaps = factory.informer("v1", "ConfigMap")
    await factory.start()
    try:
        await asyncio.wait_for(configmaps.wait_synced(), 5)
        configmaps.add_index("t", lambda o: [(o["metadata"].get("labels") or {}).get("t", "")])
        assert [o["metadata"]["name"] for o in configmaps.by_index("t", "x")] == ["c1"]
    finally:
        await factory.stop()


class Forwarder:
    """TCP to the API server through a port of its own, which the test cuts as if that
    server's process had died: the listener closes, every connection is aborted."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.transports: list[asyncio.BaseTransport] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.transports += [writer.transport, up_writer.transport]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.abort()  # type: ignore[attr-defined]
        await self.server.wait_closed()


class RecordingTransport(HttpTransport):
    """The real HTTPS transport, noting the lists and watches it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lists: list[str] = []  # the server each list went to
        self.watches: list[tuple[str, str]] = []  # (server tried first, resourceVersion)

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        if method == "GET" and path.endswith("/configmaps"):
            self.lists.append(self.server)
        return await super().request(method, path, **kwargs)

    def stream(self, path: str, params: Mapping[str, str]
               ) -> AsyncIterator[tuple[int, Any]]:
        self.watches.append((self.server, params.get("resourceVersion", "")))
        return super().stream(path, params)


async def test_a_cut_watch_resumes_on_the_next_server(api: Api, client: Client) -> None:
    """Two URLs of the cluster: when the first server goes away mid-watch, the informer
    watches on from where it was through the second, without listing again, and misses
    nothing written meanwhile."""
    forwarder = Forwarder(api.server.port)
    first = await forwarder.start()
    transport = RecordingTransport([first, api.url], token=api.server.token,
                                   ca_pem=api.server.ca_pem)
    cms = client.resource("v1", "ConfigMap")
    await client.create(cms, {"metadata": {"name": "a"}}, "default")
    inf = Informer(Client(transport), cms, namespace="default")
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.wait_synced(), 5)
        await client.create(cms, {"metadata": {"name": "b"}}, "default")
        await eventually(lambda: inf.get("default/b") is not None)
        seen = inf.resource_version
        await forwarder.cut()
        await client.create(cms, {"metadata": {"name": "c"}}, "default")
        await client.delete(cms, "a", "default")
        await eventually(lambda: inf.get("default/c") is not None
                         and inf.get("default/a") is None)
        assert transport.lists == [first]  # listed once, before the cut
        # the watch after the cut asked from where the first left off, and went on to
        # the second server
        assert len(transport.watches) >= 2 and transport.watches[-1][1] == seen
        assert transport.server == api.url
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await transport.close()
