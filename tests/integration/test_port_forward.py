"""`kubectl port-forward` (the real kubectl 1.32) end to end: kubectl → the API server's
pods/portforward (`node_proxy` → `serve_port_forward`: SPDY/3.1 in a WebSocket, or a
plain SPDY upgrade; and the official Python client's `v4.channel.k8s.io` WebSocket,
`portforward_channels`) → the KubeletServer over HTTPS (`dial_kubelet` → its
`/portForward` → `handle_port_forward`) → a TCP server playing the pod's port.

The pod's IP is 127.0.0.1 here: the pod network is reachable from the host, so
forwarding is the same TCP connect whatever the address; no container is needed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.agent.kubelet_server import KubeletServer
from pinnace.agent.runtime.fake import FakeRuntime
from pinnace.apiserver.pki import ensure_kubelet_token
from tests.integration.conftest import Api

KUBECTL = "/usr/bin/kubectl"
BANNER = b"hello from the pod\n"


OPEN: set[asyncio.StreamWriter] = set()  # the pod's connections still open


async def _pod_server() -> tuple[asyncio.Server, int]:
    """The pod's port: greets, then echoes until the client half-closes."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        OPEN.add(writer)
        try:
            writer.write(BANNER)
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            OPEN.discard(writer)
            writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class Cluster:
    def __init__(self, api: Api, home: Path) -> None:
        self.api = api
        self.home = home
        self.kubeconfig = api.server.write_kubeconfig()
        self.procs: list[asyncio.subprocess.Process] = []


@pytest.fixture
async def cluster(api: Api, tmp_path: Path) -> AsyncIterator[Cluster]:
    # the API server presents this token to kubelets (pki/kubelet.token)
    kubelet_token = ensure_kubelet_token(api.server.data_dir)
    pods: dict[tuple[str, str], dict[str, Any]] = {}
    pki = api.server.data_dir / "pki"
    kubelet = KubeletServer(FakeRuntime(), lambda ns, name: pods.get((ns, name)),
                            host="127.0.0.1", port=0, tls_cert=pki / "server.crt",
                            tls_key=pki / "server.key", token=kubelet_token)
    await kubelet.start()
    c = Cluster(api, tmp_path)
    try:
        status, node = await api.request("POST", "/api/v1/nodes", json={
            "metadata": {"name": "node-1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}})
        assert status == 201, node
        status, pod = await api.request("POST", "/api/v1/namespaces/default/pods", json={
            "metadata": {"name": "x"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx"}]}})
        assert status == 201, pod
        pod["status"] = {"phase": "Running", "podIP": "127.0.0.1"}
        status, pod = await api.request("PUT", "/api/v1/namespaces/default/pods/x/status",
                                        json=pod)
        assert status == 200, pod
        pods[("default", "x")] = pod
        yield c
    finally:
        for p in c.procs:  # only the kubectl processes this test started
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                await p.wait()
        await kubelet.stop()


class PortForward:
    """A running `kubectl port-forward pod/x :REMOTE`, with its output collected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout = ""
        self.stderr = ""
        self.local_port = 0
        self._tasks = [asyncio.create_task(self._collect("stdout")),
                       asyncio.create_task(self._collect("stderr"))]

    async def _collect(self, name: str) -> None:
        stream = getattr(self.proc, name)
        while line := await stream.readline():
            setattr(self, name, getattr(self, name) + line.decode())

    async def ready(self, remote: int) -> int:
        for _ in range(300):
            m = re.search(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {remote}", self.stdout)
            if m:
                return int(m.group(1))
            assert self.proc.returncode is None, self.stderr
            await asyncio.sleep(0.05)
        raise AssertionError(f"kubectl did not start forwarding: {self.stderr}")


async def start_kubectl(c: Cluster, remote: int, *, websockets: bool = True) -> tuple[
        PortForward, int]:
    env = {"HOME": str(c.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if not websockets:
        env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(c.kubeconfig), "--cache-dir", str(c.home / "cache"),
        "-v=6", "port-forward", "pod/x", f":{remote}", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    c.procs.append(proc)
    pf = PortForward(proc)
    return pf, await pf.ready(remote)


async def round_trip(port: int, payload: bytes) -> bytes:
    """Connect through the forward, read the banner, send `payload`, half-close, and
    return everything the pod sent back after the banner."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.readexactly(len(BANNER)), 10) == BANNER

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
        sender = asyncio.create_task(send())
        echoed = await asyncio.wait_for(reader.read(-1), 20)
        await sender
        return echoed
    finally:
        writer.close()


@pytest.fixture
async def pod_port() -> AsyncIterator[int]:
    server, port = await _pod_server()
    yield port
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket-tunnel", "spdy"])
async def test_bytes_round_trip_both_ways(cluster: Cluster, pod_port: int,
                                          websockets: bool) -> None:
    pf, local = await start_kubectl(cluster, pod_port, websockets=websockets)
    # -v=6 shows which way kubectl connected: its first choice is SPDY in a WebSocket
    upgrade = re.search(r"(GET|POST) https://\S+/pods/x/portforward 101 Switching", pf.stderr)
    assert upgrade and upgrade.group(1) == ("GET" if websockets else "POST"), pf.stderr
    assert ("negotiated protocol: portforward.k8s.io" in pf.stderr) == websockets
    assert await round_trip(local, b"ping\n") == b"ping\n"
    # two connections at once, each with its own stream pair
    big = os.urandom(1 << 20)
    small = b"second connection " * 100
    got_big, got_small = await asyncio.gather(round_trip(local, big), round_trip(local, small))
    assert got_big == big
    assert got_small == small
    # and the forward still works afterwards
    assert await round_trip(local, b"again") == b"again"
    assert pf.proc.returncode is None
    assert f"Handling connection for {local}" in pf.stdout


async def test_refused_port_reports_kubelet_error(cluster: Cluster, pod_port: int) -> None:
    """kubectl prints the kubelet's error and, since 1.23 (kubernetes#103526), gives up
    the whole forward with "lost connection to pod"; the API server stays fine."""
    server, closed_port = await _pod_server()
    server.close()
    await server.wait_closed()  # nothing listens there any more
    pf, local = await start_kubectl(cluster, closed_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", local)
    try:
        assert await asyncio.wait_for(reader.read(-1), 10) == b""
    finally:
        writer.close()
    assert await asyncio.wait_for(pf.proc.wait(), 10) == 1
    await asyncio.gather(*pf._tasks)
    assert (f'"Unhandled Error" err="an error occurred forwarding {local} -> {closed_port}: '
            f"error forwarding port {closed_port} to pod default/x, uid : failed to connect "
            f'to localhost:{closed_port} inside namespace \\"default/x\\", IPv4: dial tcp4 '
            f"127.0.0.1:{closed_port}: connect: connection refused") in pf.stderr, pf.stderr
    assert pf.stderr.endswith("error: lost connection to pod\n")
    # a new forward to a listening port works
    _, local = await start_kubectl(cluster, pod_port)
    assert await round_trip(local, b"after the error") == b"after the error"


async def test_killing_kubectl_closes_the_pods_connections(cluster: Cluster,
                                                           pod_port: int) -> None:
    pf, local = await start_kubectl(cluster, pod_port)
    conns = [await asyncio.open_connection("127.0.0.1", local) for _ in range(2)]
    for reader, _ in conns:
        assert await asyncio.wait_for(reader.readexactly(len(BANNER)), 10) == BANNER
    assert len(OPEN) == 2
    os.kill(pf.proc.pid, signal.SIGKILL)
    await pf.proc.wait()
    for _ in range(200):
        if not OPEN:
            break
        await asyncio.sleep(0.025)
    assert not OPEN, "the API server and kubelet kept the pod's connections open"
    for _, writer in conns:
        writer.close()


async def test_requests_without_spdy_are_refused_with_a_status(cluster: Cluster) -> None:
    path = "/api/v1/namespaces/default/pods/x/portforward"
    status, body = await cluster.api.request("POST", path)
    assert (status, body["reason"], body["message"]) == (
        400, "BadRequest", "Upgrade request required")
    status, body = await cluster.api.request("GET", path + "?ports=80", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "v5.channel.k8s.io"})
    assert status == 400  # the kubelet's port-forward never spoke v5
    assert body["message"] == (
        "requested protocol(s) are not supported: [v5.channel.k8s.io]; supports "
        "[SPDY/3.1+portforward.k8s.io v4.channel.k8s.io v4.base64.channel.k8s.io]")


# --- the official Python client: WebSocket channels (v4.channel.k8s.io) ----------------

def python_client_forward(kubeconfig: Path, ports: list[int], talk: Any) -> Any:
    """`kubernetes.stream.portforward` as a user writes it (synchronous: run in a thread,
    the API server shares this event loop); `talk(pf)` uses the forward."""
    from kubernetes import client, config
    from kubernetes.stream import portforward
    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    pf = portforward(api.connect_get_namespaced_pod_portforward, "x", "default",
                     ports=",".join(map(str, ports)))
    try:
        return talk(pf)
    finally:
        pf.close()  # closes the local sockets; the client then closes the WebSocket


def exchange(sock: Any, payload: bytes) -> bytes:
    """Read the banner, send `payload`, read the same number of bytes back."""
    sock.settimeout(10)
    got = b""
    while len(got) < len(BANNER) + len(payload):
        if len(got) == len(BANNER):
            sock.sendall(payload)
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


async def test_python_client_portforward_round_trip(cluster: Cluster, pod_port: int) -> None:
    def talk(pf: Any) -> bytes:
        return exchange(pf.socket(pod_port), b"ping from python\n")
    got = await asyncio.to_thread(python_client_forward, cluster.kubeconfig, [pod_port], talk)
    assert got == BANNER + b"ping from python\n"
    for _ in range(200):  # the client closed: the pod's connection is closed too
        if not OPEN:
            break
        await asyncio.sleep(0.025)
    assert not OPEN


async def test_python_client_two_ports_at_once(cluster: Cluster, pod_port: int) -> None:
    server, other_port = await _pod_server()
    big = os.urandom(256 * 1024)
    try:
        def talk(pf: Any) -> tuple[bytes, bytes]:
            return exchange(pf.socket(pod_port), b"first"), exchange(pf.socket(other_port), big)
        first, second = await asyncio.to_thread(python_client_forward, cluster.kubeconfig,
                                                [pod_port, other_port], talk)
    finally:
        server.close()
        await server.wait_closed()
    assert first == BANNER + b"first"
    assert second == BANNER + big


async def test_python_client_refused_port_gets_kubelet_error(cluster: Cluster) -> None:
    server, closed_port = await _pod_server()
    server.close()
    await server.wait_closed()

    def talk(pf: Any) -> tuple[bytes, str | None]:
        sock = pf.socket(closed_port)
        sock.settimeout(10)
        data = sock.recv(100)  # EOF: the error closed the port
        for _ in range(200):
            if pf.error(closed_port) is not None:
                break
            time.sleep(0.025)
        return data, pf.error(closed_port)
    data, error = await asyncio.to_thread(python_client_forward, cluster.kubeconfig,
                                          [closed_port], talk)
    assert data == b""
    assert error == (f"error forwarding port {closed_port} to pod default/x, uid : failed to "
                     f"connect to localhost:{closed_port} inside namespace \"default/x\", "
                     f"IPv4: dial tcp4 127.0.0.1:{closed_port}: connect: connection refused ")


async def test_channel_protocol_needs_valid_ports(cluster: Cluster) -> None:
    path = "/api/v1/namespaces/default/pods/x/portforward"
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Protocol": "v4.channel.k8s.io"}
    status, body = await cluster.api.request("GET", path, headers=upgrade)
    assert (status, body["message"]) == (400, 'query parameter "ports" is required')
    status, body = await cluster.api.request("GET", path + "?ports=80,http", headers=upgrade)
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["details"]["causes"][0]["field"] == "ports"


async def test_base64_channels(cluster: Cluster, pod_port: int) -> None:
    """v4.base64.channel.k8s.io: text messages, the channel as an ASCII digit, base64."""
    api = cluster.api
    url = api.url + f"/api/v1/namespaces/default/pods/x/portforward?ports={pod_port}"
    async with api.session.ws_connect(url, protocols=("v4.base64.channel.k8s.io",),
                                      headers={"Authorization": f"Bearer {api.server.token}"}
                                      ) as ws:
        assert ws.protocol == "v4.base64.channel.k8s.io"
        prefix = base64.b64encode(pod_port.to_bytes(2, "little")).decode()
        assert {await ws.receive_str(), await ws.receive_str()} == {"0" + prefix, "1" + prefix}
        assert await ws.receive_str() == "0" + base64.b64encode(BANNER).decode()
        await ws.send_str("0" + base64.b64encode(b"over text").decode())
        assert await ws.receive_str() == "0" + base64.b64encode(b"over text").decode()
