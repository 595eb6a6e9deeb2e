"""Forwarding the names the cluster does not own to the host's resolvers (CoreDNS'
`forward . /etc/resolv.conf`).

The query goes out as the client sent it (same id, same flags and EDNS options), over the
transport it came in on: UDP from a socket of its own per query (so ids of different
clients never mix, and a late answer to an abandoned query lands nowhere), TCP on a
connection of its own. Upstreams are tried in their resolv.conf order, each for `wait`
seconds; None when none answered (the server then answers SERVFAIL). A truncated UDP
answer is passed on as it is: the client retries over TCP, and so do we.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["Upstream", "forward", "upstreams_from_resolv_conf"]

Upstream = tuple[str, int]  # (address, port)


def upstreams_from_resolv_conf(path: str | Path = "/etc/resolv.conf",
                               exclude: tuple[str, ...] = ()) -> tuple[Upstream, ...]:
    """The `nameserver` lines of a resolv.conf, as (address, 53), without `exclude` (our
    own address: forwarding to ourselves would loop)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return ()
    out: list[Upstream] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            addr = parts[1].split("%", 1)[0]  # fe80::1%eth0: the zone is not ours to use
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                continue
            if addr not in exclude and (addr, 53) not in out:
                out.append((addr, 53))
    return tuple(out)


class _OneAnswer(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes) -> None:
        self.query_id = query_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if data[:2] == self.query_id and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        if not self.answer.done():
            self.answer.set_exception(exc)


async def _udp(query: bytes, upstream: Upstream, wait: float) -> bytes:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _OneAnswer(query[:2]), remote_addr=upstream)
    try:
        transport.sendto(query)
        return await asyncio.wait_for(protocol.answer, wait)
    finally:
        transport.close()


async def _tcp(query: bytes, upstream: Upstream, wait: float) -> bytes:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return await asyncio.wait_for(exchange(), wait)


async def forward(query: bytes, upstreams: tuple[Upstream, ...], *, wait: float,
                  tcp: bool = False) -> bytes | None:
    """The first upstream's answer to `query` (wire format; `wait`: seconds per
    upstream), or None."""
    for upstream in upstreams:
        try:
            return await (_tcp if tcp else _udp)(query, upstream, wait)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error) as e:
            log.debug("upstream %s:%d did not answer: %r", *upstream, e)
    return None
