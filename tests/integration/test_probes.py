"""Probes against real things: an aiohttp server on 127.0.0.1 whose status codes flip, a
real TCP listener, the API server's HTTPS port, and exec probes in a real runc busybox
container. Periods are 1 s, so each ProbeManager test takes a few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pinnace.agent.probes import (
    ProbeManager,
    Result,
    exec_probe,
    http_probe,
    run_probe,
    tcp_probe,
)
from pinnace.agent.runtime import ContainerConfig, PodSandboxConfig
from pinnace.agent.runtime.runc import RuncRuntime
from tests.integration.conftest import eventually
from tests.ports import free_port


class Target:
    """A local HTTP server: `status` decides the answer to /health; it records requests."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.requests: list[Any] = []
        self.port = 0
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/hop", self.redirect("/health"))
        app.router.add_get("/away", self.redirect("http://localhost:{port}/health"))
        app.router.add_get("/loop", self.redirect("/loop"))
        self.runner = web.AppRunner(app)

    def redirect(self, location: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            raise web.HTTPFound(location.format(port=self.port))
        return handler

    async def health(self, request: web.Request) -> web.Response:
        self.requests.append(request.headers.copy())
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=f"status {self.status}")

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    await t.start()
    yield t
    await t.runner.cleanup()


class Recorder:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.events: list[tuple[str, str, str, str]] = []

    def on_change(self, uid: str) -> None:
        self.changes.append(uid)

    async def on_event(self, uid: str, reason: str, message: str, type_: str,
                       container: str = "") -> None:
        self.events.append((uid, reason, message, type_))

    def messages(self) -> list[str]:
        return [e[2] for e in self.events]


@pytest.fixture
async def manager() -> AsyncIterator[tuple[ProbeManager, Recorder]]:
    rec = Recorder()
    pm = ProbeManager(None, on_change=rec.on_change, on_event=rec.on_event)  # type: ignore
    yield pm, rec
    await pm.aclose()


def pod(uid: str = "uid-1", policy: str = "Always") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": uid},
            "spec": {"restartPolicy": policy}}


# -- handlers -----------------------------------------------------------------------------

async def test_http_probe_results(target: Target) -> None:
    base = f"http://127.0.0.1:{target.port}"
    assert (await http_probe(f"{base}/health", [], 1)).result is Result.SUCCESS
    target.status = 399
    assert (await http_probe(f"{base}/health", [], 1)).result is Result.SUCCESS
    target.status = 500
    out = await http_probe(f"{base}/health", [], 1)
    assert (out.result, out.output) == (Result.FAILURE,
                                        "HTTP probe failed with statuscode: 500")
    target.status = 200
    # same host: followed; another host: not followed, a success with a warning
    assert (await http_probe(f"{base}/hop", [], 1)).result is Result.SUCCESS
    away = await http_probe(f"{base}/away", [], 1)
    assert away.result is Result.WARNING
    assert away.output.startswith("Probe terminated redirects, Response body: ")
    loop = await http_probe(f"{base}/loop", [], 1)
    assert (loop.result, loop.output) == (Result.FAILURE,
                                          f'Get "{base}/loop": stopped after 10 redirects')


async def test_http_probe_headers_timeout_and_refused(target: Target) -> None:
    base = f"http://127.0.0.1:{target.port}"
    await http_probe(f"{base}/health", [("Host", "example.test"), ("X-Probe", "1")], 1)
    seen = target.requests[-1]
    assert seen["Host"] == "example.test" and seen["X-Probe"] == "1"
    assert seen["User-Agent"] == "kube-probe/1.32" and seen["Accept"] == "*/*"

    target.delay = 2
    t0 = time.monotonic()
    slow = await http_probe(f"{base}/health", [], 0.3)
    assert time.monotonic() - t0 < 1.5
    assert (slow.result, slow.output) == (
        Result.FAILURE, f'Get "{base}/health": context deadline exceeded '
                        "(Client.Timeout exceeded while awaiting headers)")
    port = free_port()
    refused = await http_probe(f"http://127.0.0.1:{port}/", [], 1)
    assert refused.output == (f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: '
                              "connect: connection refused")


async def test_https_probe_does_not_verify(api: Any) -> None:
    # the API server's certificate is signed by a CA the prober does not know
    out = await http_probe(f"{api.url}/healthz", [], 2)
    assert out.result is Result.SUCCESS or out.output.startswith("HTTP probe failed with")


async def test_tcp_probe() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await tcp_probe("127.0.0.1", port, 1)).result is Result.SUCCESS
    finally:
        server.close()
        await server.wait_closed()
    out = await tcp_probe("127.0.0.1", port, 1)
    assert (out.result, out.output) == (
        Result.FAILURE, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


async def test_named_port_and_errors(target: Target) -> None:
    container = {"name": "app", "ports": [{"name": "web", "containerPort": target.port}]}
    probe = {"httpGet": {"path": "/health", "port": "web"}}
    assert (await run_probe(None, probe, container, "c1", "127.0.0.1")).result \
        is Result.SUCCESS  # type: ignore[arg-type]
    bad = await run_probe(None, {"tcpSocket": {"port": "nope"}}, container, "c1",  # type: ignore
                          "127.0.0.1")
    assert (bad.result, bad.error) == (Result.UNKNOWN,
                                       'strconv.Atoi: parsing "nope": invalid syntax')


# -- the manager --------------------------------------------------------------------------

async def test_readiness_flips_with_the_server(target: Target, manager: Any) -> None:
    pm, rec = manager
    c = {"name": "app", "ports": [{"name": "http", "containerPort": target.port}],
         "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                            "periodSeconds": 1, "failureThreshold": 2}}
    pm.ensure(pod(), c, "c1", "127.0.0.1")
    assert pm.ready("c1") is False and pm.started("c1") is True
    await eventually(lambda: pm.ready("c1"), within=3)
    assert rec.changes == ["uid-1"]
    target.status = 500
    t0 = time.monotonic()
    await eventually(lambda: not pm.ready("c1"), within=4)
    assert time.monotonic() - t0 > 1.0  # two failures a period apart
    assert rec.changes == ["uid-1", "uid-1"]
    assert rec.events[0] == ("uid-1", "Unhealthy",
                             "Readiness probe failed: HTTP probe failed with statuscode: 500",
                             "Warning")
    assert pm.liveness_failed("c1") is None  # readiness never restarts anything
    target.status = 200
    await eventually(lambda: pm.ready("c1"), within=3)
    pm.ensure(pod(), c, "c1", "127.0.0.1")  # idempotent
    assert pm.ready("c1")
    # a restart (new id) starts from not ready
    pm.ensure(pod(), c, "c2", "127.0.0.1")
    assert pm.ready("c2") is False
    assert pm.ready("c1") is True  # forgotten: unknown ids have no probes


async def test_liveness_tcp_fails_past_threshold(manager: Any) -> None:
    pm, rec = manager
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = {"name": "app", "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1,
                                          "failureThreshold": 2}}
    try:
        pm.ensure(pod(), c, "c1", "127.0.0.1")
        await asyncio.sleep(0.2)
        assert pm.liveness_failed("c1") is None and pm.ready("c1")
    finally:
        server.close()
        await server.wait_closed()
    await eventually(lambda: pm.liveness_failed("c1") is not None, within=4)
    assert pm.liveness_failed("c1") == "Container app failed liveness probe, will be restarted"
    assert rec.changes == ["uid-1"]
    msg = f"Liveness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert rec.messages() == [msg, msg]
    await asyncio.sleep(1.3)  # on hold: no more probing of this instance
    assert len(rec.events) == 2


async def test_startup_gates_liveness_and_readiness(target: Target, manager: Any) -> None:
    pm, rec = manager
    port = free_port()
    c = {"name": "app",
         "startupProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1,
                          "failureThreshold": 30},
         "readinessProbe": {"httpGet": {"path": "/health", "port": target.port},
                            "periodSeconds": 10},
         "livenessProbe": {"httpGet": {"path": "/health", "port": target.port},
                           "periodSeconds": 1}}
    pm.ensure(pod(), c, "c1", "127.0.0.1")
    await eventually(lambda: len(rec.events) >= 2, within=3)
    assert pm.started("c1") is False and pm.ready("c1") is False
    assert target.requests == []  # neither readiness nor liveness has probed
    assert rec.messages()[0].startswith("Startup probe failed: dial tcp 127.0.0.1:")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        await eventually(lambda: pm.started("c1"), within=3)
        # readiness runs at once, not after its 10 s period
        await eventually(lambda: pm.ready("c1"), within=2)
    finally:
        server.close()
        await server.wait_closed()


async def test_startup_failure_and_initial_delay(manager: Any) -> None:
    pm, _ = manager
    c = {"name": "app",
         "startupProbe": {"tcpSocket": {"port": free_port()}, "periodSeconds": 1,
                          "failureThreshold": 1, "initialDelaySeconds": 1}}
    t0 = time.monotonic()
    pm.ensure(pod(policy="Never"), c, "c1", "127.0.0.1")
    await eventually(lambda: pm.liveness_failed("c1") is not None, within=3)
    assert time.monotonic() - t0 >= 0.9
    assert pm.liveness_failed("c1") == "Container app failed startup probe"
    assert pm.started("c1") is False
    pm.forget("uid-1")
    assert pm.liveness_failed("c1") is None


async def test_pod_without_probes_costs_nothing(manager: Any) -> None:
    pm, _ = manager
    before = len(asyncio.all_tasks())
    for i in range(100):
        pm.ensure(pod(f"u{i}"), {"name": "app"}, f"c{i}", "127.0.0.1")
    assert len(asyncio.all_tasks()) == before
    assert all(pm.ready(f"c{i}") and pm.started(f"c{i}") for i in range(100))


# -- exec probes in a real runc container -------------------------------------------------

needs_runc = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None
    or not Path("/usr/lib/cni/bridge").exists(),
    reason="needs root, runc and CNI plugins in /usr/lib/cni")


@needs_runc
async def test_exec_probes_in_busybox(runtime: RuncRuntime) -> None:
    # the shared runc fixture (tests/integration/conftest.py) checks for leftovers after
    rt = runtime
    sid = await rt.run_pod_sandbox(PodSandboxConfig(f"uid-exec-{time.time_ns()}", "exec",
                                                    "default"))
    cid = await rt.create_container(sid, ContainerConfig(
        "app", "busybox:1.28", command=["sh", "-c", "touch /tmp/healthy; sleep 3600"]))
    await rt.start_container(cid)
    ok = await _until_ok(rt, cid)
    assert ok.result is Result.SUCCESS

    fail = await exec_probe(rt, cid, ["cat", "/tmp/nothing"], 5)
    assert (fail.result, fail.output) == (
        Result.FAILURE, "cat: can't open '/tmp/nothing': No such file or directory\n")
    t0 = time.monotonic()
    slow = await exec_probe(rt, cid, ["sleep", "5"], 1)
    assert time.monotonic() - t0 < 3.5
    assert (slow.result, slow.output) == (Result.FAILURE, 'command "sleep 5" timed out')

    rec = Recorder()
    pm = ProbeManager(rt, on_change=rec.on_change, on_event=rec.on_event)
    try:
        spec = {"name": "app", "env": [{"name": "FILE", "value": "/tmp/healthy"}],
                "livenessProbe": {"exec": {"command": ["cat", "$(FILE)"]},
                                  "periodSeconds": 1, "failureThreshold": 1},
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}
        pm.ensure(pod(), spec, cid, "")
        await eventually(lambda: pm.ready(cid), within=5)
        assert pm.liveness_failed(cid) is None
        await rt.exec_sync(cid, ["rm", "/tmp/healthy"], 5)
        await eventually(lambda: pm.liveness_failed(cid) is not None, within=5)
        assert ("Liveness probe failed: cat: can't open '/tmp/healthy': "
                "No such file or directory\n") in rec.messages()
    finally:
        await pm.aclose()


async def _until_ok(rt: RuncRuntime, cid: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        out = await exec_probe(rt, cid, ["cat", "/tmp/healthy"], 5)
        if out.result is Result.SUCCESS or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
async def _no_stray_tasks() -> AsyncIterator[None]:
    yield
    stray = [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("probe ")]
    for t in stray:
        t.cancel()
        with contextlib.suppress(BaseException):
            await t
    assert stray == []
