"""The Service data path: throughput through a ClusterIP and a NodePort beside the pod IP,
and programming latency (a change → its rules in the kernel) with 1,000 and 10,000 Services.

    python -m bench.service [--services 1000,10000] [--changes 100] [--full-changes 10]
                            [--duration 3] [--rounds 3] [--images DIR] [--no-throughput]

One process, the composition root's pieces: an API server (`Cluster`, no controllers, no
node) on a temporary data dir with real SQLite, and the service proxy (`Proxier`) on its own
`ComponentRunner`, writing a table of its own (`pinnace-svc-<hash of the data dir>`).

(a) Throughput: one real runc nginx pod (the test images of scripts/build-test-images,
imported into the data dir; a random /24 pod CIDR in 10.200.0.0/13), a NodePort Service and
its EndpointSlice written through the API. Load: Debian's `wrk` (1 thread, 16 connections,
`--duration` seconds, `--rounds` rounds per target taken in turn; medians shown), at the pod
IP (the baseline), the ClusterIP, the NodePort on a node address (the pod bridge's) and on
127.0.0.1; once with keep-alive (the NAT decision is made once per connection) and once
with `Connection: close` (a new connection, so a new NAT decision, per request; from
127.0.0.1 that needs SNAT to one address, which conntrack's 120 s TIME_WAIT caps at ~64k
connections per 120 s).

(b) Programming latency: N Services of 3 endpoints each (Services and EndpointSlices written
straight through the API; endpoints are addresses nobody has, no traffic is sent). A change
is timed from just before its API call to the arrival, on `nft monitor`, of the rule or
element that carries it (the transaction applied): "endpoint" replaces one endpoint of a
random Service's slice; "new Service" creates a slice and then its Service. One change at a
time, 0.1-0.2 s apart. Two proxy modes in the same run: partial syncs (this proxier) and
every sync a full one (`full_sync_period=0`: the whole table written per change — what the
proxy did before). The first (full) sync's time is shown too.

Teardown always runs: the proxy's table removed, the pod and its network torn down (by the
runtime), `nft monitor` stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
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

from pinnace.agent.network import dir_hash
from pinnace.client.client import Client
from pinnace.cluster import Cluster, ClusterConfig, ComponentRunner
from pinnace.proxy import Proxier, ProxySettings, remove_table, table_name

REPO = Path(__file__).resolve().parent.parent
NS = "default"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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


async def throughput(client: Client, data: Path, *, images: Path, table: str,
                     duration: int, rounds: int) -> list[tuple[str, ...]]:
    from pinnace.agent.images import ImageStore
    from pinnace.agent.runtime import ContainerConfig, PodSandboxConfig
    from pinnace.agent.runtime.runc import RuncRuntime
    ImageStore(data).import_archive(images / "nginx_1.19.tar")
    rt = RuncRuntime(data, pod_cidr=random_pod_cidr())
    runner = ComponentRunner(client)
    try:
        sid = await rt.run_pod_sandbox(PodSandboxConfig("uid-bench-web", "web", NS))
        cid = await rt.create_container(sid, ContainerConfig("main", "nginx:1.19"))
        await rt.start_container(cid)
        pod_ip = (await rt.pod_sandbox_status(sid)).ip
        svc = await client.create(client.resource("v1", "Service"), {
            "metadata": {"name": "bench-web", "namespace": NS},
            "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8080,
                                                    "targetPort": 80}]}})
        await client.create(client.resource("discovery.k8s.io/v1", "EndpointSlice"), {
            "metadata": {"name": "bench-web", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": "bench-web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"addresses": [pod_ip]}]})
        await runner.start(Proxier(client, runner.factory, ProxySettings(
            table=table, bridge=rt.network.bridge, pod_cidr=rt.network.pod_cidr)))
        node_port = svc["spec"]["ports"][0]["nodePort"]
        gateway = ipaddress.ip_network(rt.network.pod_cidr)[1]  # a node address
        targets = {"pod IP (baseline)": f"http://{pod_ip}:80/",
                   "ClusterIP": f"http://{svc['spec']['clusterIP']}:8080/",
                   "NodePort, node address": f"http://{gateway}:{node_port}/",
                   "NodePort 127.0.0.1": f"http://127.0.0.1:{node_port}/"}
        for url in targets.values():  # every path answers before anything is measured
            await _answers(url)
        rows = []
        for close in (False, True):
            results: dict[str, list[tuple[float, float]]] = {t: [] for t in targets}
            for _ in range(rounds):
                for name, url in targets.items():
                    results[name].append(await asyncio.to_thread(
                        wrk, url, duration=duration, close=close))
            base = statistics.median(r for r, _ in results["pod IP (baseline)"])
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

class Monitor:
    """`nft monitor`: every ruleset change as a line, with its arrival time."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.lines: list[tuple[float, str]] = []
        self._new = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "nft", "monitor", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, limit=1 << 20)
        self._task = asyncio.create_task(self._read())
        # subscribed once it shows a change of ours (it reads the ruleset first: with
        # 10,000 Services that takes a while, and changes meanwhile are not shown)
        for n in itertools.count():
            mark = self.mark()
            await asyncio.to_thread(subprocess.run, ["nft", "-f", "-"], input=(
                f"add chain ip {self.table} bench-{n}\n"
                f"delete chain ip {self.table} bench-{n}\n").encode(), check=True)
            with contextlib.suppress(SystemExit):
                await self.wait_for(f"bench-{n}", mark, within=1.0)
                return

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace")
            if self.table in line:
                self.lines.append((time.monotonic(), line))
                self._new.set()

    def mark(self) -> int:
        """Where the lines to come begin (for `wait_for`)."""
        return len(self.lines)

    async def wait_for(self, text: str, start: int, within: float = 60.0) -> float:
        """When a line with `text` arrived (from line `start` on)."""
        deadline = time.monotonic() + within
        while True:
            for t, line in self.lines[start:]:
                if text in line:
                    return t
            start = len(self.lines)
            self._new.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"no {text!r} on nft monitor within {within} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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
                      full: bool, changes: int, addresses: Addresses, created: list[int]
                      ) -> list[tuple[str, ...]]:
    svc_rt = client.resource("v1", "Service")
    es_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    runner = ComponentRunner(client)
    monitor = Monitor(table)
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
        await monitor.start()
        endpoint, new_service = [], []
        for n in range(changes):
            await asyncio.sleep(random.uniform(0.1, 0.2))
            if n % 2 == 0:
                name = f"svc-{random.randrange(services)}"
                es = await client.get(es_rt, name, NS)
                ip = addresses.take()
                es["endpoints"][2] = {"addresses": [ip]}
                mark, start = monitor.mark(), time.monotonic()
                await client.update(es_rt, es)
                endpoint.append(await monitor.wait_for(f"dnat to {ip}:80", mark) - start)
            else:
                name = f"new-{created[0]}"
                created[0] += 1
                mark, start = monitor.mark(), time.monotonic()
                await client.create(es_rt, slice_of(name, [addresses.take()
                                                           for _ in range(3)]))
                svc = await client.create(svc_rt, {
                    "metadata": {"name": name, "namespace": NS},
                    "spec": {"ports": [{"name": "http", "port": 80}]}})
                new_service.append(await monitor.wait_for(
                    f"{svc['spec']['clusterIP']} . tcp . 80 : goto svc-", mark) - start)
        mode = "full (every sync)" if full else "partial"
        return [(f"{services:,}", mode, kind, str(len(v)), ms(statistics.median(v)),
                 ms(percentile(v, 99)), ms(first))
                for kind, v in (("endpoint", endpoint), ("new Service", new_service))]
    finally:
        await monitor.stop()
        await runner.stop()


def table_text(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    data = tmp / "data"
    data.mkdir()
    table = table_name(dir_hash(data))
    cluster = Cluster(ClusterConfig(data_dir=data, port=0, controllers=False,
                                    scheduler=False))
    await cluster.start()
    try:
        if not args.no_throughput:
            images = args.images or build_images(tmp)
            rows = await throughput(cluster.client, data, images=images, table=table,
                                    duration=args.duration, rounds=args.rounds)
            print(table_text(("load (wrk -t1 -c16)", "target", "requests/s", "p99 ms",
                              "of baseline"), rows))
            print(flush=True)
        addresses = Addresses()
        created, have = [0], 0
        rows = []
        for n in sorted(args.services):
            t0 = time.monotonic()
            await grow(cluster.client, have, n, addresses)
            have = n
            print(f"bench: {n:,} Services with 3 endpoints written in "
                  f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
            for full in (False, True):
                rows += await programming(
                    cluster.client, services=n, table=table, pod_cidr="10.250.0.0/16",
                    full=full, changes=args.full_changes if full else args.changes,
                    addresses=addresses, created=created)
                print(table_text(("Services", "proxy", "change", "n", "p50 ms", "p99 ms",
                                  "first full sync ms"), rows[-2:]), file=sys.stderr,
                      flush=True)
        print(table_text(("Services", "proxy", "change → in the kernel", "n", "p50 ms",
                          "p99 ms", "first full sync ms"), rows))
        print(f"\n(load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
              f" on {os.cpu_count()} CPUs)")
    finally:
        await cluster.stop()
        await remove_table(table, bridge="pnbench-none")


def build_images(tmp: Path) -> Path:
    out = tmp / "images"
    r = subprocess.run([str(REPO / "scripts" / "build-test-images"), str(out)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"build-test-images failed: {r.stderr.strip()[-2000:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1000, 10000], help="sizes, comma-separated")
    parser.add_argument("--changes", type=int, default=100,
                        help="changes timed per size with partial syncs")
    parser.add_argument("--full-changes", type=int, default=10,
                        help="changes timed per size with full syncs")
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
