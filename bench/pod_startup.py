"""Pod startup on a real node: create→Running latency beside bare `runc create`+`start`.

    python -m bench.pod_startup [--pods 50] [--images DIR] [--profile FILE] [--timeout S]

Runs `pinnace up` as a subprocess (one real node `bench`, runc, a random /24 pod CIDR in
10.200.0.0/13, everything under a temporary data dir), imports busybox:1.28 into its
image store, and creates busybox pods (`sleep 3600`, imagePullPolicy IfNotPresent):

- sequential: one after another, each create→Running measured alone;
- concurrent: all created at once, each measured from just before its own create call.

Latency runs from just before the create call to the arrival of the pod watch event with
status.phase == Running (the watch starts before the first create). The sequential mode
also splits that time by the pod's Events, taken at their arrival on an Event watch
(Scheduled, Pulled, Created, Started): the client side needs no clock of the agent's.

The baseline in the same run: one rootfs (the image store's unpacked layers under an
overlay mount), then `runc create` + `runc start` of `sleep 3600` N times with a private
runc root, each timed, then `runc delete -f`; the same with crun where installed. Also the
start of the interpreter the Python monitor (stdin/tty containers) runs in.

Memory: RSS and PSS of `pinnace up` idle (node Ready, no pod) and with the N concurrent
pods Running, and of each container's monitor (conmon, or the Python one). CPU: the
bench runs in a cpuacct cgroup of its own, so the CPU time the concurrent phase took in
every process it started (latencies on a shared machine are noisy; this is not) is shown.

`--profile FILE` runs `pinnace up` under cProfile and prints the top entries of the
agent's code by cumulative time (the event loop's thread only: work in `to_thread` and in
subprocesses does not show). Teardown always runs: pods deleted, `pinnace up` stopped by
its PID, `pinnace down`, the bench's mounts and cgroups removed; leftovers are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import pstats
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    CpuAccount,
    build_images,
    free_port,
    markdown_table,
    memory_kib,
    own_cpu_seconds,
    percentile,
    process_tree,
    stop,
    wait_until,
)
from pinnace.agent.images import ImageStore
from pinnace.agent.network import dir_hash
from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.client.transport import HttpTransport

REPO = Path(__file__).resolve().parent.parent
IMAGE = "busybox:1.28"
NODE = "bench"
LABEL = "bench=pod-startup"
STAGES = ("Scheduled", "Pulled", "Created", "Started")
MONITOR_IMPORTS = "import ctypes, datetime, json, os, signal, subprocess, sys, threading, time"


def row(measure: str, values: list[float]) -> tuple[str, ...]:
    if not values:
        return (measure, "0", "-", "-", "-", "-")
    ms = [v * 1000 for v in values]
    return (measure, str(len(ms)), *(f"{percentile(ms, p):.0f}" for p in (50, 90, 99)),
            f"{max(ms):.0f}")


def sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # never pipes for runc create (the container would inherit them): callers pass files
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


# -- memory and CPU ------------------------------------------------------------------------

def monitors(data: Path) -> list[int]:
    """The per-container monitors of the data dir: conmon or the Python one."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if str(data).encode() in b" ".join(argv) and (
                        argv[0].endswith(b"conmon") or any(a.endswith(b"monitor.py")
                                                           for a in argv)):
                    found.append(int(entry.name))
    return found


def memory_notes(what: str, pids: list[int], per: int = 1) -> str:
    rss, pss = (sum(m[i] for m in map(memory_kib, pids)) for i in (0, 1))
    return (f"{what}: RSS {rss / 1024 / per:.1f} MiB, PSS {pss / 1024 / per:.1f} MiB"
            f" ({len(pids)} processes)")


# -- the cluster side ----------------------------------------------------------------------

class Recorder:
    """Two watches (pods, Events) started before the first create; arrival times per pod."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pods = client.resource("v1", "Pod")
        self.events = client.resource("v1", "Event")
        self.running: dict[str, float] = {}
        self.stages: dict[str, dict[str, float]] = {}
        self.deleted: set[str] = set()
        self.created: set[str] = set()
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        rv_pods = (await self.client.list(self.pods, "default", limit=1))["metadata"][
            "resourceVersion"]
        rv_events = (await self.client.list(self.events, "default", limit=1))["metadata"][
            "resourceVersion"]
        self._tasks = [asyncio.create_task(self._watch_pods(rv_pods)),
                       asyncio.create_task(self._watch_events(rv_events))]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def wait_running(self, name: str) -> asyncio.Future[float]:
        fut = self._waiters.get(name)
        if fut is None:
            fut = self._waiters[name] = asyncio.get_running_loop().create_future()
            if name in self.running:
                fut.set_result(self.running[name])
        return fut

    async def _watch_pods(self, rv: str) -> None:
        async for type_, pod in self.client.watch(self.pods, "default", resource_version=rv,
                                                  label_selector=LABEL, timeout_seconds=3600,
                                                  bookmarks=False):
            now = time.perf_counter()
            name = pod["metadata"]["name"]
            if type_ == "DELETED":
                self.deleted.add(name)
                continue
            if pod.get("spec", {}).get("nodeName"):
                self.stages.setdefault(name, {}).setdefault("bound", now)
            if (pod.get("status") or {}).get("phase") == "Running" and name not in self.running:
                self.running[name] = now
                fut = self._waiters.get(name)
                if fut is not None and not fut.done():
                    fut.set_result(now)

    async def _watch_events(self, rv: str) -> None:
        async for type_, ev in self.client.watch(self.events, "default", resource_version=rv,
                                                 timeout_seconds=3600, bookmarks=False):
            if type_ != "ADDED" or ev.get("reason") not in STAGES:
                continue
            name = (ev.get("involvedObject") or {}).get("name", "")
            self.stages.setdefault(name, {}).setdefault(ev["reason"], time.perf_counter())


def pod_manifest(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"bench": "pod-startup"}},
            "spec": {"containers": [{"name": "app", "image": IMAGE,
                                     "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"]}],
                     "terminationGracePeriodSeconds": 1}}


async def create_and_wait(rec: Recorder, name: str, starts: dict[str, float],
                          within: float) -> float:
    running = rec.wait_running(name)
    t0 = starts[name] = time.perf_counter()
    await rec.client.create(rec.pods, pod_manifest(name), "default")
    rec.created.add(name)
    return await asyncio.wait_for(running, within) - t0


async def node_ready(client: Client) -> bool:
    try:
        node = await client.get(client.resource("v1", "Node"), NODE)
    except errors.ApiError:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


async def delete_all(rec: Recorder, names: list[str], data: Path, within: float) -> None:
    """Delete the pods and wait until the API and the node are quiet (no container left),
    so a mode does not pay for the previous one's teardown."""
    async def one(name: str) -> None:
        with contextlib.suppress(errors.ApiError):
            await rec.client.delete(rec.pods, name, "default", grace_period_seconds=1)
    await asyncio.gather(*(one(n) for n in names))

    async def quiet() -> bool:
        left = (await rec.client.list(rec.pods, "default", label_selector=LABEL))["items"]
        containers = data / "runtime" / "containers"
        return not left and not (containers.exists() and any(containers.iterdir()))
    await wait_until(quiet, within=within, what="pods deleted and their containers gone",
                     interval=0.25)


async def measure_pods(proc: subprocess.Popen[bytes], data: Path, *, pods: int,
                       per_pod: float, cpu: CpuAccount | None = None
                       ) -> tuple[list[tuple[str, ...]], list[str]]:
    kubeconfig = data / "kubeconfig"
    t_up = time.monotonic()
    while not kubeconfig.exists():
        if proc.poll() is not None:
            raise SystemExit(f"pinnace up exited with {proc.returncode}")
        if time.monotonic() - t_up > 60:
            raise SystemExit("pinnace up wrote no kubeconfig within 60 s")
        await asyncio.sleep(0.05)
    client = Client(HttpTransport.from_kubeconfig(kubeconfig), field_manager="bench")
    notes: list[str] = []
    rows: list[tuple[str, ...]] = []
    rec: Recorder | None = None
    try:
        await wait_until(lambda: node_ready(client), within=60, what=f"node {NODE} Ready")
        notes.append(f"pinnace up → node Ready: {time.monotonic() - t_up:.2f} s")
        sa = client.resource("v1", "ServiceAccount")

        async def default_sa() -> bool:
            with contextlib.suppress(errors.ApiError):
                await client.get(sa, "default", "default")
                return True
            return False
        await wait_until(default_sa, within=30, what="serviceaccount default/default")
        await asyncio.sleep(2.0)  # settled: the controllers' first syncs done
        notes.append(memory_notes("`pinnace up` idle (one real node, no pods)",
                                  process_tree(proc.pid)))
        rec = Recorder(client)
        await rec.start()
        starts: dict[str, float] = {}
        # one pod first, not counted: the agent's first pod pays for imports and caches
        await create_and_wait(rec, "warmup", starts, per_pod)
        await delete_all(rec, ["warmup"], data, per_pod)

        seq = [f"seq-{i}" for i in range(pods)]
        seq_lat = [await create_and_wait(rec, n, starts, per_pod) for n in seq]
        rows.append(row(f"pod create→Running, sequential ({pods})", seq_lat))
        rows.extend(stage_rows(rec, seq, starts))
        t_del = time.perf_counter()
        await delete_all(rec, seq, data, max(per_pod, pods * 2.0))
        notes.append(f"deleting {pods} pods until no container is left: "
                     f"{time.perf_counter() - t_del:.1f} s")

        con = [f"con-{i}" for i in range(pods)]
        t_all = time.perf_counter()
        cpu0 = cpu.seconds() if cpu is not None else 0.0
        own0 = own_cpu_seconds(proc.pid)
        con_lat = await asyncio.gather(*(create_and_wait(rec, n, starts, per_pod * 4)
                                         for n in con))
        notes.append(f"concurrent: all {pods} Running after {time.perf_counter() - t_all:.2f} s")
        own = own_cpu_seconds(proc.pid) - own0
        if cpu is not None:
            used = cpu.seconds() - cpu0
            notes.append(f"concurrent: CPU of pinnace up, monitors, runtime and CNI calls and "
                         f"this client: {used:.2f} s, {used / pods * 1000:.0f} ms per pod "
                         f"(so ≥ {used / 2:.2f} s on 2 cores)")
        notes.append(f"concurrent: of which `pinnace up`'s own threads: {own:.2f} s, "
                     f"{own / pods * 1000:.0f} ms per pod")
        rows.append(row(f"pod create→Running, concurrent ({pods} at once)", list(con_lat)))
        mons = monitors(data)
        notes.append(memory_notes("per running container, its monitor", mons,
                                  max(len(mons), 1)))
        notes.append(memory_notes(f"`pinnace up` with {pods} pods Running",
                                  process_tree(proc.pid)))
        await delete_all(rec, con, data, max(per_pod, pods * 2.0))
    finally:
        if rec is not None:
            await rec.stop()
            left = sorted(rec.created - rec.deleted)
            if left:  # a failed run: delete what it made; `pinnace down` stops the rest
                with contextlib.suppress(Exception):
                    await delete_all(rec, left, data, 30)
        await client.close()
    return rows, notes


def stage_rows(rec: Recorder, names: list[str], starts: dict[str, float]
               ) -> list[tuple[str, ...]]:
    """Where a sequential pod's time goes, between arrivals of its watch events."""
    marks = ("create", "bound", *STAGES[1:], "Running")
    spans: dict[str, list[float]] = {f"{a} → {b}": [] for a, b in itertools.pairwise(marks)}
    for name in names:
        seen = {"create": starts[name], **rec.stages.get(name, {}),
                "Running": rec.running.get(name)}
        for a, b in itertools.pairwise(marks):
            if seen.get(a) is not None and seen.get(b) is not None:
                spans[f"{a} → {b}"].append(seen[b] - seen[a])
    return [row(f"  of which {span} (events' arrival)", v) for span, v in spans.items()]


# -- the bare runc baseline ----------------------------------------------------------------

class RuncBaseline:
    """One overlay rootfs, N bundles (config.json only, each with its own cgroup), one
    private runc root."""

    def __init__(self, base: Path, layers: list[Path]) -> None:
        self.base = base
        self.layers = layers
        self.root = base / "runc-root"
        self.rootfs = base / "rootfs"
        self.cgroup_parent = f"pinnace-bench-{secrets.token_hex(4)}"
        self.mounted = False
        self.ids: list[str] = []
        self.runtime = "runc"

    def prepare(self) -> None:
        for d in (self.root, self.rootfs, self.base / "upper", self.base / "work"):
            d.mkdir(parents=True)
        lower = ":".join(str(p) for p in reversed(self.layers))
        r = sh("mount", "-t", "overlay", "overlay", "-o",
               f"lowerdir={lower},upperdir={self.base / 'upper'},workdir={self.base / 'work'}",
               str(self.rootfs))
        if r.returncode != 0:
            raise SystemExit(f"overlay mount: {r.stderr.strip()}")
        self.mounted = True
        spec_dir = self.base / "spec"
        spec_dir.mkdir()
        r = sh("runc", "spec", "--bundle", str(spec_dir))
        if r.returncode != 0:
            raise SystemExit(f"runc spec: {r.stderr.strip()}")
        self.template = json.loads((spec_dir / "config.json").read_text())
        self.template["process"]["terminal"] = False
        self.template["process"]["args"] = ["sleep", "3600"]
        self.template["root"] = {"path": str(self.rootfs), "readonly": False}

    def bundle(self, cid: str) -> Path:
        d = self.base / "bundles" / cid
        d.mkdir(parents=True)
        spec = json.loads(json.dumps(self.template))
        spec["hostname"] = cid
        spec["linux"]["cgroupsPath"] = f"/{self.cgroup_parent}/{cid}"  # else: the caller's
        (d / "config.json").write_text(json.dumps(spec))
        return d

    def run(self, n: int, runtime: str = "runc") -> tuple[list[float], list[float]]:
        """`runtime` (runc or crun) creates and starts n containers, then deletes them."""
        self.runtime = runtime
        runc = [runtime, "--root", f"{self.root}-{runtime}"]
        starts: list[float] = []
        for i in range(n):
            cid = f"bench-{runtime}-{i}"
            bundle = self.bundle(cid)
            # runc's stdio to /dev/null: the container inherits them, a pipe would hang
            t0 = time.perf_counter()
            created = subprocess.run([*runc, "create", "--bundle", str(bundle), cid],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL).returncode
            if created == 0:
                self.ids.append(cid)
                started = subprocess.run([*runc, "start", cid], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL).returncode
            if created != 0 or started != 0:
                raise SystemExit(f"runc create/start of {cid} failed (exit {created}/"
                                 f"{started if created == 0 else '-'})")
            starts.append(time.perf_counter() - t0)
        return starts, self.delete_all()

    def delete_all(self) -> list[float]:
        times = []
        for cid in list(self.ids):
            t0 = time.perf_counter()
            sh(self.runtime, "--root", f"{self.root}-{self.runtime}", "delete", "-f", cid)
            times.append(time.perf_counter() - t0)
            self.ids.remove(cid)
        return times

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.delete_all()
        if self.mounted:
            sh("umount", str(self.rootfs))
            self.mounted = False
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            top = hierarchy / self.cgroup_parent
            if top.is_dir():
                for d, _subdirs, _files in os.walk(top, topdown=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(d)
        top = Path("/sys/fs/cgroup") / self.cgroup_parent  # cgroup v2 unified
        with contextlib.suppress(OSError):
            top.rmdir()


def interpreter_start(n: int = 10) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", MONITOR_IMPORTS], check=True)
        times.append(time.perf_counter() - t0)
    return times


# -- setup, teardown, report ---------------------------------------------------------------

def leftovers(tmp: Path, data: Path) -> list[str]:
    found = []
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if str(tmp) in line.split()[1]]
    if mounts:
        found.append(f"{len(mounts)} mounts under {tmp}, e.g. {mounts[0]}")
    prefix = f"pinnace-{dir_hash(data)}-"
    netns = [n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
             if n.startswith(prefix)]
    if netns:
        found.append(f"{len(netns)} network namespaces {prefix}*")
    if Path(f"/sys/class/net/pn{dir_hash(data)}").exists():
        found.append(f"the bridge pn{dir_hash(data)}")
    cgroups = [str(h) for h in Path("/sys/fs/cgroup").glob(f"*/pinnace/{dir_hash(data)}")]
    if cgroups:
        found.append(f"cgroups {', '.join(cgroups[:2])}…")
    return found


def profile_tables(path: Path, top: int) -> list[str]:
    stats = pstats.Stats(str(path))
    entries = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append((file, line, func, nc, tt, ct))
    out = [f"\nprofile of `pinnace up` (loop thread): top {top} of pinnace/agent by "
           "cumulative time", "",
           "| cumulative s | own s | calls | function |", "|---:|---:|---:|---|"]
    agent = sorted((e for e in entries if "/pinnace/agent/" in e[0]), key=lambda e: -e[5])
    for file, line, func, nc, tt, ct in agent[:top]:
        where = file.split("/pinnace/", 1)[1]
        out.append(f"| {ct:.3f} | {tt:.3f} | {nc} | {func} ({where}:{line}) |")
    out += ["", f"top {top} of all code by own time", "",
            "| own s | cumulative s | calls | function |", "|---:|---:|---:|---|"]
    for file, line, func, nc, tt, ct in sorted(entries, key=lambda e: -e[4])[:top]:
        where = file.split("/site-packages/", 1)[-1].split("/pinnace/", 1)[-1]
        out.append(f"| {tt:.3f} | {ct:.3f} | {nc} | {func} ({where}:{line}) |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--images", type=Path, default=None,
                        help="a dir with busybox_1.28.tar (default: build with "
                             "scripts/build-test-images)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds one pod may take to be Running")
    parser.add_argument("--profile", type=Path, default=None, metavar="FILE",
                        help="run `pinnace up` under cProfile writing FILE; print its top")
    parser.add_argument("--top", type=int, default=25, help="profile entries shown")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("runc") is None:
        raise SystemExit("bench.pod_startup needs root and runc (scripts/setup installs it)")

    tmp = Path(tempfile.mkdtemp(prefix="pinnace-bench-pods-"))
    data = tmp / "data"
    data.mkdir()
    cidr = f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24"
    rows: list[tuple[str, ...]] = []
    notes: list[str] = [f"pod CIDR {cidr}; data dir {data}"]
    proc: subprocess.Popen[bytes] | None = None
    baseline: RuncBaseline | None = None
    cpu = CpuAccount.open()
    try:
        images = build_images(tmp, args.images)
        t0 = time.perf_counter()
        r = sh(sys.executable, "-m", "pinnace.cli", "image", "import", "--data-dir", str(data),
               str(images / "busybox_1.28.tar"))
        if r.returncode != 0:
            raise SystemExit(f"image import failed: {r.stderr.strip()}")
        notes.append(f"`pinnace image import` busybox: {time.perf_counter() - t0:.2f} s")

        baseline = RuncBaseline(tmp / "baseline", ImageStore(data).unpacked_layers(IMAGE))
        baseline.prepare()

        up = ["-m", "pinnace.cli", "up", "--data-dir", str(data), "--port", str(free_port()),
              "--node-name", NODE, "--kubelet-port", str(free_port()), "--pod-cidr", cidr]
        if args.profile is not None:
            up = ["-m", "cProfile", "-o", str(args.profile.resolve()), *up]
        with open(tmp / "up.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, *up], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        pod_rows, pod_notes = asyncio.run(measure_pods(proc, data, pods=args.pods,
                                                       per_pod=args.timeout, cpu=cpu))
        rows += pod_rows
        notes += pod_notes

        # the baseline while `pinnace up` runs idle, as the pods had it
        runc_starts, runc_deletes = baseline.run(args.pods)
        rows.append(row(f"bare runc create+start ({args.pods}, same image)", runc_starts))
        rows.append(row("bare runc delete -f", runc_deletes))
        if shutil.which("crun") is not None:  # what the node uses where installed
            crun_starts, crun_deletes = baseline.run(args.pods, "crun")
            rows.append(row(f"bare crun create+start ({args.pods}, same image)", crun_starts))
            rows.append(row("bare crun delete -f", crun_deletes))
        rows.append(row("python -I -S + the monitor's imports (its startup)", interpreter_start()))
    finally:
        stop(proc)
        if proc is not None and proc.returncode not in (0, None):
            tail = (tmp / "up.log").read_text(errors="replace").splitlines()[-15:]
            print("pinnace up's log ends:\n" + "\n".join(tail), file=sys.stderr)
        down = sh(sys.executable, "-m", "pinnace.cli", "down", "--data-dir", str(data),
                  timeout=300)
        warnings = [] if down.returncode == 0 else [
            f"pinnace down failed: {down.stderr.strip()}"]
        if baseline is not None:
            baseline.cleanup()
        if cpu is not None:
            cpu.close()
        left = leftovers(tmp, data)
        warnings += [f"left on the host: {what}" for what in left]
        if left:
            warnings.append(f"kept {tmp} (something of it is still mounted or in use)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        for w in warnings:  # printed here too when the run failed
            print(f"WARNING: {w}", file=sys.stderr, flush=True)

    print(markdown_table(["measure (ms)", "n", "p50", "p90", "p99", "max"], rows))
    print()
    for n in notes:
        print(f"- {n}")
    print(f"- python {sys.version.split()[0]}, {os.cpu_count()} cpus; aim (issue 14): "
          "concurrent p50 ≤ 500 ms, ≤ 120 MB idle, ≤ 2 MB per container")
    if args.profile is not None and args.profile.exists():
        print("\n".join(profile_tables(args.profile, args.top)))


if __name__ == "__main__":
    main()
