"""PV binding: the time to bind 1,000 claims to 1,000 PersistentVolumes.

    python -m bench.pv_binding [--claims 1000]

An API server and the controllers run in this process (the in-process client, SQLite in
a temporary directory, no scheduler, no node). N volumes of varied sizes are created
and become Available; then N claims are created (32 at a time) and we time until every
claim is Bound. Each bind is four writes (PV claimRef, PV status, claim volumeName, claim
status), so the baseline row is those 4N writes done back to back by one client on a server of
the same kind with no controllers — the floor the binder's own work (matching, informer
round trips, queues) adds to.

`measure(claims)` returns the figures as a dict, for bench/storage.py to call.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import in_parallel, print_table
from pinnace.client.informer import Informer
from pinnace.cluster import Cluster, ClusterConfig

NS = "default"


def volume(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"pv-{i:05d}"},
            "spec": {"capacity": {"storage": f"{1 + i % 10}Gi"},
                     "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": f"/tmp/pv-bench/{i}"}}}


def claim(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"claim-{i:05d}"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": f"{1 + i % 10}Gi"}}}}


def count_phase(informer: Informer, phase: str) -> int:
    return sum(1 for o in informer.list() if (o.get("status") or {}).get("phase") == phase)


async def wait_count(informer: Informer, phase: str, n: int, within: float) -> None:
    """Until n objects are in `phase`, read from the cluster's own informer (no I/O)."""
    deadline = time.monotonic() + within
    while count_phase(informer, phase) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {count_phase(informer, phase)}/{n} "
                             f"{informer.rt.kind} {phase} after {within:.0f}s")
        await asyncio.sleep(0.05)


async def _measure(data_dir: Path, claims: int) -> dict[str, float]:
    async with Cluster(ClusterConfig(data_dir=data_dir, port=0, scheduler=False)) as cluster:
        client = cluster.client
        pv_rt = client.resource("v1", "PersistentVolume")
        pvc_rt = client.resource("v1", "PersistentVolumeClaim")
        volumes = cluster.factory.informer("v1", "PersistentVolume")
        claims_seen = cluster.factory.informer("v1", "PersistentVolumeClaim")
        await in_parallel(claims, lambda i: client.create(pv_rt, volume(i)))
        await wait_count(volumes, "Available", claims, 300)
        t0 = time.perf_counter()
        await in_parallel(claims, lambda i: client.create(pvc_rt, claim(i), NS))
        created = time.perf_counter() - t0
        await wait_count(claims_seen, "Bound", claims, 900)
        bound = time.perf_counter() - t0
    writes = await _baseline(data_dir.parent / "baseline", claims)
    return {"claims": claims, "create_s": created, "bind_s": bound,
            "binds_per_s": claims / bound, "baseline_s": writes}


async def _baseline(data_dir: Path, claims: int) -> float:
    """The four writes of each bind, back to back by one client, on a server of the same
    kind with no controllers running (nothing else writes); seconds for all of them."""
    async with Cluster(ClusterConfig(data_dir=data_dir, port=0, controllers=False,
                                     scheduler=False)) as cluster:
        client = cluster.client
        pv_rt = client.resource("v1", "PersistentVolume")
        pvc_rt = client.resource("v1", "PersistentVolumeClaim")
        pvs: dict[int, Any] = {}
        pvcs: dict[int, Any] = {}

        async def make(i: int) -> None:
            pvs[i] = await client.create(pv_rt, volume(i))
            pvcs[i] = await client.create(pvc_rt, claim(i), NS)
        await in_parallel(claims, make)
        t0 = time.perf_counter()
        for i in range(claims):
            pv, pvc = pvs[i], pvcs[i]
            pv["spec"]["claimRef"] = {"namespace": NS, "name": pvc["metadata"]["name"],
                                      "uid": pvc["metadata"]["uid"]}
            pv = await client.update(pv_rt, pv)
            pv["status"] = {"phase": "Bound"}
            await client.update_status(pv_rt, pv)
            pvc["spec"]["volumeName"] = pv["metadata"]["name"]
            pvc = await client.update(pvc_rt, pvc)
            pvc["status"] = {"phase": "Bound"}
            await client.update_status(pvc_rt, pvc)
        return time.perf_counter() - t0


def measure(claims: int = 1000) -> dict[str, float]:
    """Bind `claims` claims to as many volumes in a fresh cluster; the figures."""
    with tempfile.TemporaryDirectory(prefix="pv-bench-") as tmp:
        return asyncio.run(_measure(Path(tmp) / "data", claims))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000)
    args = parser.parse_args()
    r = measure(args.claims)
    n = args.claims
    rows = [(f"create {n} claims (32 at a time)", r["create_s"]),
            (f"bind {n} claims to {n} PVs (create to all Bound)", r["bind_s"]),
            (f"baseline: the {4 * n} writes of {n} binds, one client", r["baseline_s"])]
    print_table(["what", "seconds", "claims/s"],
                [(what, f"{seconds:.2f}", f"{n / seconds:.0f}") for what, seconds in rows])


if __name__ == "__main__":
    main()
