"""LoadBalancer address assignment: from a Service's creation to its address in the status.

    python -m bench.service_lb [--services 200 1000] [--concurrency 8]

A cluster runs in this process (HTTPS on loopback, SQLite in a temporary directory,
the whole controller manager, no node). N LoadBalancer Services are created through
the API, `concurrency` at a time; one watch on Services and one on EndpointSlices see
each Service's `status.loadBalancer.ingress` and its first EndpointSlice appear. The
baseline, in the same run, is the EndpointSlice controller: another controller of the
same manager answering the same Service event with one write. Columns: p50 and p99 of
create → address and of create → slice, and the time until every Service had its
address.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pinnace.client.client import Client
from pinnace.client.transport import HttpTransport
from pinnace.cluster import Cluster, ClusterConfig
from pinnace.controllers.manager import ControllerSettings


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def one_size(n: int, concurrency: int) -> tuple[float, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        # a /16 holds 65,534 addresses: room for any N here
        config = ClusterConfig(data_dir=Path(tmp), port=0, scheduler=False,
                               controller_settings=ControllerSettings(
                                   lb_pool="127.240.0.0/16"))
        async with Cluster(config) as cluster:
            client = Client(HttpTransport(cluster.server.url, token=cluster.server.token,
                                          ca_pem=cluster.server.ca_pem))
            created: dict[str, float] = {}
            addressed: dict[str, float] = {}
            sliced: dict[str, float] = {}
            svc_rt = client.resource("v1", "Service")
            slice_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
            start_rv = (await client.list(svc_rt, "default"))["metadata"]["resourceVersion"]

            done = asyncio.Event()

            async def watch_services() -> None:
                async for _, svc in client.watch(svc_rt, "default", resource_version=start_rv):
                    name = svc["metadata"]["name"]
                    if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
                        addressed.setdefault(name, time.perf_counter())
                        if len(addressed) >= n and len(sliced) >= n:
                            done.set()

            async def watch_slices() -> None:
                async for _, s in client.watch(slice_rt, "default", resource_version=start_rv):
                    name = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
                    if name:
                        sliced.setdefault(name, time.perf_counter())
                        if len(addressed) >= n and len(sliced) >= n:
                            done.set()

            watchers = [asyncio.create_task(watch_services()),
                        asyncio.create_task(watch_slices())]
            names = iter(f"lb-{i}" for i in range(n))
            t0 = time.perf_counter()

            async def creator() -> None:
                for name in names:
                    body: dict[str, Any] = {
                        "metadata": {"name": name},
                        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                                 "ports": [{"port": 80}]}}
                    created[name] = time.perf_counter()
                    await client.create(svc_rt, body, "default")
            await asyncio.gather(*(creator() for _ in range(concurrency)))
            await done.wait()
            total = max(addressed.values()) - t0
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await client.close()
    to_address = [addressed[k] - created[k] for k in created]
    to_slice = [sliced[k] - created[k] for k in created]
    assert len(set(addressed)) == n
    return (pct(to_address, 0.5), pct(to_address, 0.99), pct(to_slice, 0.5),
            pct(to_slice, 0.99), total, statistics.mean(to_address) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(f"{'services':>8} | {'address p50':>11} {'p99':>8} | {'slice p50 (baseline)':>20} "
          f"{'p99':>8} | {'all addressed':>13}")
    for n in args.services:
        a50, a99, s50, s99, total, _ = asyncio.run(one_size(n, args.concurrency))
        print(f"{n:>8} | {a50:>9.1f}ms {a99:>6.1f}ms | {s50:>18.1f}ms {s99:>6.1f}ms | "
              f"{total:>12.2f}s")


if __name__ == "__main__":
    main()
