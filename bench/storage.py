"""Storage on a real node: MB/s through an nfs, a local-path and a hostPath volume (the
baseline: the host's own file system), and the time to bind 1,000 claims to 1,000 PVs.

    python -m bench.storage [--size-mb 200] [--claims 1000] [--images DIR]

Runs `pinnace up` as a subprocess (one real node `bench`, everything under a temporary
data dir) and a real NFS server (nfs-ganesha in a network namespace of its own, the one
the tests use: tests/nfs_server.py; this kernel has no NFS client, so the nfs volume is
pinnace's userspace client through FUSE). For each volume a busybox pod (`sleep 3600`)
mounts it at /data; then, through `kubectl exec`:

- write: `dd if=/dev/zero of=/data/f bs=1M count=N conv=fsync` (durable: fsync before dd
  stops its clock);
- read: the host drops its page cache (`echo 3 > /proc/sys/vm/drop_caches`: so hostPath
  and local-path read their disk, not memory), then `dd if=/data/f of=/dev/null bs=1M`.

MB/s: bytes over the time `kubectl exec` of dd took, less the median of three empty
`kubectl exec true` (busybox's dd prints no timing). Binding is bench/pv_binding.py's
`measure()` (its own in-process control plane: N volumes Available, then N claims, timed
to all Bound; its baseline is the 4N writes of those binds by one client). Teardown always
runs: pods deleted, `pinnace up` stopped, `pinnace down`, the NFS
server and its namespace removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import pv_binding
from bench._common import build_images, free_port, markdown_table, stop, wait_until
from bench.pod_startup import (
    IMAGE,
    NODE,
    leftovers,
    node_ready,
    sh,
)
from pinnace.client.client import Client
from pinnace.client.transport import HttpTransport
from tests.nfs_server import available as nfs_available
from tests.nfs_server import running_nfs_server

REPO = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


def kubectl(data: Path, *args: str, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(data / "kubeconfig")}
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True,
                          input=input, timeout=timeout)


def timed_exec(data: Path, pod: str, *command: str) -> float:
    """Seconds `kubectl exec` of `command` took (it must succeed)."""
    t0 = time.perf_counter()
    r = kubectl(data, "exec", pod, "--", *command)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} in {pod}: {r.stderr.strip()}")
    return elapsed


def pod_with(name: str, volume: dict[str, Any]) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "dd", "image": IMAGE, "command": ["sleep", "3600"],
                                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", **volume}]}})


def measure_volume(data: Path, name: str, volume: dict[str, Any], size_mb: int,
                   extra: str = "") -> tuple[float, float]:
    """(write MB/s, read MB/s) in a pod using `volume`; the pod is deleted afterwards."""
    for manifest in filter(None, (extra, pod_with(name, volume))):
        r = kubectl(data, "apply", "-f", "-", input=manifest)
        if r.returncode != 0:
            raise RuntimeError(f"apply {name}: {r.stderr.strip()}")
    try:
        r = kubectl(data, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=180s")
        if r.returncode != 0:
            events = kubectl(data, "get", "events", "--field-selector",
                             f"involvedObject.name={name}").stdout
            raise RuntimeError(f"pod {name} not Ready: {r.stderr.strip()}\n{events}")
        # busybox's dd prints no timing: the exec is timed, less an empty exec's cost
        overhead = sorted(timed_exec(data, name, "true") for _ in range(3))[1]
        write = timed_exec(data, name, "dd", "if=/dev/zero", "of=/data/f", "bs=1M",
                           f"count={size_mb}", "conv=fsync") - overhead
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        read = timed_exec(data, name, "dd", "if=/data/f", "of=/dev/null", "bs=1M") - overhead
        mb = size_mb * 1024 * 1024 / 1e6
        return mb / write, mb / read
    finally:
        kubectl(data, "delete", "pod", name, "--wait=true", "--timeout=120s")


async def cluster_ready(proc: subprocess.Popen[bytes], data: Path) -> Client:
    t0 = time.monotonic()
    while not (data / "kubeconfig").exists():
        if proc.poll() is not None or time.monotonic() - t0 > 60:
            raise SystemExit("pinnace up did not start")
        await asyncio.sleep(0.05)
    client = Client(HttpTransport.from_kubeconfig(data / "kubeconfig"), field_manager="bench")
    await wait_until(lambda: node_ready(client), within=60, what=f"node {NODE} Ready")
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--images", type=Path, default=None,
                        help="a dir with busybox_1.28.tar (default: scripts/build-test-images)")
    args = parser.parse_args()
    why = nfs_available()
    if why is not None or shutil.which("runc") is None:
        raise SystemExit(f"bench.storage needs root, runc and the NFS test packages: {why}")
    tmp = Path(tempfile.mkdtemp(prefix="pinnace-bench-storage-"))
    os.chmod(tmp, 0o755)
    data = tmp / "data"
    data.mkdir()
    cidr = f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24"
    results: dict[str, tuple[float, float] | str] = {}
    binding: dict[str, float] | None = None
    binding_error = "not run"
    proc: subprocess.Popen[bytes] | None = None
    try:
        images = build_images(tmp, args.images)
        r = sh(sys.executable, "-m", "pinnace.cli", "image", "import", "--data-dir", str(data),
               str(images / "busybox_1.28.tar"))
        if r.returncode != 0:
            raise SystemExit(f"image import failed: {r.stderr.strip()}")
        with open(tmp / "up.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pinnace.cli", "up", "--data-dir", str(data), "--port",
                 str(free_port()), "--node-name", NODE, "--kubelet-port", str(free_port()),
                 "--pod-cidr", cidr], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=REPO)
        asyncio.run(_node_up(proc, data))
        host_dir = tmp / "hostpath"
        results["hostPath"] = measure_volume(data, "bench-hostpath", {"hostPath": {
            "path": str(host_dir), "type": "DirectoryOrCreate"}}, args.size_mb)
        claim = json.dumps({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": "bench-local"},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "1Gi"}}}})
        try:
            results["local-path"] = measure_volume(
                data, "bench-local-path", {"persistentVolumeClaim": {"claimName": "bench-local"}},
                args.size_mb, extra=claim)
        except RuntimeError as e:
            results["local-path"] = f"failed: {str(e).splitlines()[0][:120]}"
        with running_nfs_server(tmp / "nfs") as srv:
            (srv.export / "bench").mkdir(mode=0o777)
            results["nfs"] = measure_volume(data, "bench-nfs", {"nfs": {
                "server": srv.server, "path": str(srv.export / "bench")}}, args.size_mb)
        try:  # a control plane of its own, no node
            binding = pv_binding.measure(args.claims)
        except (SystemExit, Exception) as e:  # the MB/s rows still print
            binding_error = f"failed: {e}"
    finally:
        stop(proc)
        down = sh(sys.executable, "-m", "pinnace.cli", "down", "--data-dir", str(data),
                  timeout=300)
        left = leftovers(tmp, data)
        if down.returncode != 0:
            print(f"WARNING: pinnace down failed: {down.stderr.strip()}", file=sys.stderr)
        for what in left:
            print(f"WARNING: left on the host: {what}", file=sys.stderr)
        if not left:
            shutil.rmtree(tmp, ignore_errors=True)
    print(storage_table(results, binding or binding_error, args))
    print(f"\n- python {sys.version.split()[0]}, {os.cpu_count()} cpus; read after the host "
          "dropped its page cache")


async def _node_up(proc: subprocess.Popen[bytes], data: Path) -> None:
    client = await cluster_ready(proc, data)
    await client.close()


def storage_table(results: dict[str, tuple[float, float] | str],
                  binding: dict[str, float] | str, args: argparse.Namespace) -> str:
    base = results.get("hostPath")
    rows: list[tuple[str, ...]] = []
    for name, label in (("hostPath", "hostPath (baseline)"), ("local-path", "local-path"),
                        ("nfs", "nfs (userspace NFSv3 over FUSE)")):
        r = results.get(name, "not run")
        if isinstance(r, str):
            rows.append((label, r, "", "", ""))
            continue
        ratios = ("", "")
        if isinstance(base, tuple):
            ratios = (f"{r[0] / base[0]:.2f}", f"{r[1] / base[1]:.2f}")
        rows.append((label, f"{r[0]:.0f}", f"{r[1]:.0f}", *ratios))
    n = args.claims
    if isinstance(binding, str):
        rows.append((f"bind {n} claims to {n} PVs (bench/pv_binding.py)", binding, "", "", ""))
    else:
        rows.append((f"bind {n} claims to {n} PVs (create → all Bound; bench/pv_binding.py)",
                     f"{binding['bind_s']:.1f} s", f"{n / binding['bind_s']:.0f} claims/s",
                     f"baseline: {4 * n} raw writes {binding['baseline_s']:.1f} s",
                     f"{binding['baseline_s'] / binding['bind_s']:.2f}"))
    return markdown_table([f"measure ({args.size_mb} MB file, in a pod)", "write MB/s",
                           "read MB/s", "write vs hostPath", "read vs hostPath"], rows)


if __name__ == "__main__":
    main()
