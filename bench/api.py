"""API server throughput and watch latency, against a real `pinnace up` over HTTPS.

    python -m bench.api [--objects 1000] [--concurrency 8] [--store sqlite|etcd|both]

Prints one table: creates/s, gets/s, lists/s (of all the objects) and the delay
from a write's acknowledgement to its watch event (p50/p99), one column per store
(default both: SQLite, then a fresh etcd on loopback, in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import api_session, cpu_seconds, free_port, in_parallel, print_table, stop
from tests.etcd_cluster import EtcdCluster


async def run(proc: subprocess.Popen, tmp: Path, objects: int,
              concurrency: int) -> list[tuple[str, str]]:
    started = time.monotonic()
    session, base = await api_session(proc, tmp / "data", limit=concurrency)
    startup = time.monotonic() - started
    async with session as s:  # type: ignore[attr-defined]
        path = "/api/v1/namespaces/default/configmaps"

        async def per_second(fn, n: int) -> float:
            t0 = time.perf_counter()
            await in_parallel(n, fn, concurrency)
            return n / (time.perf_counter() - t0)

        def create_fn(plural: str, kind: str, data: dict[str, str]):
            async def create(i: int) -> None:
                body = {"apiVersion": "v1", "kind": kind,
                        "metadata": {"name": f"{plural[:2]}-{i}", "labels": {"bench": "yes"}},
                        "data": data}
                async with s.post(f"{base}/api/v1/namespaces/default/{plural}",
                                  json=body) as r:
                    assert r.status == 201, await r.text()
                    await r.read()
            return create

        def get_fn(plural: str):
            async def get(i: int) -> None:
                async with s.get(f"{base}/api/v1/namespaces/default/{plural}/"
                                 f"{plural[:2]}-{i % objects}") as r:
                    assert r.status == 200
                    await r.read()
            return get

        async def list_all(_: int) -> None:
            async with s.get(base + path) as r:
                assert r.status == 200
                await r.read()

        cpu0 = cpu_seconds(proc.pid)
        creates = await per_second(create_fn("configmaps", "ConfigMap", {"key": "x" * 200}),
                                   objects)
        # on a shared machine the server's CPU time per create is the steadier figure
        create_cpu = (cpu_seconds(proc.pid) - cpu0) / objects
        gets = await per_second(get_fn("configmaps"), objects * 2)
        # Secrets (encrypted at rest by default) beside ConfigMaps: same size of data
        secret_creates = await per_second(create_fn(
            "secrets", "Secret", {"key": base64.b64encode(b"x" * 150).decode()}), objects)
        secret_gets = await per_second(get_fn("secrets"), objects * 2)
        lists = await per_second(list_all, 50)

        # watch latency: one watcher, writes one at a time
        async with s.get(base + path) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        delays: list[float] = []
        sent: dict[str, float] = {}
        async with s.get(f"{base}{path}?watch=true&resourceVersion={rv}") as w:
            async def writer() -> None:
                for i in range(200):
                    body = {"metadata": {"name": f"w-{i}"}}
                    sent[f"w-{i}"] = time.perf_counter()
                    async with s.post(base + path, json=body) as r:
                        await r.read()
                    await asyncio.sleep(0.002)
            task = asyncio.create_task(writer())
            async for line in w.content:
                ev = json.loads(line)
                name = ev["object"]["metadata"]["name"]
                if name in sent:
                    delays.append(time.perf_counter() - sent[name])
                if len(delays) == 200:
                    break
            await task
    delays.sort()
    p50 = statistics.median(delays) * 1000
    p99 = delays[int(len(delays) * 0.99) - 1] * 1000
    return [("startup to ready (s)", f"{startup:.2f}"),
            (f"creates/s ({objects} configmaps, {concurrency} clients)", f"{creates:.0f}"),
            ("server CPU per create (us)", f"{create_cpu * 1e6:.0f}"),
            ("creates per server CPU-second", f"{1 / create_cpu:.0f}"),
            ("gets/s", f"{gets:.0f}"),
            (f"secret creates/s ({objects} secrets)", f"{secret_creates:.0f}"),
            ("secret gets/s", f"{secret_gets:.0f}"),
            (f"lists/s ({objects} objects)", f"{lists:.1f}"),
            ("watch delivery p50 (ms, create sent -> event)", f"{p50:.2f}"),
            ("watch delivery p99 (ms)", f"{p99:.2f}")]


def measure(store: str, objects: int, concurrency: int, etcd_members: int
            ) -> list[tuple[str, str]]:
    """One `pinnace up` on `store` (etcd: a fresh cluster of etcd_members on loopback)."""
    tmp = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    etcd = None
    command = [sys.executable, "-m", "pinnace.cli", "up", "--data-dir", str(tmp / "data"),
               "--port", str(free_port())]
    proc = None
    try:
        if store == "etcd":
            etcd = EtcdCluster(tmp / "etcd", members=etcd_members).start()
            command += ["--store", "etcd", "--etcd-endpoints", ",".join(etcd.endpoints)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return asyncio.run(run(proc, tmp, objects, concurrency))
    finally:
        stop(proc)
        if etcd is not None:
            etcd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--store", choices=["sqlite", "etcd", "both"], default="both",
                        help="the store(s) measured, side by side (default both)")
    parser.add_argument("--etcd-members", type=int, default=1,
                        help="members of the etcd cluster started on loopback (default 1)")
    args = parser.parse_args()
    stores = ["sqlite", "etcd"] if args.store == "both" else [args.store]
    results = [measure(st, args.objects, args.concurrency, args.etcd_members)
               for st in stores]
    names = [k for k, _ in results[0]]
    heads = [st if st == "sqlite" else f"etcd ({args.etcd_members} member"
             f"{'s' if args.etcd_members > 1 else ''})" for st in stores]
    print_table(["measure", *heads],
                [[k, *(r[i][1] for r in results)] for i, k in enumerate(names)])


if __name__ == "__main__":
    main()
