"""The kubelet's half of port-forward: `GET /portForward/{namespace}/{pod}?port=N`.

The API server terminates kubectl's SPDY session and, per forwarded connection, opens
one WebSocket here. This end connects to `pod_ip:N` (the pod network is reachable from
the host, so no netns entry is needed) and relays bytes:

- binary message <-> TCP bytes; an empty binary message is a half-close (EOF) in
  either direction;
- when the connect fails, one text message carries the error in the kubelet's wording
  ("error forwarding port 80 to pod …, uid : failed to connect to localhost:80 inside
  namespace …"), then the socket closes with 1011 — the API server puts that text on
  kubectl's error stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os

import aiohttp
from aiohttp import web

CHUNK = 32 * 1024
CONNECT_TIMEOUT = 10.0


def _go_dial_error(pod_ip: str, port: int, e: BaseException) -> str:
    """A connect error as Go's net package prints it (what users see from containerd)."""
    if isinstance(e, OSError) and e.errno:
        reason = os.strerror(e.errno).lower()
        if e.errno == errno.ECONNREFUSED:
            reason = "connection refused"
    elif isinstance(e, TimeoutError):
        reason = "i/o timeout"
    else:
        reason = str(e) or type(e).__name__
    return f"dial tcp4 {pod_ip}:{port}: connect: {reason}"


def forward_error(port: int, namespace: str, pod: str, pod_ip: str, e: BaseException) -> str:
    """The kubelet's (containerd's) message for a port that could not be reached."""
    sandbox = f"{namespace}/{pod}"
    return (f"error forwarding port {port} to pod {sandbox}, uid : failed to connect to "
            f"localhost:{port} inside namespace \"{sandbox}\", IPv4: "
            f"{_go_dial_error(pod_ip, port, e)} ")


async def handle_port_forward(request: web.Request, pod_ip: str) -> web.StreamResponse:
    """Accept the API server's WebSocket for `?port=N` and relay it to `pod_ip:N`."""
    try:
        port = int(request.query.get("port", ""))
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise web.HTTPBadRequest(text="a valid port number is required") from None
    namespace = request.match_info.get("namespace", "")
    pod = request.match_info.get("pod", "")
    ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
    await ws.prepare(request)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(pod_ip, port),
                                                CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        await ws.send_str(forward_error(port, namespace, pod, pod_ip, e))
        await ws.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR,
                       message=b"failed to connect to the pod")
        return ws

    async def to_pod() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            if not msg.data:
                if writer.can_write_eof():
                    writer.write_eof()
                continue
            writer.write(msg.data)
            await writer.drain()

    async def from_pod() -> None:
        while chunk := await reader.read(CHUNK):
            await ws.send_bytes(chunk)
        await ws.send_bytes(b"")

    up = asyncio.create_task(to_pod())
    down = asyncio.create_task(from_pod())
    try:
        # the API server closing the socket ends everything; the pod's EOF is passed on
        # and the API server closes once the client is done
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down in done and not down.exception():
            await up
    finally:
        for t in (up, down):
            t.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await ws.close()
    return ws
