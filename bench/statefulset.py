"""StatefulSets on simulated nodes: how long N stable pods take to be ready.

    python -m bench.statefulset [--replicas 50] [--nodes 3]

One process holds the whole cluster as `pinnace up --fake-nodes` runs it (API server
on a free port, SQLite in a temporary directory, controllers, scheduler, fake nodes
that make pods Running and Ready at once). Prints one table: the time until every pod
of a StatefulSet is ready under OrderedReady (one pod after the other) and Parallel,
with and without one claim per pod (bound by the PV binder to PVs made beforehand),
a rolling update of the OrderedReady set and a scale down to 0; the baseline is a
Deployment of the same size (ReplicaSet creations in slow-start batches).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._common import print_table, wait_until
from pinnace.client.client import Client
from pinnace.cluster import Cluster, ClusterConfig


def workload(kind: str, name: str, replicas: int, *, claims: bool = False,
             **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "containers": [{"name": "c", "image": "nginx"}]}}, **spec}}
    if kind == "StatefulSet":
        body["spec"]["serviceName"] = name
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "bench",
            "resources": {"requests": {"storage": "1Gi"}}}}]
    return body


async def ready(client: Client, kind: str, name: str, replicas: int) -> bool:
    obj = await client.get(client.resource("apps/v1", kind), name, "default")
    st = obj.get("status") or {}
    return st.get("readyReplicas", 0) == replicas and st.get("replicas", 0) == replicas and \
        st.get("updatedReplicas", 0) == replicas and \
        st.get("observedGeneration", 0) >= obj["metadata"]["generation"]


async def timed(client: Client, kind: str, name: str, replicas: int,
                change: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.monotonic()
    await change()
    await wait_until(lambda: ready(client, kind, name, replicas), within=600,
                     interval=0.05)
    return time.monotonic() - t0


async def run(replicas: int, nodes: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(ClusterConfig(data_dir=Path(tmp), port=0, fake_nodes=nodes))
        await cluster.start()
        client = cluster.client
        try:
            nodes_rt = client.resource("v1", "Node")
            await wait_until(lambda: _count(client, nodes_rt, nodes), within=600,
                             interval=0.05)
            pv_rt = client.resource("v1", "PersistentVolume")
            for i in range(replicas):
                await client.create(pv_rt, {"metadata": {"name": f"pv-{i}"}, "spec": {
                    "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "bench", "hostPath": {"path": f"{tmp}/pv-{i}"}}})

            def create(kind: str, body: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
                return lambda: client.create(client.resource("apps/v1", kind), body, "default")

            cases = [("Deployment (baseline)", "Deployment", "deploy", {}),
                     ("StatefulSet Parallel", "StatefulSet", "par",
                      {"podManagementPolicy": "Parallel"}),
                     ("StatefulSet OrderedReady", "StatefulSet", "ord", {}),
                     ("StatefulSet OrderedReady, a claim per pod", "StatefulSet", "db",
                      {"claims": True})]
            for label, kind, name, spec in cases:
                took = await timed(client, kind, name, replicas,
                                   create(kind, workload(kind, name, replicas, **spec)))
                rows.append((f"{label}: {replicas} pods ready", f"{took:.2f} s "
                             f"({took / replicas * 1000:.0f} ms/pod)"))
            pvcs = (await client.list(client.resource("v1", "PersistentVolumeClaim"),
                                      "default"))["items"]
            bound = sum(1 for c in pvcs if (c.get("status") or {}).get("phase") == "Bound")
            rows.append(("claims Bound once the claimed set was ready", f"{bound} of {len(pvcs)}"))
            sts_rt = client.resource("apps/v1", "StatefulSet")
            took = await timed(client, "StatefulSet", "ord", replicas, lambda: client.patch(
                sts_rt, "ord", {"spec": {"template": {"metadata": {"annotations": {
                    "bench/restart": "1"}}}}}, namespace="default"))
            rows.append((f"StatefulSet OrderedReady: rolling update of {replicas}",
                         f"{took:.2f} s ({took / replicas * 1000:.0f} ms/pod)"))
            t0 = time.monotonic()
            await client.patch(sts_rt, "ord", {"spec": {"replicas": 0}}, namespace="default")
            await wait_until(lambda: _status_replicas(client, "ord", 0), within=600,
                             interval=0.05)
            took = time.monotonic() - t0
            rows.append((f"StatefulSet OrderedReady: scale {replicas} -> 0",
                         f"{took:.2f} s ({took / replicas * 1000:.0f} ms/pod)"))
        finally:
            await cluster.stop()
    return rows


async def _count(client: Client, rt: Any, n: int) -> bool:
    return len((await client.list(rt))["items"]) >= n


async def _status_replicas(client: Client, name: str, n: int) -> bool:
    obj = await client.get(client.resource("apps/v1", "StatefulSet"), name, "default")
    return (obj.get("status") or {}).get("replicas", -1) == n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = asyncio.run(run(args.replicas, args.nodes))
    print_table(["statefulset", f"{args.replicas} replicas, {args.nodes} fake nodes"], rows)


if __name__ == "__main__":
    main()
