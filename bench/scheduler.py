"""Scheduler throughput: pods bound per second on 1,000 and 5,000 nodes.

    python -m bench.scheduler [--nodes 1000 5000] [--pods 10000] [--gc-freeze]
                              [--profile DIR]

An API server runs in this process (HTTPS on loopback, SQLite in a temporary
directory); nodes and pods are created through the API, then the scheduler starts
and we time from its first binding to its last. Columns: bound pods/s; the process'
CPU time per bound pod over the same span (steadier than pods/s when other work
shares the cores: everything here runs on one loop, so its inverse is the rate one
free core would give); the cyclic GC's share of that CPU time; the share of wall
time spent in scheduling cycles (filter + score, on the event loop); the mean
binding round trip (POST pods/binding, with up to 64 in flight); and the process'
peak RSS (API server and its watch cache included; each size runs in its own
process).

`--profile DIR` attaches py-spy (the `bench` extra) to each size's process for
the scheduling phase only and writes DIR/scheduler-<nodes>.txt:
collapsed stacks, one line per stack with its sample count (`python -m bench.profile`
ranks them).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import in_parallel
from pinnace.cluster import Cluster, ClusterConfig
from pinnace.scheduler import Scheduler

OWNERS = 100  # pods are spread over this many fake ReplicaSets


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def node(i: int) -> dict[str, Any]:
    name = f"node-{i:05d}"
    status = {"conditions": [{"type": "Ready", "status": "True"}],
              "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
              "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"}}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "zone": f"z{i % 3}"}},
            "spec": {}, "status": status}


def pod(i: int) -> dict[str, Any]:
    owner = f"rs-{i % OWNERS}"
    return {"metadata": {"name": f"pod-{i:05d}", "labels": {"app": owner},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": owner, "uid": f"uid-{owner}",
                                              "controller": True}]},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


class GcClock:
    """Seconds the cyclic garbage collector ran while counting (gc.callbacks): with
    every object of the cluster in one heap, a full collection walks all of them, and
    a sampling profiler charges that to whatever code happened to allocate."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.counting = False
        self._start = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        # CPU time, as the column it is a share of (wall time counts waits for the core)
        if phase == "start":
            self._start = time.process_time()
        elif self.counting:
            self.seconds += time.process_time() - self._start


def start_profiler(out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling this process (it needs ptrace: root, or ptrace_scope 0)."""
    if out is None:
        return None
    proc = subprocess.Popen(["py-spy", "record", "--pid", str(os.getpid()), "--rate", "200",
                             "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the phase it measures
    return proc


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        proc.wait(60)


async def one_run(num_nodes: int, num_pods: int, *, gc_freeze: bool = False,
                  profile: Path | None = None) -> dict[str, float]:
    gc_clock = GcClock()
    with tempfile.TemporaryDirectory() as tmp:
        # as in `pinnace up`: components share the API server's process and loop; the
        # scheduler is built here, once the nodes and pods exist, to time it alone
        cluster = Cluster(ClusterConfig(data_dir=Path(tmp) / "data", port=0,
                                        controllers=False, scheduler=False))
        await cluster.start()
        client = cluster.client
        try:
            nodes_rt, pods_rt = client.resource("v1", "Node"), client.resource("v1", "Pod")

            async def make_node(i: int) -> None:
                n = node(i)
                created = await client.create(nodes_rt, n)
                created["status"] = n["status"]
                await client.update_status(nodes_rt, created)

            t0 = time.perf_counter()
            await in_parallel(num_nodes, make_node)
            await in_parallel(num_pods, lambda i: client.create(pods_rt, pod(i), "default"))
            setup = time.perf_counter() - t0
            rss_setup = peak_rss_mib()

            scheduler = Scheduler(client, cluster.factory)
            cycle_time = [0.0]
            find_node = scheduler.find_node

            def timed_find_node(p: Any) -> Any:
                s = time.perf_counter()
                try:
                    return find_node(p)
                finally:
                    cycle_time[0] += time.perf_counter() - s
            scheduler.find_node = timed_find_node  # type: ignore[method-assign]
            bind_time = [0.0, 0]
            post = client.post_subresource

            async def timed_post(*a: Any, **kw: Any) -> Any:
                s = time.perf_counter()
                try:
                    return await post(*a, **kw)
                finally:
                    bind_time[0] += time.perf_counter() - s
                    bind_time[1] += 1
            client.post_subresource = timed_post  # type: ignore[method-assign]

            await cluster.factory.wait_synced()
            if gc_freeze:  # what a long-running process can do once its caches are full
                gc.freeze()
            profiler = start_profiler(profile)
            cpu0 = time.process_time()
            gc_clock.counting = True
            await cluster.run(scheduler)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 600
            # polling a counter is simplest here; the scheduler has no "all bound" event
            while scheduler.stats.bound < num_pods and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            cpu = time.process_time() - cpu0
            gc_clock.counting = False
            stop_profiler(profiler)
            stats = scheduler.stats
            span = max(stats.last_bind - stats.first_bind, 1e-9)
            return {"nodes": num_nodes, "pods": num_pods, "setup_s": setup,
                    "bound": stats.bound, "pods_per_s": stats.bound / span, "span_s": span,
                    "cycle_share": cycle_time[0] / span,
                    "cpu_ms": 1000 * cpu / max(stats.bound, 1),
                    "gc_share": gc_clock.seconds / max(cpu, 1e-9),
                    "cycle_ms": 1000 * cycle_time[0] / max(stats.attempts, 1),
                    "bind_ms": 1000 * bind_time[0] / max(bind_time[1], 1),
                    "rss_setup": rss_setup, "rss_peak": peak_rss_mib()}
        finally:
            await cluster.stop()


def print_table(rows: list[dict[str, float]]) -> None:
    print(f"{'nodes':>6} {'pods':>6} {'bound':>6} {'pods/s':>8} {'span s':>7} "
          f"{'CPU ms/pod':>10} {'GC %':>5} {'cycle ms':>8} {'cycle %':>7} {'bind rtt ms':>11} "
          f"{'setup s':>7} "
          f"{'RSS MiB setup/peak':>19}")
    for r in rows:
        print(f"{r['nodes']:>6} {r['pods']:>6} {r['bound']:>6} {r['pods_per_s']:>8.0f} "
              f"{r['span_s']:>7.1f} {r['cpu_ms']:>10.2f} "
              f"{100 * r['gc_share']:>4.0f}% {r['cycle_ms']:>8.2f} "
              f"{100 * r['cycle_share']:>6.0f}% "
              f"{r['bind_ms']:>11.1f} {r['setup_s']:>7.1f} "
              f"{r['rss_setup']:>9.0f}/{r['rss_peak']:<9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() once the informers have synced")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the scheduling phase into DIR/scheduler-<nodes>.txt")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one size, one JSON line (so peak RSS is this size's alone)
        print(json.dumps(asyncio.run(one_run(args.nodes[0], args.pods,
                                             gc_freeze=args.gc_freeze,
                                             profile=args.profile))))
        return
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.nodes:
        cmd = [sys.executable, "-m", "bench.scheduler", "--one", "--nodes", str(n),
               "--pods", str(args.pods)] + (["--gc-freeze"] if args.gc_freeze else []) + \
            (["--profile", str(args.profile / f"scheduler-{n}.txt")] if args.profile else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print_table(rows)


if __name__ == "__main__":
    main()
