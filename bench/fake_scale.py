"""Simulated nodes at scale: N fake nodes and M pods already bound to them.

    python -m bench.fake_scale [--nodes 1000] [--pods 10000]

One process holds the API server (in-process, HTTPS on a free port, SQLite in a
temporary directory), one FakeNodes, and the client creating the pods with
spec.nodeName set (spread round-robin). Prints one table: time to register
the nodes, to create the pods, until all pods are Running; the store writes
the agents made (resourceVersion growth beyond the pod creations) and the
process' peak RSS (API server included).

    python -m bench.fake_scale --split [--nodes 1000] [--pods 2000]

The same nodes split across API servers in their own processes, the agents in this
process over HTTPS (half the nodes to each server): one `pinnace server` on SQLite
(the baseline) and two `pinnace server --store etcd` on a one-member etcd on loopback,
side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import tempfile
import time
from pathlib import Path

from bench._common import print_table, wait_until
from pinnace.cluster import Cluster, ClusterConfig


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pod_on_node(i: int, nodes: int) -> dict[str, object]:
    """Pod p-i, bound to node fake-(i mod nodes)."""
    return {"metadata": {"name": f"p-{i}"},
            "spec": {"nodeName": f"fake-{i % nodes}",
                     "containers": [{"name": "app", "image": "nginx"}]}}


async def run(nodes: int, pods: int, concurrency: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # as in `pinnace up --fake-nodes N`, without the controllers and the scheduler:
        # the nodes share the API server's process and loop
        cluster = Cluster(ClusterConfig(data_dir=Path(tmp), port=0, controllers=False,
                                        scheduler=False, fake_nodes=nodes))
        await cluster.start()
        # measured before the nodes' task had its first turn: no node registered yet
        rss0 = rss_mib()
        client, fake = cluster.client, cluster.fake_nodes
        assert fake is not None
        try:
            t0 = time.monotonic()
            await wait_until(lambda: len(fake.agents) == nodes and len(fake.nodes.cache) == nodes,
                             within=600)
            rows.append((f"register {nodes} nodes", f"{time.monotonic() - t0:.1f} s"))
            rss_nodes = rss_mib()
            pod_rt = client.resource("v1", "Pod")
            rv0 = int((await client.list(pod_rt, "default", limit=1))["metadata"]
                      ["resourceVersion"])
            names = iter(range(pods))
            t1 = time.monotonic()

            async def creator() -> None:
                for i in names:
                    await client.create(pod_rt, pod_on_node(i, nodes), "default")
            await asyncio.gather(*(creator() for _ in range(concurrency)))
            created = time.monotonic() - t1
            rows.append((f"create {pods} pods", f"{created:.1f} s ({pods / created:.0f}/s)"))

            def running() -> int:
                return sum(1 for p in fake.pods.cache.values()
                           if (p.get("status") or {}).get("phase") == "Running")
            await wait_until(lambda: running() == pods, within=1200, interval=0.25)
            total = time.monotonic() - t1
            rows.append(("all pods Running (from first create)", f"{total:.1f} s"))
            await asyncio.sleep(3)  # let stray writes land before counting
            rv1 = int((await client.list(pod_rt, "default", limit=1))["metadata"]
                      ["resourceVersion"])
            rows.append(("store writes besides the creations (3 s idle incl.)",
                         f"{rv1 - rv0 - pods}"))
            rows.append(("RSS before nodes / with nodes / with pods",
                         f"{rss0:.0f} / {rss_nodes:.0f} / {rss_mib():.0f} MiB"))
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rows.append(("peak RSS (API server + agents + client)", f"{peak:.0f} MiB"))
            idle_tasks = len(asyncio.all_tasks())
            rows.append(("asyncio tasks while idle", str(idle_tasks)))
        finally:
            await cluster.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--split", action="store_true",
                        help="agents over HTTPS: one server on SQLite, then two on etcd")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.split:
        from bench.fake_scale_split import compare
        heads, rows = compare(args.nodes, args.pods, args.concurrency)
        print_table(["fake_scale --split", *heads], [[k, *values] for k, values in rows])
        return
    rows = asyncio.run(run(args.nodes, args.pods, args.concurrency))
    print_table(["fake_scale", f"{args.nodes} nodes, {args.pods} pods"], rows)


if __name__ == "__main__":
    main()
