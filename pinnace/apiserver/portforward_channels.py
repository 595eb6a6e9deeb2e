"""`pods/{name}/portforward` over WebSocket channels, as the official client libraries speak it.

`kubernetes.stream.portforward` (Python) and other non-Go clients open a WebSocket with
subprotocol `v4.channel.k8s.io` (the Python client offers `v5.channel.k8s.io` first; the
kubelet's port-forward never took v5, so neither do we) and `?ports=80,8080` (repeated or
comma-separated). The kubelet's websocket port-forward, which kube-apiserver passes the
connection to, defines the wire:

- requested port i owns two channels: data `2i` and error `2i+1`;
- every message is one channel byte and the payload: binary messages under
  `v4.channel.k8s.io` or no subprotocol; under `v4.base64.channel.k8s.io` text messages,
  the channel as the ASCII digit `'0' + channel` and the payload in base64;
- right after the upgrade, each channel of each port carries the port as 2 bytes,
  little-endian — clients check it before anything else;
- bytes from the client on a data channel go to the pod's port; bytes from the pod come
  back on it; a port that cannot be reached gets the kubelet's message on its error
  channel (the error channel is write-only: what a client sends there is dropped);
- when every port's connection has ended the server closes the WebSocket (there is no
  half-close in this protocol); the client going away ends every connection.

Each port is dialled once, through the same `dial(port)` (`Duplex` to the kubelet) as
kubectl's SPDY tunnel in `portforward.py`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from typing import Any

import aiohttp
from aiohttp import web

from pinnace.api import errors
from pinnace.apiserver.portforward import CHANNEL_PROTOCOLS, Dial, Duplex, PortForwardError

log = logging.getLogger(__name__)

V4_BINARY, V4_BASE64 = CHANNEL_PROTOCOLS
INBOUND_QUEUE = 16  # messages buffered per port before the client's reads are paused


def choose_protocol(offered: list[str]) -> str | None:
    """The channel subprotocol to answer with ("" when the client offered none), or None
    when this end speaks none of the offered ones."""
    if not offered:
        return ""
    return next((p for p in offered if p in CHANNEL_PROTOCOLS), None)


def requested_ports(query: Any) -> list[int]:
    """`ports` as the API server takes it (repeated and/or comma-separated), validated
    before the upgrade so that a mistake is a 400 Status, not a broken socket."""
    ports: list[int] = []
    for value in query.getall("ports", []):
        for item in value.split(","):
            try:
                port = int(item.strip())
            except ValueError:
                port = 0
            if not 0 < port < 65536:
                raise errors.bad_request(
                    f"invalid port {item.strip()!r}: must be between 1 and 65535",
                    [errors.Cause("ports", "must be between 1 and 65535")])
            ports.append(port)
    if not ports:
        raise errors.bad_request('query parameter "ports" is required',
                                 [errors.Cause("ports", "Required value", errors.REQUIRED)])
    return ports


class _Channels:
    """Writes of (channel, payload) in the negotiated framing, one message at a time."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self._ws = ws
        self._base64 = protocol == V4_BASE64
        self._lock = asyncio.Lock()

    async def send(self, channel: int, payload: bytes) -> None:
        async with self._lock:
            if self._base64:
                await self._ws.send_str(chr(ord("0") + channel)
                                        + base64.b64encode(payload).decode())
            else:
                await self._ws.send_bytes(bytes([channel]) + payload)

    def decode(self, msg: aiohttp.WSMessage) -> tuple[int, bytes] | None:
        """A received message as (channel, payload); None for one that is not ours."""
        if self._base64 and msg.type == aiohttp.WSMsgType.TEXT and msg.data:
            try:
                return ord(msg.data[0]) - ord("0"), base64.b64decode(msg.data[1:])
            except (binascii.Error, ValueError):
                return None
        if not self._base64 and msg.type == aiohttp.WSMsgType.BINARY and msg.data:
            return msg.data[0], bytes(msg.data[1:])
        return None


async def serve(request: web.Request, dial: Dial, protocol: str) -> web.StreamResponse:
    """Upgrade to `protocol` and forward every requested port until all of them end."""
    ports = requested_ports(request.query)
    ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), max_msg_size=0,
                               autoping=True)
    await ws.prepare(request)
    channels = _Channels(ws, protocol)
    inbound = [asyncio.Queue[bytes](maxsize=INBOUND_QUEUE) for _ in ports]
    try:
        for i, port in enumerate(ports):
            prefix = port.to_bytes(2, "little")
            await channels.send(2 * i, prefix)
            await channels.send(2 * i + 1, prefix)
        forwards = [asyncio.create_task(_forward(dial, port, i, channels, inbound[i]))
                    for i, port in enumerate(ports)]
        reader = asyncio.create_task(_read_client(ws, channels, inbound))
        try:
            # all ports done -> close; the client leaving -> stop the ports
            all_done = asyncio.gather(*forwards, return_exceptions=True)
            await asyncio.wait({all_done, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (*forwards, reader):
                t.cancel()
            await asyncio.gather(*forwards, reader, return_exceptions=True)
    except (ConnectionError, RuntimeError) as e:
        log.info("port-forward (websocket): %s", e)  # the client went away mid-write
    finally:
        await ws.close()
    return ws


async def _read_client(ws: web.WebSocketResponse, channels: _Channels,
                       inbound: list[asyncio.Queue[bytes]]) -> None:
    async for msg in ws:
        decoded = channels.decode(msg)
        if decoded is None:
            continue
        channel, payload = decoded
        port_index, is_error = divmod(channel, 2)
        if is_error or not 0 <= port_index < len(inbound) or not payload:
            continue  # error channels are write-only; empty writes carry nothing
        await inbound[port_index].put(payload)


async def _forward(dial: Dial, port: int, index: int, channels: _Channels,
                   inbound: asyncio.Queue[bytes]) -> None:
    data, error = 2 * index, 2 * index + 1
    try:
        conn = await dial(port)
    except PortForwardError as e:
        await channels.send(error, str(e).encode())
        return

    async def to_pod(conn: Duplex) -> None:
        while True:
            await conn.write(await inbound.get())

    up = asyncio.create_task(to_pod(conn))
    try:
        while chunk := await conn.read():
            await channels.send(data, chunk)
    except PortForwardError as e:
        await channels.send(error, str(e).encode())
    finally:
        up.cancel()
        await asyncio.gather(up, return_exceptions=True)
        with contextlib.suppress(Exception):
            await conn.close()
