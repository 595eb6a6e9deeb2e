"""A real API server in this process on a free loopback port, over HTTPS, with a
real SQLite file, and an HTTP client holding the admin token.

The server is the composition root's (`pinnace.cluster.Cluster`, with no controllers,
scheduler or nodes: each test starts the components it is about), and those components
run under the root's `ComponentRunner`, the same wiring `pinnace up` uses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinnace.api.errors import ApiError
from pinnace.apiserver.server import ApiServer
from pinnace.cluster import Cluster, ClusterConfig, ComponentRunner
from tests.integration.fake_kubelet import node_loop

# the name the tests know the runner by (`components: Components`)
Components = ComponentRunner
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")  # as tests/e2e use it


async def run_kubectl(kubeconfig: Path, *args: str, home: Path | None = None,
                      stdin: bytes | None = None) -> tuple[int, str, str]:
    """The real kubectl against a test's server, without blocking its event loop (the server
    runs in it): (exit code, stdout, stderr). HOME and kubectl's cache live in `home`
    (default: the kubeconfig's folder), never the user's."""
    home = home or kubeconfig.parent
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(home / "cache"), *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@dataclass
class Api:
    server: ApiServer
    session: aiohttp.ClientSession
    cluster: Cluster | None = None  # the root the server belongs to (its in-process client)

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
async def running_api(data_dir: Path, **config: Any) -> AsyncIterator[Api]:
    """An API server on a free loopback port over `data_dir`, and a session trusting it;
    `config` sets more of its ClusterConfig (service_account_admission=True, …)."""
    cluster = Cluster(ClusterConfig(data_dir=data_dir, port=0, controllers=False,
                                    scheduler=False, **config))
    await cluster.start()
    ctx = ssl.create_default_context(cadata=cluster.server.ca_pem.decode())
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    try:
        yield Api(cluster.server, session, cluster)
    finally:
        await session.close()
        await cluster.stop()


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


@pytest.fixture
def local_client(api: Api) -> Any:
    """The in-process client (`LocalTransport`) of the test's server: what components use
    inside `pinnace up`, the same handlers without the socket. Closed with the server."""
    assert api.cluster is not None
    return api.cluster.client


@pytest.fixture
async def components(client: Any) -> AsyncIterator[ComponentRunner]:
    """Runs the test's components (built on `components.factory`) over the HTTPS client;
    all of them are cancelled at the end of the test."""
    c = ComponentRunner(client)
    yield c
    failures = await c.stop()
    if failures:  # a component that crashed during the test fails it
        raise failures[0]


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


async def gone(client: Any, rt: Any, name: str, namespace: str | None = None) -> bool:
    """The object is gone: its GET answers 404."""
    try:
        await client.get(rt, name, namespace)
    except ApiError as e:
        return e.code == 404
    return False


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
