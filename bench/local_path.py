"""Writing to a local-path volume (a loop-mounted ext4 per claim, size enforced) against
writing to a hostPath directory on the same disk (the limit), from one pod on a real node.

    python -m bench.local_path [--mib 200] [--runs 3] [--images DIR]

Runs `pinnace up` (one real node, runc, a random /24 pod CIDR, everything under a
temporary data dir), creates a class-less claim (the default local-path class) of
`--mib` + 100 MiB and one busybox pod mounting it at /lp and a hostPath dir at /hp, then
times `dd if=/dev/zero bs=1M count=N conv=fsync` into each (data on disk, not only in the
page cache), `--runs` times, alternating. A write is timed around `kubectl exec`; the
median of an empty exec (`true`) is subtracted. Prints one table, MB/s (MiB written /
seconds) with hostPath as the baseline; `write_mib_per_s` is what bench/storage.py may
call. Teardown always runs (pod and claim deleted, `pinnace up` stopped by its PID,
`pinnace down`); leftovers are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import build_images, free_port, markdown_table, stop
from bench.pod_startup import leftovers, sh
from pinnace.agent.volumes.local_path import loop_devices

REPO = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


def kubectl(kubeconfig: Path, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], input=input,
                       capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
    return r


def timed_exec(kubeconfig: Path, pod: str, command: str) -> float:
    t0 = time.perf_counter()
    kubectl(kubeconfig, "exec", pod, "--", "sh", "-c", command)
    return time.perf_counter() - t0


def write_mib_per_s(kubeconfig: Path, pod: str, path: str, mib: int, runs: int) -> list[float]:
    """MiB/s of `runs` writes of `mib` MiB (fsync'd) into `path` in the pod's container,
    exec overhead (the median of empty execs) taken off."""
    overhead = statistics.median(timed_exec(kubeconfig, pod, "true") for _ in range(5))
    rates = []
    for _ in range(runs):
        took = timed_exec(kubeconfig, pod, f"dd if=/dev/zero of={path}/bench bs=1M "
                                            f"count={mib} conv=fsync 2>/dev/null; "
                                            f"rm -f {path}/bench; sync")
        rates.append(mib / max(took - overhead, 1e-3))
    return rates


def manifests(mib: int, host_dir: Path) -> str:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "bench"},
             "spec": {"accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": f"{mib + 100}Mi"}}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "dd", "image": "busybox:1.28", "imagePullPolicy": "IfNotPresent",
               "command": ["sleep", "3600"],
               "volumeMounts": [{"name": "lp", "mountPath": "/lp"},
                                {"name": "hp", "mountPath": "/hp"}]}],
               "volumes": [{"name": "lp", "persistentVolumeClaim": {"claimName": "bench"}},
                           {"name": "hp", "hostPath": {"path": str(host_dir),
                                                       "type": "DirectoryOrCreate"}}]}}
    return json.dumps(claim) + "\n" + json.dumps(pod)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=Path, default=None)
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("runc") is None:
        raise SystemExit("bench.local_path needs root and runc (scripts/setup installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="pinnace-bench-lp-"))
    data = tmp / "data"
    data.mkdir()
    kubeconfig = data / "kubeconfig"
    cidr = f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24"
    proc: subprocess.Popen[bytes] | None = None
    rows: list[tuple[str, str, str]] = []
    try:
        images = build_images(tmp, args.images)
        sh(sys.executable, "-m", "pinnace.cli", "image", "import", "--data-dir", str(data),
           str(images / "busybox_1.28.tar"))
        with open(tmp / "up.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pinnace.cli", "up", "--data-dir", str(data), "--port",
                 str(free_port()), "--node-name", "bench", "--kubelet-port", str(free_port()),
                 "--pod-cidr", cidr], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 60
        while not kubeconfig.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("pinnace up did not start")
            time.sleep(0.1)
        kubectl(kubeconfig, "wait", "--for=condition=Ready", "node/bench", "--timeout=60s")
        kubectl(kubeconfig, "wait", "--for=create", "serviceaccount/default", "--timeout=60s")
        kubectl(kubeconfig, "apply", "-f", "-", input=manifests(args.mib, tmp / "hostpath"))
        kubectl(kubeconfig, "wait", "--for=condition=Ready", "pod/bench", "--timeout=120s")
        host, local = [], []
        for _ in range(args.runs):  # alternating, so drift in the machine's load hits both
            host += write_mib_per_s(kubeconfig, "bench", "/hp", args.mib, 1)
            local += write_mib_per_s(kubeconfig, "bench", "/lp", args.mib, 1)
        base = statistics.median(host)
        for what, rates in (("hostPath (baseline)", host), ("local-path (loop ext4)", local)):
            med = statistics.median(rates)
            rows.append((what, f"{med:.0f} ({min(rates):.0f}-{max(rates):.0f})",
                         f"{med / base:.2f}"))
    finally:
        if proc is not None and kubeconfig.exists():
            kubectl(kubeconfig, "delete", "pod", "bench", "--wait=true", check=False)
            kubectl(kubeconfig, "delete", "pvc", "bench", "--wait=true", check=False)
        stop(proc)
        sh(sys.executable, "-m", "pinnace.cli", "down", "--data-dir", str(data), timeout=300)
        left = leftovers(tmp, data) + [f"loop device {d}" for d in loop_devices(data)]
        for what in left:
            print(f"WARNING: left on the host: {what}", file=sys.stderr)
        if not left:
            shutil.rmtree(tmp, ignore_errors=True)
    print(markdown_table([f"{args.mib} MiB write, dd conv=fsync, {args.runs} runs",
                          "MiB/s median (min-max)", "ratio to hostPath"], rows))
    fstype = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", str(tmp.parent)],
                            capture_output=True, text=True).stdout.strip()
    print(f"\n- python {sys.version.split()[0]}, {os.cpu_count()} cpus, data dir on {fstype}")


if __name__ == "__main__":
    main()
