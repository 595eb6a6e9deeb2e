"""Cluster DNS throughput and latency, with Debian's dnsperf, beside Debian's unbound
serving the same records from `local-data` in the same run (both on loopback).

    python -m bench.dns [--services 100] [--headless 10] [--seconds 10] [--latency-qps 5000]
    (needs: apt-get install dnsperf unbound)

The pinnace DNS server runs in this process on a loopback port, its informers fed by a
real API server (`pinnace.cluster.Cluster`, in-process) holding `--services` ClusterIP
Services with a named port and `--headless` headless Services of 3 ready endpoints each,
written through the API. unbound (one thread, no validation, no cache prefetch) is given
the same names as local-data. The query file mixes what pods ask: A of ClusterIP and
headless Services, SRV of named ports, AAAA with no data, NXDOMAIN (the search-list
misses, the most common query in a real cluster) and PTR of ClusterIPs.

Each server gets two dnsperf runs: `--seconds` saturating (100 queries outstanding) for
queries/s, then as long at a steady `--latency-qps` with every query's latency reported
(-v) for p50/p99 (latency at saturation is mostly the queue's). The pinnace
server is measured twice: with its encoded-answer cache (as it runs) and without (every
query parsed and built with dnslib). Prints one table; the reference figure is CoreDNS'
own (coredns/deployment Scaling_CoreDNS.md: 33,669 QPS on 2 vCPUs, internal names).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
from pathlib import Path

from dnslib import DNSRecord

from pinnace.cluster import Cluster, ClusterConfig
from pinnace.proxy import DnsServer, DnsSettings

NS = "bench"
ZONE = "cluster.local"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u.bind(("127.0.0.1", port))
        return port


async def write_objects(cluster: Cluster, services: int, headless: int
                        ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Services and slices through the API; returns ClusterIPs and headless endpoints."""
    c = cluster.client
    await c.create(c.resource("v1", "Namespace"), {"metadata": {"name": NS}})
    svc_rt = c.resource("v1", "Service")
    es_rt = c.resource("discovery.k8s.io/v1", "EndpointSlice")
    cluster_ips: dict[str, str] = {}
    for i in range(services):
        svc = await c.create(svc_rt, {"metadata": {"name": f"svc-{i}", "namespace": NS},
                                      "spec": {"ports": [{"name": "http", "port": 80}]}})
        cluster_ips[f"svc-{i}"] = svc["spec"]["clusterIP"]
    endpoints: dict[str, list[str]] = {}
    for i in range(headless):
        name = f"db-{i}"
        await c.create(svc_rt, {"metadata": {"name": name, "namespace": NS},
                                "spec": {"clusterIP": "None",
                                         "ports": [{"name": "pg", "port": 5432}]}})
        ips = [f"10.44.{i}.{j + 2}" for j in range(3)]
        await c.create(es_rt, {
            "metadata": {"name": f"{name}-1", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "hostname": f"{name}-{j}",
                           "conditions": {"ready": True}} for j, ip in enumerate(ips)]})
        endpoints[name] = ips
    return cluster_ips, endpoints


def query_file(path: Path, cluster_ips: dict[str, str], endpoints: dict[str, list[str]]
               ) -> list[str]:
    lines: list[str] = []
    heads = list(endpoints)
    for i, (name, ip) in enumerate(cluster_ips.items()):
        fqdn = f"{name}.{NS}.svc.{ZONE}"
        lines += [f"{fqdn} A", f"{fqdn} A", f"{fqdn} AAAA",
                  f"{fqdn}.{NS}.svc.{ZONE} A",  # a search-list miss: NXDOMAIN
                  f"_http._tcp.{fqdn} SRV",
                  ".".join(reversed(ip.split("."))) + ".in-addr.arpa PTR"]
        if heads:
            lines.append(f"{heads[i % len(heads)]}.{NS}.svc.{ZONE} A")
    path.write_text("\n".join(lines) + "\n")
    return lines


def unbound_conf(path: Path, port: int, cluster_ips: dict[str, str],
                 endpoints: dict[str, list[str]]) -> None:
    data: list[str] = []
    for name, ip in cluster_ips.items():
        fqdn = f"{name}.{NS}.svc.{ZONE}."
        data += [f'local-data: "{fqdn} 5 IN A {ip}"',
                 f'local-data: "_http._tcp.{fqdn} 5 IN SRV 0 100 80 {fqdn}"',
                 f'local-data-ptr: "{ip} 5 {fqdn}"']
    for name, ips in endpoints.items():
        fqdn = f"{name}.{NS}.svc.{ZONE}."
        for j, ip in enumerate(ips):
            data += [f'local-data: "{fqdn} 5 IN A {ip}"',
                     f'local-data: "{name}-{j}.{fqdn} 5 IN A {ip}"',
                     f'local-data: "_pg._tcp.{fqdn} 5 IN SRV 0 33 5432 {name}-{j}.{fqdn}"']
    body = "\n    ".join(data)
    path.write_text(f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    num-threads: 1
    do-daemonize: no
    chroot: ""
    username: ""
    pidfile: ""
    directory: "{path.parent}"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "{ZONE}." static
    local-zone: "in-addr.arpa." static
    {body}
remote-control:
    control-enable: no
""")


async def dnsperf(port: int, queries: Path, seconds: float, rate: int = 0) -> str:
    """dnsperf's output; `rate`: that many queries/s, each query's latency reported."""
    args = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
            "-l", str(seconds), "-c", "4", "-q", "100", "-T", "1"]
    if rate:
        args += ["-v", "-Q", str(rate)]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


async def measure(port: int, queries: Path, seconds: float, rate: int) -> dict[str, str]:
    saturated = await dnsperf(port, queries, seconds)
    qps = re.search(r"Queries per second:\s+([\d.]+)", saturated)
    lost = re.search(r"Queries lost:\s+(\d+)", saturated)
    detailed = await dnsperf(port, queries, seconds, rate)
    latencies = sorted(float(m) for m in re.findall(r"^> \S+ .* ([\d.]+)$", detailed,
                                                    re.MULTILINE))
    if qps is None or not latencies:
        raise SystemExit(f"dnsperf failed:\n{saturated[-2000:]}\n{detailed[-2000:]}")
    p = statistics.quantiles(latencies, n=100)
    return {"qps": f"{float(qps.group(1)):,.0f}",
            "p50": f"{p[49] * 1000:.2f} ms", "p99": f"{p[98] * 1000:.2f} ms",
            "lost": lost.group(1) if lost else "?"}


async def check_same_answers(pinnace_port: int, unbound_port: int, queries: list[str]
                             ) -> None:
    """Both servers give the same answer sections (a bench of wrong answers is no bench)."""
    def ask(port: int, name: str, qtype: str) -> tuple[int, list[str]]:
        reply = DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", port,
                                                                     timeout=2))
        return reply.header.rcode, sorted(str(rr.rdata) for rr in reply.rr)
    for line in queries[:70]:
        name, qtype = line.split()
        ours = await asyncio.to_thread(ask, pinnace_port, name, qtype)
        theirs = await asyncio.to_thread(ask, unbound_port, name, qtype)
        if ours != theirs:
            raise SystemExit(f"{name} {qtype}: pinnace {ours} != unbound {theirs}")


async def main_async(args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dns-"))
    unbound = None
    try:
        async with Cluster(ClusterConfig(data_dir=tmp / "data", port=0, controllers=False,
                                         scheduler=False)) as cluster:
            cluster_ips, endpoints = await write_objects(cluster, args.services, args.headless)
            queries = tmp / "queries.txt"
            lines = query_file(queries, cluster_ips, endpoints)
            servers: dict[str, DnsServer] = {}
            for label, cache in (("pinnace", True), ("pinnace, no answer cache", False)):
                dns = DnsServer(cluster.client, cluster.factory, DnsSettings(
                    address="127.0.0.1", port=free_port(), upstreams=(), cache=cache))
                await cluster.run(dns)
                await asyncio.wait_for(dns.ready.wait(), 10)
                servers[label] = dns
            unbound_port = free_port()
            conf = tmp / "unbound.conf"
            unbound_conf(conf, unbound_port, cluster_ips, endpoints)
            unbound = await asyncio.create_subprocess_exec(
                "unbound", "-d", "-c", str(conf), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            for _ in range(100):  # until unbound answers
                try:
                    await asyncio.to_thread(DNSRecord.question(ZONE, "SOA").send,
                                            "127.0.0.1", unbound_port, timeout=0.1)
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            await check_same_answers(servers["pinnace"].port, unbound_port, lines)
            results = [("unbound 1.17 (1 thread, local-data)",
                        await measure(unbound_port, queries, args.seconds,
                                      args.latency_qps))]
            for label, dns in servers.items():
                results.append((label, await measure(dns.port, queries, args.seconds,
                                                     args.latency_qps)))
            return results
    finally:
        if unbound is not None and unbound.returncode is None:
            unbound.terminate()
            await unbound.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--headless", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-qps", type=int, default=5000)
    args = parser.parse_args()
    for tool in ("dnsperf", "unbound"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install dnsperf unbound")
    results = asyncio.run(main_async(args))
    width = max(len(label) for label, _ in results)
    at = f"@{args.latency_qps / 1000:g}k/s"
    print(f"{'server'.ljust(width)}  {'queries/s':>10}  {'p50 ' + at:>11}  {'p99 ' + at:>11}"
          "  lost")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 11}  {'-' * 11}  ----")
    for label, r in results:
        print(f"{label.ljust(width)}  {r['qps']:>10}  {r['p50']:>11}  {r['p99']:>11}  "
              f"{r['lost']}")
    print(f"reference: CoreDNS 33,669 queries/s on 2 vCPUs (Scaling_CoreDNS.md); "
          f"{args.services} Services + {args.headless} headless, {args.seconds:g} s per run; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus shared with dnsperf")


if __name__ == "__main__":
    main()
