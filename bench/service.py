"""The Service data path: throughput through a ClusterIP and a NodePort beside the pod IP,
and programming latency (a change → its rules in the kernel) with 1,000 and 10,000 Services.

    python -m bench.service [--services 1000,10000] [--changes 100] [--full-changes 10]
                            [--gap 0.5] [--duration 3] [--rounds 3] [--images DIR]
                            [--no-throughput]

One process, the composition root's pieces: an API server (`Cluster`, no controllers, no
node) on a temporary data dir with real SQLite, and the service proxy (`Proxier`) on its own
`ComponentRunner`, writing a table of its own (`pinnace-svc-<hash of the data dir>`).

(a) Throughput: real runc nginx pods (the test images of scripts/build-test-images,
imported into the data dir; a random /24 pod CIDR in 10.200.0.0/13), one per target, each
but the baseline's behind a NodePort Service whose EndpointSlice is written through the API.
Load: Debian's `wrk` (1 thread, 16 connections, `--duration` seconds, `--rounds` rounds per
target taken in turn; medians shown), at the pod IP (the baseline), the ClusterIP, the
NodePort on a node address (the pod bridge's) and on 127.0.0.1; once with keep-alive (the
NAT decision is made once per connection) and once with `Connection: close` (a new
connection, so a new NAT decision, per request).

(b) Programming latency: N Services of 3 endpoints each (Services and EndpointSlices written
straight through the API; endpoints are addresses nobody has, in 10.250.0.0/16, standing for
other nodes' pods — this node's pod CIDR is 10.249.0.0/24 —; no traffic is sent). A change
is timed from just before its API call to the end of the proxy's `nft -f` transaction that
carries it (the proxier's `written_at`, read in this process: `nft monitor` or listing the
element would read the whole ruleset, costlier than the change itself at 10,000 Services):
"endpoint" replaces one endpoint of a random Service's slice; "new Service" creates a slice
and then its Service. One change at a time, `--gap` to twice that apart (with tens of
thousands of objects in the table, an `nft list` elsewhere on the host restarts its dump
whenever the ruleset changes meanwhile: changes back to back starve it). Two proxy modes in
the same run: partial syncs (this proxier) and every sync a full one (`full_sync_period=0`:
the whole table written per change, as the proxy did before). The first (full) sync's time
too.

Teardown always runs: the proxy's table removed, the pod and its network torn down (by the
runtime).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._common import build_images, markdown_table, percentile
from pinnace.agent.network import dir_hash
from pinnace.client.client import Client
from pinnace.cluster import Cluster, ClusterConfig, ComponentRunner
from pinnace.proxy import Proxier, ProxySettings, remove_table, table_name

REPO = Path(__file__).resolve().parent.parent
NS = "default"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def random_pod_cidr() -> str:
    return f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24"


# -- (a) throughput ---------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def wrk(url: str, *, duration: int, close: bool) -> tuple[float, float]:
    """(requests/s, p99 seconds) of one wrk run."""
    args = ["wrk", "-t1", "-c16", f"-d{duration}s", "--latency", url]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rps, float(value) * _UNITS[unit]


TARGETS = ("pod IP (baseline)", "ClusterIP", "NodePort, node address", "NodePort 127.0.0.1")


async def throughput(client: Client, data: Path, *, images: Path, table: str,
                     duration: int, rounds: int) -> list[tuple[str, ...]]:
    from pinnace.agent.images import ImageStore
    from pinnace.agent.runtime import ContainerConfig, PodSandboxConfig
    from pinnace.agent.runtime.runc import RuncRuntime
    ImageStore(data).import_archive(images / "nginx_1.19.tar")
    rt = RuncRuntime(data, pod_cidr=random_pod_cidr())
    runner = ComponentRunner(client)
    try:
        gateway = ipaddress.ip_network(rt.network.pod_cidr)[1]  # a node address
        targets: dict[str, str] = {}
        # one pod (and Service) per target: with one pod for all, its TIME_WAIT sockets
        # from one target's connections refuse (PAWS) another's from the same address and
        # port (the bridge's, masqueraded) with other TCP timestamps, and SYNs wait for a
        # 1 s retransmit: measured, 0.1-0.3 of the baseline with a connection per request
        for n, target in enumerate(TARGETS):
            sid = await rt.run_pod_sandbox(PodSandboxConfig(f"uid-bench-web-{n}",
                                                            f"web-{n}", NS))
            cid = await rt.create_container(sid, ContainerConfig("main", "nginx:1.19"))
            await rt.start_container(cid)
            pod_ip = (await rt.pod_sandbox_status(sid)).ip
            if n == 0:
                targets[target] = f"http://{pod_ip}:80/"
                continue
            svc = await client.create(client.resource("v1", "Service"), {
                "metadata": {"name": f"bench-web-{n}", "namespace": NS},
                "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8080,
                                                        "targetPort": 80}]}})
            await client.create(client.resource("discovery.k8s.io/v1", "EndpointSlice"), {
                "metadata": {"name": f"bench-web-{n}", "namespace": NS,
                             "labels": {"kubernetes.io/service-name": f"bench-web-{n}"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
                "endpoints": [{"addresses": [pod_ip]}]})
            node_port = svc["spec"]["ports"][0]["nodePort"]
            targets[target] = {
                1: f"http://{svc['spec']['clusterIP']}:8080/",
                2: f"http://{gateway}:{node_port}/",
                3: f"http://127.0.0.1:{node_port}/"}[n]
        await runner.start(Proxier(client, runner.factory, ProxySettings(
            table=table, bridge=rt.network.bridge, pod_cidr=rt.network.pod_cidr)))
        for url in targets.values():  # every path answers before anything is measured
            await _answers(url)
        rows = []
        for close in (False, True):
            results: dict[str, list[tuple[float, float]]] = {t: [] for t in targets}
            for _ in range(rounds):
                for name, url in targets.items():
                    results[name].append(await asyncio.to_thread(
                        wrk, url, duration=duration, close=close))
            base = statistics.median(r for r, _ in results[TARGETS[0]])
            for name, res in results.items():
                rps = statistics.median(r for r, _ in res)
                p99 = statistics.median(p for _, p in res)
                rows.append(("new connection per request" if close else "keep-alive", name,
                             f"{rps:,.0f}", ms(p99), f"{rps / base:.2f}"))
        return rows
    finally:
        await runner.stop()
        await rt.cleanup_all()


async def _answers(url: str, within: float = 20.0) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + within
    while True:
        try:
            await asyncio.to_thread(lambda: opener.open(url, timeout=1).read())
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} does not answer: {e}") from e
        await asyncio.sleep(0.2)


# -- (b) programming latency ------------------------------------------------------------

async def applied(proxier: Proxier, key: str, text: str, since: float,
                  within: float = 60.0) -> float:
    """When the proxy's transaction carrying `text` in `key`'s rules ended (after `since`):
    read in this process (`nft monitor` or listing would read the whole ruleset, which at
    10,000 Services costs more than the change, and makes every other `nft` on the host
    start its dump again whenever the ruleset changes meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        at = proxier.written_at.get(key, 0.0)
        rules = proxier.table.services.get(key)
        if at > since and rules is not None and text in repr(rules):
            return at
        if time.monotonic() > deadline:
            raise SystemExit(f"{text!r} not written for {key} within {within} s")
        await asyncio.sleep(0.001)


class Addresses:
    """Endpoint addresses nobody has (10.250.0.0/16; never sent traffic)."""

    def __init__(self) -> None:
        self._next = int(ipaddress.ip_address("10.250.0.1"))

    def take(self) -> str:
        self._next += 1
        return str(ipaddress.ip_address(self._next))


def slice_of(name: str, ips: list[str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"addresses": [ip]} for ip in ips]}


async def grow(client: Client, have: int, want: int, addresses: Addresses) -> None:
    """Services svc-<have>..svc-<want-1>, each with a slice of 3 endpoints."""
    svc_rt = client.resource("v1", "Service")
    es_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await client.create(es_rt, slice_of(f"svc-{i}", [addresses.take()
                                                            for _ in range(3)]))
            await client.create(svc_rt, {"metadata": {"name": f"svc-{i}", "namespace": NS},
                                         "spec": {"ports": [{"name": "http", "port": 80}]}})
    await asyncio.gather(*(one(i) for i in range(have, want)))


async def programming(client: Client, *, services: int, table: str, pod_cidr: str,
                      full: bool, changes: int, gap: float, addresses: Addresses,
                      created: list[int]) -> list[tuple[str, ...]]:
    svc_rt = client.resource("v1", "Service")
    es_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    runner = ComponentRunner(client)
    settings = ProxySettings(table=table, bridge="pnbench-none", pod_cidr=pod_cidr,
                             full_sync_period=0.0 if full else 3600.0)
    try:
        proxier = Proxier(client, runner.factory, settings)
        t0 = time.monotonic()
        await runner.start(proxier)
        while True:  # the first (full) sync
            if proxier.full_syncs:
                break
            await asyncio.sleep(0.01)
        first = time.monotonic() - t0
        endpoint, new_service = [], []
        for n in range(changes):
            await asyncio.sleep(random.uniform(gap, gap * 2))
            if n % 2 == 0:
                name = f"svc-{random.randrange(services)}"
                es = await client.get(es_rt, name, NS)
                ip = addresses.take()
                es["endpoints"][2] = {"addresses": [ip]}
                start = time.monotonic()
                await client.update(es_rt, es)
                endpoint.append(await applied(proxier, f"{NS}/{name}", f"dnat to {ip}:80",
                                              start) - start)
            else:
                name = f"new-{created[0]}"
                created[0] += 1
                start = time.monotonic()
                await client.create(es_rt, slice_of(name, [addresses.take()
                                                           for _ in range(3)]))
                svc = await client.create(svc_rt, {
                    "metadata": {"name": name, "namespace": NS},
                    "spec": {"ports": [{"name": "http", "port": 80}]}})
                new_service.append(await applied(
                    proxier, f"{NS}/{name}", f"'{svc['spec']['clusterIP']} . tcp . 80': "
                    f"'goto svc-", start) - start)
        mode = "full (every sync)" if full else "partial"
        return [(f"{services:,}", mode, kind, str(len(v)), ms(statistics.median(v)),
                 ms(percentile(v, 99)), ms(first))
                for kind, v in (("endpoint", endpoint), ("new Service", new_service))]
    finally:
        await runner.stop()


async def run(args: argparse.Namespace, tmp: Path) -> None:
    data = tmp / "data"
    data.mkdir()
    table = table_name(dir_hash(data))
    cluster = Cluster(ClusterConfig(data_dir=data, port=0, controllers=False,
                                    scheduler=False))
    await cluster.start()
    try:
        if not args.no_throughput:
            images = build_images(tmp, args.images)
            rows = await throughput(cluster.client, data, images=images, table=table,
                                    duration=args.duration, rounds=args.rounds)
            print(markdown_table(("load (wrk -t1 -c16)", "target", "requests/s", "p99 ms",
                              "of baseline"), rows))
            print(flush=True)
        addresses = Addresses()
        created, have = [0], 0
        rows = []
        for n in sorted(x for x in args.services if x > 0):  # 0: throughput only
            t0 = time.monotonic()
            await grow(cluster.client, have, n, addresses)
            have = n
            print(f"bench: {n:,} Services with 3 endpoints written in "
                  f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
            for full in (False, True):
                rows += await programming(
                    cluster.client, services=n, table=table, pod_cidr="10.249.0.0/24",
                    full=full, changes=args.full_changes if full else args.changes,
                    gap=args.gap, addresses=addresses, created=created)
                print(markdown_table(("Services", "proxy", "change", "n", "p50 ms", "p99 ms",
                                  "first full sync ms"), rows[-2:]), file=sys.stderr,
                      flush=True)
        if rows:
            print(markdown_table(("Services", "proxy", "change → in the kernel", "n", "p50 ms",
                              "p99 ms", "first full sync ms"), rows))
        print(f"\n(load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
              f" on {os.cpu_count()} CPUs)")
    finally:
        await cluster.stop()
        await remove_table(table, bridge="pnbench-none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1000, 10000], help="sizes, comma-separated")
    parser.add_argument("--changes", type=int, default=100,
                        help="changes timed per size with partial syncs")
    parser.add_argument("--full-changes", type=int, default=10,
                        help="changes timed per size with full syncs")
    parser.add_argument("--gap", type=float, default=0.5,
                        help="seconds (at least; at most twice) between two changes: other "
                             "nft commands on the host must get to read the ruleset")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per target")
    parser.add_argument("--images", type=Path, default=None,
                        help="a dir with nginx_1.19.tar (default: scripts/build-test-images)")
    parser.add_argument("--no-throughput", action="store_true",
                        help="programming latency only")
    args = parser.parse_args()
    for tool in ("nft", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench.service needs {tool} (Debian: nftables, wrk)")
    with tempfile.TemporaryDirectory(prefix=f"bench-service-{secrets.token_hex(3)}-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
