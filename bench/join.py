"""Nodes joining: the token handshake, and a new Node's pod CIDR from the node IPAM
controller.

    python -m bench.join [--nodes 50]

A cluster runs in this process (HTTPS on loopback, SQLite in a temporary directory, the
controller manager, no node). Each of N nodes joins with the server's token as `pinnace
agent` does (`client/join.py`: GET /cacerts, hash check, POST node-join, credential
written to a fresh data dir), then creates its Node with its own credential and waits
until the Node has `spec.podCIDR`. Baseline, same run: an authenticated GET of a Node
over HTTPS (the cheapest request a node makes). Columns: p50 and p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench._common import percentile, print_table
from pinnace.client.client import Client
from pinnace.client.join import join
from pinnace.client.transport import HttpTransport
from pinnace.cluster import Cluster, ClusterConfig


async def has_pod_cidr(client: Client, name: str, within: float = 30.0) -> None:
    rt = client.resource("v1", "Node")
    for _ in range(int(within / 0.002)):
        if ((await client.get(rt, name)).get("spec") or {}).get("podCIDR"):
            return
        await asyncio.sleep(0.002)
    raise SystemExit(f"{name} got no pod CIDR within {within} s")


async def run(nodes: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        config = ClusterConfig(data_dir=Path(tmp) / "server", port=0, scheduler=False)
        async with Cluster(config) as cluster:
            assert cluster.server.node_join is not None
            token = cluster.server.node_join.token
            joins: list[float] = []
            cidrs: list[float] = []
            gets: list[float] = []
            for i in range(nodes):
                name = f"bench-{i}"
                t0 = time.perf_counter()
                cred = await join(cluster.server.url, token, node_name=name,
                                  data_dir=Path(tmp) / name)
                joins.append(time.perf_counter() - t0)
                client = Client(HttpTransport(cred.server, token=cred.token,
                                              ca_pem=cred.ca_pem))
                try:
                    rt = client.resource("v1", "Node")
                    t0 = time.perf_counter()
                    await client.create(rt, {"metadata": {"name": name}})
                    await has_pod_cidr(client, name)
                    cidrs.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await client.get(rt, name)
                    gets.append(time.perf_counter() - t0)
                finally:
                    await client.close()
    return [(label, percentile(v, 50) * 1000, percentile(v, 99) * 1000) for label, v in (
        ("GET node (baseline)", gets), ("join (cacerts + node-join)", joins),
        ("Node created -> podCIDR", cidrs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--nodes", type=int, default=50)
    args = parser.parse_args()
    rows = asyncio.run(run(args.nodes))
    print_table([f"what ({args.nodes} nodes)", "p50 ms", "p99 ms"],
                [(label, f"{p50:.1f}", f"{p99:.1f}") for label, p50, p99 in rows])


if __name__ == "__main__":
    main()
