"""The cluster DNS of one node: answers `cluster.local` from informer caches (what it
answers: see `dns_records`) on the node's pod-bridge gateway address, port 53, UDP and TCP;
forwards every other name to the host's resolvers (see `dns_forward`).

An API client like every component: informers on Services and EndpointSlices from the
shared factory (slices indexed by their Service). A handler maps the changed object to its
Service's key and recomputes that Service's names from the informer caches at once, so an
answer is never older than the informer, and a query costs a dict lookup, not a scan.

The hot path: a UDP query is parsed and answered in `datagram_received`, with no task per
query. Encoded answers are cached by the query's bytes after its id (same question, flags
and EDNS options → same answer, but for the id); the cache empties whenever the index
changes, and when it is full. Forwarded queries each run as a task (at most
`max_forwards` at once, more are refused) and are not cached (the upstream's resolver
caches them). A query that fails to be answered gets SERVFAIL; what is not a query at all
(no header, or an answer sent to us) is dropped.

Listening: the gateway address exists only once the pod bridge does (CNI makes it with the
first pod), so the sockets are bound with IP_FREEBIND: bound now, they receive as soon as
the address appears. They are this process's sockets: `pinnace down` stops the process,
and nothing is left listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

from dnslib import OPCODE, QTYPE, RCODE, DNSError, DNSHeader, DNSRecord
from dnslib.buffer import Buffer

from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.proxy.dns_forward import Upstream, forward, upstreams_from_resolv_conf
from pinnace.proxy.dns_records import ZONE, DnsIndex

log = logging.getLogger(__name__)

__all__ = ["DnsServer", "DnsSettings"]

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux's value; Python does not name it
SERVICE_INDEX = "dns-service"  # EndpointSlices by `namespace/<kubernetes.io/service-name>`
CACHE_ENTRIES = 10_000
TCP_IDLE = 10.0  # seconds a TCP client may stay silent


@dataclass(frozen=True, kw_only=True)
class DnsSettings:
    address: str  # the node's pod-bridge gateway (or 127.0.0.1 for tests and benches)
    port: int = 53  # 0: a free port (then see `DnsServer.port`)
    zone: str = ZONE
    upstreams: tuple[Upstream, ...] | None = None  # None: /etc/resolv.conf's nameservers
    forward_timeout: float = 2.0  # seconds per upstream
    cache: bool = True  # the encoded-answer cache (off: every query parsed and built)
    max_forwards: int = 1000  # UDP queries forwarded at once; more are REFUSED (CoreDNS'
    #                           forward max_concurrent): a flood cannot exhaust the sockets


def _slice_service(s: Obj) -> list[str]:
    name = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
    return [f"{s['metadata'].get('namespace', '')}/{name}"] if name else []


def _bind(kind: socket.SocketKind, address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            # TCP only: a restarted server rebinds past TIME_WAIT. On UDP it would let a
            # second server bind the same address and port and silently share the queries
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _error_reply(data: bytes, rcode: int) -> bytes:
    """A header-only answer with `rcode` (FORMERR, SERVFAIL) to the query `data`, or b""
    (drop it) when not even its header can be read."""
    try:
        query = DNSHeader.parse(Buffer(data[:12]))
    except (DNSError, struct.error, IndexError, ValueError):
        return b""
    if query.qr:
        return b""  # an answer sent to us: answering it could start a loop
    header = DNSHeader(id=query.id, bitmap=query.bitmap, qr=1, ra=1)
    header.rcode = rcode
    return bytes(DNSRecord(header).pack())


def _udp_limit(request: DNSRecord) -> int:
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, min(int(rr.rclass), 65535))
    return 512


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        answer = self.server.answer(data, tcp=False)
        if answer is None:
            if len(self.server.forwarding) < self.server.settings.max_forwards:
                self.server.spawn(self._forward(data, addr))
                return
            answer = _error_reply(data, RCODE.REFUSED)
        if answer:  # b"": not a query at all, dropped
            self.transport.sendto(answer, addr)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = await self.server.forward(data, tcp=False)
        if answer and self.transport is not None and \
                not self.transport.is_closing():
            self.transport.sendto(answer, addr)


class DnsServer:
    """The cluster DNS of this node (the component: `async run()`)."""

    def __init__(self, client: Client, factory: InformerFactory,
                 settings: DnsSettings) -> None:
        self.client = client
        self.settings = settings
        self.index = DnsIndex(settings.zone)
        self.services = factory.informer("v1", "Service")
        self.slices = factory.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.slices.add_index(SERVICE_INDEX, _slice_service)
        self.services.add_handler(on_add=self._service_changed,
                                  on_update=lambda _old, new: self._service_changed(new),
                                  on_delete=self._service_changed)
        self.slices.add_handler(on_add=self._slice_changed,
                                on_update=self._slice_updated,
                                on_delete=self._slice_changed)
        self.upstreams = settings.upstreams if settings.upstreams is not None else \
            upstreams_from_resolv_conf(exclude=(settings.address,))
        self.port = settings.port
        self.ready = asyncio.Event()  # listening
        self._cache: dict[bytes, bytes] = {}
        self._cache_generation = -1
        self.forwarding: set[asyncio.Task[None]] = set()  # UDP queries being forwarded
        self._tcp_clients: set[asyncio.StreamWriter] = set()

    # -- the index, kept by the informers' handlers --------------------------------------

    def _update(self, key: str) -> None:
        ns, name = key.split("/", 1)
        self.index.update_service(key, self.services.get_by_name(name, ns),
                                  self.slices.by_index(SERVICE_INDEX, key))

    def _service_changed(self, service: Obj) -> None:
        self._update(key_of(service))

    def _slice_changed(self, s: Obj) -> None:
        for key in _slice_service(s):
            self._update(key)

    def _slice_updated(self, old: Obj, new: Obj) -> None:
        for key in set(_slice_service(old)) | set(_slice_service(new)):
            self._update(key)

    # -- answering -----------------------------------------------------------------------

    def answer(self, data: bytes, *, tcp: bool) -> bytes | None:
        """The encoded answer to a query, or None when it must be forwarded; SERVFAIL if
        answering failed (a bug: the client learns at once rather than timing out)."""
        try:
            return self._answer(data, tcp=tcp)
        except Exception:
            log.exception("answering a DNS query failed")
            return _error_reply(data, RCODE.SERVFAIL)

    def _answer(self, data: bytes, *, tcp: bool) -> bytes | None:
        key = data[2:]
        if self.settings.cache:
            if self._cache_generation != self.index.generation:
                self._cache.clear()
                self._cache_generation = self.index.generation
            hit = self._cache.get(key) if not tcp else None
            if hit is not None:
                return data[:2] + hit
        try:
            request = DNSRecord.parse(data)
        except (DNSError, struct.error, IndexError, ValueError):
            return _error_reply(data, RCODE.FORMERR)
        if request.header.qr:
            return b""  # an answer, not a query: answering it could start a loop
        if request.header.opcode != OPCODE.QUERY or len(request.questions) != 1:
            reply = request.reply()
            reply.header.rcode = RCODE.NOTIMP
            return bytes(reply.pack())
        reply = self.index.answer(request)
        if reply is None:
            return None
        out = bytes(reply.pack())
        if not tcp and len(out) > _udp_limit(request):
            out = bytes(reply.truncate().pack())
        if self.settings.cache and not tcp:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = out[2:]
        return out

    async def forward(self, data: bytes, *, tcp: bool) -> bytes:
        """The upstreams' answer to a query, SERVFAIL when none answered."""
        s = self.settings
        answer = await forward(data, self.upstreams, wait=s.forward_timeout, tcp=tcp)
        return answer if answer is not None else _error_reply(data, RCODE.SERVFAIL)

    def spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self.forwarding.add(task)
        task.add_done_callback(self.forwarding.discard)

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self._tcp_clients.add(writer)
        try:
            while True:
                (length,) = struct.unpack("!H", await asyncio.wait_for(
                    reader.readexactly(2), TCP_IDLE))
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                answer = self.answer(data, tcp=True)
                if answer is None:
                    answer = await self.forward(data, tcp=True)
                if answer:
                    writer.write(struct.pack("!H", len(answer)) + answer)
                    await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tcp_clients.discard(writer)
            writer.close()

    # -- the component -------------------------------------------------------------------

    async def run(self) -> None:
        s = self.settings
        await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())
        loop = asyncio.get_running_loop()
        try:
            tcp_sock = _bind(socket.SOCK_STREAM, s.address, s.port)
        except OSError as e:  # the rest of the node works on; only names do not resolve
            log.error("cluster DNS cannot listen on %s:%d (%s): pods will not resolve "
                      "Service names", s.address, s.port, e.strerror)
            await asyncio.Event().wait()
        self.port = tcp_sock.getsockname()[1]  # port 0: UDP takes the one TCP got
        try:
            udp_sock = _bind(socket.SOCK_DGRAM, s.address, self.port)
        except BaseException:
            tcp_sock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
        server = await asyncio.start_server(self._tcp_client, sock=tcp_sock)
        log.info("cluster DNS listening on %s:%d (UDP, TCP), forwarding to %s",
                 s.address, self.port, ", ".join(f"{a}:{p}" for a, p in self.upstreams)
                 or "nobody")
        self.ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            transport.close()
            server.close()
            for writer in list(self._tcp_clients):
                writer.close()
            for task in list(self.forwarding):
                task.cancel()
            with contextlib.suppress(Exception):
                await server.wait_closed()
