"""`bench.fake_scale --split`: simulated nodes spread over API servers in their own
processes (one on SQLite; two on one etcd), their agents in this process over HTTPS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import free_port, read_kubeconfig, stop, wait_until
from bench.fake_scale import pod_on_node
from pinnace.agent.fake_nodes import FakeNodes
from pinnace.client.client import Client
from pinnace.client.transport import HttpTransport
from pinnace.cluster import ComponentRunner
from tests.etcd_cluster import EtcdCluster


def start_server(data_dir: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = data_dir / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "pinnace.cli", "server", "--data-dir",
                             str(data_dir), "--port", str(free_port()), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"pinnace server did not start ({data_dir})")
        time.sleep(0.05)
    return proc, kubeconfig


def client_for(kubeconfig: Path) -> Client:
    server, token, ca = read_kubeconfig(kubeconfig)
    return Client(HttpTransport(server, token=token, ca_pem=ca, limit=256))


async def measure(kubeconfigs: list[Path], nodes: int, pods: int, concurrency: int
                  ) -> list[str]:
    clients = [client_for(k) for k in kubeconfigs]
    share = -(-nodes // len(clients))
    runners, fakes = [], []
    t0 = time.monotonic()
    for i, client in enumerate(clients):
        runner = ComponentRunner(client)
        fake = FakeNodes(client, runner.factory, lease_period=10.0,
                         only=range(i * share, min(nodes, (i + 1) * share)))
        await runner.start(fake)
        runners.append(runner)
        fakes.append(fake)
    try:
        await wait_until(lambda: sum(len(f.agents) for f in fakes) == nodes, within=900)
        registered = time.monotonic() - t0
        pod_rt = clients[0].resource("v1", "Pod")
        rv0 = int((await clients[0].list(pod_rt, "default", limit=1))["metadata"]
                  ["resourceVersion"])
        names = iter(range(pods))
        t1 = time.monotonic()

        async def creator(k: int) -> None:
            client = clients[k % len(clients)]  # the writers spread over the servers too
            for i in names:
                await client.create(pod_rt, pod_on_node(i, nodes), "default")
        await asyncio.gather(*(creator(k) for k in range(concurrency)))
        created = time.monotonic() - t1

        def running() -> int:
            return sum(1 for f in fakes for p in f.pods.cache.values()
                       if (p.get("status") or {}).get("phase") == "Running"
                       and f._mine(p["spec"]["nodeName"]))
        await wait_until(lambda: running() == pods, within=1800, interval=0.25)
        total = time.monotonic() - t1
        await asyncio.sleep(3)
        rv1 = int((await clients[0].list(pod_rt, "default", limit=1))["metadata"]
                  ["resourceVersion"])
        return [f"{registered:.1f} s", f"{created:.1f} s ({pods / created:.0f}/s)",
                f"{total:.1f} s", str(rv1 - rv0 - pods)]
    finally:
        for runner in runners:
            await runner.stop()
        for client in clients:
            await client.close()


Rows = list[tuple[str, list[str]]]


def compare(nodes: int, pods: int, concurrency: int) -> tuple[list[str], Rows]:
    columns = []
    tmp = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        proc, kc = start_server(tmp / "sqlite", [])
        procs.append(proc)
        columns.append(asyncio.run(measure([kc], nodes, pods, concurrency)))
        stop(proc)
        with EtcdCluster(tmp / "etcd") as etcd:
            flags = ["--store", "etcd", "--etcd-endpoints", ",".join(etcd.endpoints)]
            proc, kc1 = start_server(tmp / "etcd-a", flags)
            procs.append(proc)
            shutil.copytree(tmp / "etcd-a" / "pki", tmp / "etcd-b" / "pki")
            proc, kc2 = start_server(tmp / "etcd-b", flags)
            procs.append(proc)
            columns.append(asyncio.run(measure([kc1, kc2], nodes, pods, concurrency)))
            for p in procs:
                stop(p)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    names = [f"register {nodes} nodes", f"create {pods} pods", "all pods Running",
             "store writes besides the creations"]
    heads = ["sqlite, 1 server", "etcd, 2 servers"]
    return heads, [(n, [c[i] for c in columns]) for i, n in enumerate(names)]
