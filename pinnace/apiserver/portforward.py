"""`pods/{name}/portforward`: the client-facing end of `kubectl port-forward`.

(Other clients' WebSocket channel protocol, `v4.channel.k8s.io`, is served beside it by
`portforward_channels.py` over the same kubelet leg.)

kubectl (client-go 1.31+) first asks for a WebSocket with subprotocol
`SPDY/3.1+portforward.k8s.io` and runs SPDY/3.1 inside binary messages; when that
upgrade is refused it falls back to a plain `Upgrade: SPDY/3.1` connection. Both end
in the same SPDY session here (`PortForwardSession`).

Per local connection kubectl opens two streams with headers `streamType: error|data`,
`port: N`, `requestID: K`. When both of a pair have arrived the session dials the pod's
port through the caller's `dial(port)` (normally a WebSocket to the kubelet, see
`dial_kubelet`) and relays bytes between the data stream and that `Duplex`. A failure
is written as text on the error stream; either way both streams end with FIN, which is
what kubectl waits for before it forgets the connection.

The kubelet leg (`dial_kubelet`) is a WebSocket: binary messages carry bytes, an empty
binary message is a half-close (EOF) from the sender, a text message is an error text
(already in kubelet wording: "error forwarding port …") after which the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from aiohttp import web

from pinnace.api import errors
from pinnace.apiserver import spdy

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+" + PROTOCOL  # kubectl's SPDY-over-WebSocket subprotocol
# the kubelet's channel protocols, which other clients speak (portforward_channels.py)
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io")
CHUNK = 32 * 1024
PAIR_TIMEOUT = 30.0  # like the kubelet's stream creation timeout


class PortForwardError(Exception):
    """The far end could not forward: the message is shown to the user as is."""


class Duplex(Protocol):
    """A byte stream to one port of a pod."""

    async def read(self) -> bytes:
        """Next bytes; b"" at EOF. Raises PortForwardError when forwarding failed."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None:
        """No more bytes from this side (the other direction stays open)."""
        ...

    async def close(self) -> None: ...


Dial = Callable[[int], Awaitable[Duplex]]


# --- the kubelet leg -------------------------------------------------------------------

class WebSocketDuplex:
    """A `Duplex` over a client WebSocket speaking the kubelet leg's convention."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                return b""  # the kubelet saw EOF from the pod
            if msg.type == aiohttp.WSMsgType.TEXT:
                raise PortForwardError(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED):
                return b""
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise PortForwardError(f"connection to the kubelet failed: {msg.data}")

    async def write(self, data: bytes) -> None:
        if data:
            await self._ws.send_bytes(data)

    async def write_eof(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.send_bytes(b"")

    async def close(self) -> None:
        await self._ws.close()


async def dial_kubelet(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                       ssl: ssl.SSLContext | bool, port: int) -> Duplex:
    """Open the kubelet's `url` (…/portForward/NS/POD) for `port` as a WebSocket."""
    try:
        ws = await session.ws_connect(url, params={"port": str(port)}, headers=headers,
                                      ssl=ssl, max_msg_size=0, autoping=True,
                                      heartbeat=None)
    except (aiohttp.ClientError, OSError) as e:
        raise PortForwardError(f"error dialing backend: {e}") from None
    return WebSocketDuplex(ws)


# --- the client-facing end -------------------------------------------------------------

class _Stream:
    """One SPDY stream opened by the client."""

    def __init__(self, stream_id: int, kind: str, headers: spdy.Headers) -> None:
        self.id = stream_id
        self.kind = kind  # "error" or "data"
        self.headers = headers
        self.inbound: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)  # b"" = FIN
        self.remote_done = False  # FIN or RST received
        self.reset = asyncio.Event()  # RST received, or the client went away
        self.local_done = False  # we sent FIN (or may no longer send)


class _Pair:
    def __init__(self) -> None:
        self.error: _Stream | None = None
        self.data: _Stream | None = None
        self.task: asyncio.Task[None] | None = None
        self.complete = asyncio.Event()  # both streams arrived


class PortForwardSession:
    """A server-side SPDY/3.1 session carrying port-forward stream pairs.

    `send` writes one chunk of bytes to the client (already a whole frame or frames);
    the caller feeds received bytes to `feed` and calls `finish` at EOF."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], dial: Dial) -> None:
        self._send = send
        self._dial = dial
        self._reader = spdy.FrameReader()
        self._encoder = spdy.HeaderEncoder()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, _Stream] = {}
        self._pairs: dict[str, _Pair] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def write(self, frame: bytes) -> None:
        async with self._write_lock:
            if not self.closed:
                await self._send(frame)

    async def feed(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            if isinstance(frame, spdy.DataFrame):
                await self._on_data(frame)
            else:
                await self._on_control(frame)

    async def _on_data(self, frame: spdy.DataFrame) -> None:
        s = self._streams.get(frame.stream_id)
        if s is None or s.remote_done:
            return
        if frame.data and s.kind == "data":  # nothing reads what a client writes to errors
            await s.inbound.put(frame.data)
        if frame.fin:
            s.remote_done = True
            await s.inbound.put(b"")
            if s.local_done:
                self._streams.pop(s.id, None)

    async def _on_control(self, frame: spdy.ControlFrame) -> None:
        if frame.type == spdy.SYN_STREAM:
            await self._on_syn_stream(frame)
        elif frame.type == spdy.RST_STREAM:
            s = self._streams.pop(frame.stream_id, None)
            if s is not None:
                s.local_done = s.remote_done = True
                s.reset.set()
        elif frame.type == spdy.PING:
            await self.write(spdy.encode_ping(spdy.ping_id(frame)))
        elif frame.type == spdy.GOAWAY:
            self.closed = True
        # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do (spdystream has no flow control)

    async def _on_syn_stream(self, frame: spdy.ControlFrame) -> None:
        sid, h = frame.stream_id, frame.headers
        stream_type = spdy.header(h, "streamType")
        request_id = spdy.header(h, "requestID")
        port = spdy.header(h, "port")
        if stream_type not in ("error", "data") or not port or sid in self._streams:
            await self.write(spdy.encode_rst_stream(sid, spdy.RST_PROTOCOL_ERROR))
            return
        s = _Stream(sid, stream_type, h)
        self._streams[sid] = s
        if frame.fin:
            s.remote_done = True
            s.inbound.put_nowait(b"")
        await self.write(spdy.encode_syn_reply(self._encoder, sid))
        # kubectl before 1.10 sent no requestID; its pairs are then keyed by port
        key = request_id if request_id is not None else f"port-{port}"
        pair = self._pairs.setdefault(key, _Pair())
        if stream_type == "error":
            pair.error = s
        else:
            pair.data = s
        if pair.error is not None and pair.data is not None:
            pair.complete.set()
        if pair.task is None:
            pair.task = self._spawn(self._serve_pair(key, pair))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fin(self, s: _Stream | None, data: bytes = b"") -> None:
        if s is not None and not s.local_done:
            s.local_done = True
            await self.write(spdy.encode_data(s.id, data, fin=True))

    async def _serve_pair(self, key: str, pair: _Pair) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pair.complete.wait(), PAIR_TIMEOUT)
            if pair.error is None or pair.data is None:
                await self._fin(pair.error, b"timeout waiting for data stream")
                await self._fin(pair.data)
                return
            message = await self._forward(spdy.header(pair.data.headers, "port") or "",
                                          pair.data)
            await self._fin(pair.error, message.encode())
            await self._fin(pair.data)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self._pairs.pop(key, None)
            for s in (pair.error, pair.data):
                if s is not None and s.local_done and s.remote_done:
                    self._streams.pop(s.id, None)

    async def _forward(self, port_header: str, data: _Stream) -> str:
        """Relay between `data` and the pod's port; the error text, or "" on success."""
        port = int(port_header) if port_header.isdigit() else 0
        if not 0 < port < 65536:
            return f"invalid port {port_header!r}"  # kubectl checks first: not reached
        try:
            conn = await self._dial(port)
        except PortForwardError as e:
            return str(e)
        failure: list[str] = []

        async def upstream() -> None:  # client -> pod
            while True:
                chunk = await data.inbound.get()
                if not chunk:
                    await conn.write_eof()
                    return
                await conn.write(chunk)

        async def downstream() -> None:  # pod -> client
            try:
                while not data.reset.is_set():
                    chunk = await conn.read()
                    if not chunk:
                        break
                    await self.write(spdy.encode_data(data.id, chunk))
            except PortForwardError as e:
                failure.append(str(e))
            await self._fin(data)

        up, down = self._spawn(upstream()), self._spawn(downstream())
        reset = self._spawn(data.reset.wait())
        try:
            # the pod's side ending (or failing) ends the pair, and so does the client's
            # RST; the client's FIN only half-closes
            await asyncio.wait({down, reset}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down, reset):
                t.cancel()
            await asyncio.gather(up, down, reset, return_exceptions=True)
            with contextlib.suppress(Exception):
                await conn.close()
        return failure[0] if failure else ""

    async def finish(self) -> None:
        """The client's connection ended: stop every pair."""
        self.closed = True
        for s in self._streams.values():
            s.local_done = s.remote_done = True
            s.reset.set()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _offered_protocols(request: web.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()]


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def serve_port_forward(request: web.Request, dial: Dial) -> web.StreamResponse:
    """Serve `pods/{name}/portforward` (GET or POST with an Upgrade): SPDY/3.1, tunnelled
    in a WebSocket or plain, or WebSocket channels (`portforward_channels`); each
    forwarded connection is relayed to `dial(port)`."""
    if _is_websocket(request):
        offered = _offered_protocols(request)
        if TUNNEL_PROTOCOL in offered:
            return await _serve_tunnel(request, dial)
        # the other module builds on this one's Duplex and errors: imported when used
        from pinnace.apiserver import portforward_channels
        protocol = portforward_channels.choose_protocol(offered)
        if protocol is not None:
            return await portforward_channels.serve(request, dial, protocol)
        raise errors.ApiError(400, "BadRequest",
                              f"requested protocol(s) are not supported: [{' '.join(offered)}]"
                              f"; supports [{' '.join((TUNNEL_PROTOCOL, *CHANNEL_PROTOCOLS))}]")
    if request.headers.get("Upgrade", "").lower() == "spdy/3.1":
        return await _serve_spdy(request, dial)
    raise errors.ApiError(400, "BadRequest", "Upgrade request required")


async def _serve_tunnel(request: web.Request, dial: Dial) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), max_msg_size=0, autoping=True)
    await ws.prepare(request)
    session = PortForwardSession(ws.send_bytes, dial)
    try:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await session.feed(msg.data)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                break
    except spdy.ProtocolError as e:
        log.info("port-forward: %s", e)
    finally:
        await session.finish()
        await ws.close()
    return ws


class _RawReader:
    """Takes over an aiohttp connection's bytes after a 101 (aiohttp itself only passes
    WebSocket and TCP upgrades through). Reading pauses when the consumer lags."""

    HIGH_WATER = 1 << 20

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()  # b"" = EOF
        self._buffered = 0
        self._paused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._chunks.put_nowait(bytes(data))
        self._buffered += len(data)
        if self._buffered > self.HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._chunks.put_nowait(b"")

    async def read(self) -> bytes:
        data = await self._chunks.get()
        self._buffered -= len(data)
        if self._paused and self._buffered < self.HIGH_WATER // 2:
            self._paused = False
            self._transport.resume_reading()
        return data


async def _serve_spdy(request: web.Request, dial: Dial) -> web.StreamResponse:
    """The plain SPDY/3.1 upgrade: answer 101 and speak SPDY on the raw connection."""
    protocols = [p.strip() for p in request.headers.getall("X-Stream-Protocol-Version", [])]
    if protocols and PROTOCOL not in protocols:
        raise errors.ApiError(403, "Forbidden",
                              f"unable to upgrade: unable to negotiate protocol: client "
                              f"supports {protocols}, server supports [{PROTOCOL}]")
    transport, protocol = request.transport, request.protocol
    if transport is None or not isinstance(transport, asyncio.Transport):
        raise errors.ApiError(400, "BadRequest", "the connection is closed")
    resp = web.StreamResponse(status=101, headers={
        "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": PROTOCOL})
    resp.force_close()
    await resp.prepare(request)
    raw = _RawReader(transport)
    protocol.set_parser(raw)  # type: ignore[arg-type]  # the bytes after the 101 are SPDY

    async def send(frame: bytes) -> None:
        transport.write(frame)  # past the 101: raw bytes, no HTTP framing
        # the transport has no awaitable drain here: wait out a slow reader instead
        while transport.get_write_buffer_size() > _RawReader.HIGH_WATER:
            if transport.is_closing():
                raise ConnectionResetError("the client went away")
            await asyncio.sleep(0.005)

    session = PortForwardSession(send, dial)
    try:
        while data := await raw.read():
            await session.feed(data)
    except spdy.ProtocolError as e:
        log.info("port-forward: %s", e)
    finally:
        await session.finish()
        transport.close()
    return resp
