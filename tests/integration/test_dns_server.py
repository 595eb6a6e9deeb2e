"""The cluster DNS server on a loopback port, fed by informers on a real API server:
Services and EndpointSlices written through the API are answered over UDP and TCP, changes
show at once, and other names go to an upstream resolver the test runs on loopback (no
traffic leaves the machine), SERVFAIL when it does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from pinnace.cluster import ComponentRunner
from pinnace.proxy.dns_server import DnsServer, DnsSettings
from tests.integration.conftest import eventually


class Upstream(asyncio.DatagramProtocol):
    """A resolver on loopback answering every A question with 192.0.2.1 (TEST-NET-1)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.asked: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = DNSRecord.parse(data)
        self.asked.append(str(q.q.qname))
        reply = q.reply()
        reply.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
        self.transport.sendto(reply.pack(), addr)


@contextlib.asynccontextmanager
async def udp_server(protocol: asyncio.DatagramProtocol) -> AsyncIterator[int]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def udp_query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    def exchange() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(DNSRecord.question(name, qtype).pack(), ("127.0.0.1", port))
            return s.recv(65535)
    return DNSRecord.parse(await asyncio.to_thread(exchange))


async def tcp_query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = DNSRecord.question(name, qtype).pack()
        writer.write(struct.pack("!H", len(data)) + data)
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return DNSRecord.parse(await reader.readexactly(length))
    finally:
        writer.close()


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA))


async def start_dns(components: ComponentRunner, client: Any, **settings: Any) -> DnsServer:
    dns = DnsServer(client, components.factory,
                    DnsSettings(address="127.0.0.1", port=0, **settings))
    await components.start(dns)
    await asyncio.wait_for(dns.ready.wait(), 10)
    return dns


async def test_services_and_slices_from_the_api_are_answered(
        client: Any, components: ComponentRunner) -> None:
    svc_rt = client.resource("v1", "Service")
    es_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    svc = await client.create(svc_rt, {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 8080, "targetPort": 80}]}})
    cluster_ip = svc["spec"]["clusterIP"]
    await client.create(svc_rt, {
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432}]}})
    await client.create(es_rt, {
        "metadata": {"name": "db-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.42.0.7"], "hostname": "db-0",
                       "conditions": {"ready": True}},
                      {"addresses": ["10.42.0.8"], "conditions": {"ready": False}}]})
    dns = await start_dns(components, client, upstreams=())

    for query in (udp_query, tcp_query):
        reply = await query(dns.port, "web.default.svc.cluster.local")
        assert addresses(reply) == [cluster_ip], query
        assert addresses(await query(dns.port, "db.default.svc.cluster.local")) == \
            ["10.42.0.7"]
    srv = await udp_query(dns.port, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert [str(rr.rdata) for rr in srv.rr] == ["0 100 5432 db-0.db.default.svc.cluster.local."]
    missing = await udp_query(dns.port, "nope.default.svc.cluster.local")
    assert missing.header.rcode == RCODE.NXDOMAIN

    # a change through the API shows in the next answer, the cached one included
    await client.patch(es_rt, "db-1", [{"op": "replace", "path": "/endpoints/1/conditions",
                                        "value": {"ready": True}}],
                       namespace="default", patch_type="json")

    async def both_ready() -> bool:
        reply = await udp_query(dns.port, "db.default.svc.cluster.local")
        return addresses(reply) == ["10.42.0.7", "10.42.0.8"]
    await eventually(both_ready)
    await client.delete(svc_rt, "web", namespace="default")

    async def gone() -> bool:
        reply = await udp_query(dns.port, "web.default.svc.cluster.local")
        return reply.header.rcode == RCODE.NXDOMAIN
    await eventually(gone)


async def test_other_names_are_forwarded_to_the_upstream(
        client: Any, components: ComponentRunner) -> None:
    upstream = Upstream()
    async with udp_server(upstream) as port:
        dns = await start_dns(components, client, upstreams=(("127.0.0.1", port),))
        reply = await udp_query(dns.port, "example.org")
        assert addresses(reply) == ["192.0.2.1"]
        assert upstream.asked == ["example.org."]
        # the cluster's own names never reach it
        await udp_query(dns.port, "nope.default.svc.cluster.local")
        assert upstream.asked == ["example.org."]


async def test_servfail_when_no_upstream_answers(
        client: Any, components: ComponentRunner) -> None:
    silent = asyncio.DatagramProtocol()  # receives, never answers: the timeout path
    async with udp_server(silent) as silent_port:
        dns = await start_dns(components, client, forward_timeout=0.2,
                              upstreams=(("127.0.0.1", free_udp_port()),
                                         ("127.0.0.1", silent_port)))
        for query in (udp_query, tcp_query):
            reply = await query(dns.port, "example.org")
            assert reply.header.rcode == RCODE.SERVFAIL, query
            assert reply.header.id != 0 and reply.rr == []


async def test_garbage_is_dropped_or_formerr_and_the_server_keeps_answering(
        client: Any, components: ComponentRunner) -> None:
    dns = await start_dns(components, client, upstreams=())

    def send(data: bytes) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto(data, ("127.0.0.1", dns.port))
            try:
                return s.recv(65535)
            except TimeoutError:
                return None
    assert await asyncio.to_thread(send, b"\x01") is None  # not even a header
    answer = DNSRecord.question("web.default.svc.cluster.local").reply().pack()
    assert await asyncio.to_thread(send, answer) is None  # an answer: never answered
    bad = DNSRecord.question("web.default.svc.cluster.local").pack()[:20]
    reply = DNSRecord.parse(await asyncio.to_thread(send, bad))
    assert reply.header.rcode == RCODE.FORMERR
    reply = await udp_query(dns.port, "cluster.local", "SOA")
    assert reply.header.rcode == RCODE.NOERROR and len(reply.rr) == 1


@pytest.mark.parametrize("cache", [True, False])
async def test_answers_are_the_same_with_and_without_the_cache(
        client: Any, components: ComponentRunner, cache: bool) -> None:
    dns = await start_dns(components, client, upstreams=(), cache=cache)
    for _ in range(2):
        first = await udp_query(dns.port, "kubernetes.default.svc.cluster.local")
        assert first.header.rcode == RCODE.NOERROR, first
        assert addresses(first) == ["10.96.0.1"]


async def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(
        client: Any, components: ComponentRunner) -> None:
    await client.create(client.resource("v1", "Service"), {
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})
    ips = [f"10.42.1.{i}" for i in range(2, 62)]  # 60 A records: over 512 bytes
    await client.create(client.resource("discovery.k8s.io/v1", "EndpointSlice"), {
        "metadata": {"name": "big-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "ports": [{"port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip]} for ip in ips]})
    dns = await start_dns(components, client, upstreams=())
    udp = await udp_query(dns.port, "big.default.svc.cluster.local")
    assert udp.header.tc and udp.rr == []  # the client retries over TCP, as resolvers do
    tcp = await tcp_query(dns.port, "big.default.svc.cluster.local")
    assert not tcp.header.tc and addresses(tcp) == sorted(ips)


async def test_forwarding_beyond_the_limit_is_refused(
        client: Any, components: ComponentRunner) -> None:
    silent = asyncio.DatagramProtocol()
    async with udp_server(silent) as silent_port:
        dns = await start_dns(components, client, forward_timeout=2.0, max_forwards=3,
                              upstreams=(("127.0.0.1", silent_port),))

        def flood() -> list[int]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(1.0)
                for i in range(4):
                    s.sendto(DNSRecord.question(f"n{i}.example.org").pack(),
                             ("127.0.0.1", dns.port))
                return [DNSRecord.parse(s.recv(65535)).header.rcode]
        # three wait on the silent upstream; the fourth is refused at once
        assert await asyncio.to_thread(flood) == [RCODE.REFUSED]
        assert len(dns.forwarding) == 3
