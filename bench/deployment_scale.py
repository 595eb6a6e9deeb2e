"""One big Deployment on simulated nodes, as a user drives it: time to all Ready, peak RSS.

    python -m bench.deployment_scale [--nodes 1000] [--replicas 10000]

Starts `pinnace up --fake-nodes N` as a subprocess (HTTPS on a free loopback port, SQLite
in a temporary directory), waits for the N nodes to register, then `kubectl apply`s one
Deployment of `--replicas` replicas and polls its status until readyReplicas reaches the
count. The whole pipeline runs: deployment and ReplicaSet controllers, scheduler,
the simulated kubelets, Events. Peak RSS is of the whole process tree, sampled every
0.2 s (the sum of every process' VmRSS), besides the sum of each process' own peak
(VmHWM: an upper bound). Timings on a shared 2-core machine are noisy: the server's
CPU time (user + system) over the same span is printed beside the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import api_session, cpu_seconds, free_port, process_tree, stop

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: scale, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: scale}}}}
  template:
    metadata: {{labels: {{app: scale}}}}
    spec:
      containers: [{{name: app, image: nginx}}]
"""


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples the process tree's summed RSS; keeps the peak, and each process' VmHWM."""

    def __init__(self, root: int) -> None:
        self.root, self.peak_kib, self.hwm = root, 0, {}

    def sample(self) -> None:
        pids = process_tree(self.root)
        self.peak_kib = max(self.peak_kib, sum(_status_kib(p, "VmRSS:") for p in pids))
        for p in pids:
            self.hwm[p] = max(self.hwm.get(p, 0), _status_kib(p, "VmHWM:"))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.2)


async def run(proc: subprocess.Popen[bytes], data: Path, nodes: int, replicas: int
              ) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    t_start = time.monotonic()
    session, base = await api_session(proc, data)
    sampler = RssSampler(proc.pid)
    sampling = asyncio.create_task(sampler.run())
    async with session as s:  # type: ignore[attr-defined]
        async def get(path: str) -> dict:
            while True:
                try:
                    async with s.get(base + path) as r:
                        if r.status == 200:
                            return await r.json()
                except OSError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit("pinnace up exited")
                await asyncio.sleep(0.2)

        while True:
            items = (await get("/api/v1/nodes"))["items"]
            ready = sum(1 for n in items for c in (n.get("status") or {}).get("conditions", [])
                        if c["type"] == "Ready" and c["status"] == "True")
            if ready >= nodes:
                break
            await asyncio.sleep(0.5)
        rows.append((f"up + {nodes} nodes Ready", f"{time.monotonic() - t_start:.1f} s"))
        sampler.sample()
        rss_nodes = sampler.peak_kib
        await asyncio.sleep(2)  # let the nodes' first heartbeats settle

        t0, cpu0 = time.monotonic(), cpu_seconds(proc.pid)
        applied = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(data / "kubeconfig"), "apply", "-f", "-",
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        await applied.communicate(MANIFEST.format(replicas=replicas).encode())
        if applied.returncode != 0:
            raise SystemExit("kubectl apply failed")
        path = "/apis/apps/v1/namespaces/default/deployments/scale"
        marks = {replicas // 10: None, replicas // 2: None}
        last = -1
        deadline = t0 + max(600.0, replicas * 0.1)
        while True:
            st = (await get(path)).get("status") or {}
            ready = st.get("readyReplicas", 0)
            now = time.monotonic()
            for m in marks:
                if marks[m] is None and ready >= m:
                    marks[m] = now - t0
            if ready != last and os.environ.get("BENCH_VERBOSE"):
                print(f"  {now - t0:6.1f} s  ready {ready}", file=sys.stderr)
            last = ready
            if ready >= replicas:
                break
            if now > deadline:
                raise SystemExit(f"only {ready} of {replicas} Ready after {now - t0:.0f} s")
            await asyncio.sleep(0.25)
        total = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        for m, at in marks.items():
            rows.append((f"{m} Ready (from apply)", f"{at:.1f} s"))
        rows.append((f"all {replicas} Ready (from apply)",
                     f"{total:.1f} s ({replicas / total:.0f} pods/s)"))
        rows.append(("  CPU time of the server meanwhile", f"{cpu:.1f} s"))
        sampler.sample()
        sampling.cancel()
    rows.append(("RSS of the tree: nodes up / peak (sampled)",
                 f"{rss_nodes / 1024:.0f} / {sampler.peak_kib / 1024:.0f} MiB"))
    rows.append(("sum of each process' VmHWM", f"{sum(sampler.hwm.values()) / 1024:.0f} MiB"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=10_000)
    parser.add_argument("--py-spy", metavar="FILE",
                        help="record the server with py-spy (speedscope JSON) into FILE")
    args = parser.parse_args()
    # the commit measured: read before the run, which takes minutes
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    data = tmp / "data"
    cmd = [sys.executable, "-m", "pinnace.cli", "up", "--data-dir", str(data),
           "--port", str(free_port()), "--fake-nodes", str(args.nodes)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spy = None
    if args.py_spy:  # attached to the server, stopped (and written) with SIGINT at the end
        spy = subprocess.Popen(["py-spy", "record", "--rate", "50", "--pid", str(proc.pid),
                                "--format", "raw", "-o", args.py_spy],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rows = asyncio.run(run(proc, data, args.nodes, args.replicas))
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    print(f"{'deployment_scale'.ljust(width)}  {args.nodes} nodes, {args.replicas} replicas")
    print(f"{'-' * width}  -----")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, git {head})")


if __name__ == "__main__":
    main()
