"""Pod traffic across nodes (host-gw routes) beside pod traffic on one node.

    python -m bench.multinode [--requests 300] [--images DIR]

Runs `pinnace up --nodes 2` as a subprocess (node `bench1` in the host's network, `node2`
an agent in its own network namespace; random bridge and pod CIDRs, everything under a
temporary data dir, images imported into both nodes), then a busybox client and two nginx
pods: one on the client's node (the baseline, same run: bridge only), one on node 2 (pod →
bridge → host routing → veth → node 2's routing → its bridge). The client fetches `/` N
times in one shell loop per target (`kubectl exec`, timed around the call, so each row
also carries one exec's overhead; an empty exec is the first row). Also the time from
starting `up` to both nodes Ready. Teardown always runs: `up` stopped by its PID, then
`pinnace down`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import build_images, free_port, print_table, stop

KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


def kubectl(data: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run([KUBECTL, "--kubeconfig", str(data / "kubeconfig"), *args],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOME": str(data.parent)})
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def wait(what: str, check, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def pod(name: str, node: str, image: str, *command: str) -> str:
    spec: dict = {"nodeName": node, "terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "c", "image": image,
                                  "imagePullPolicy": "IfNotPresent"}]}
    if command:
        spec["containers"][0]["command"] = list(command)
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": spec})


def run(requests: int, images: Path, tmp: Path) -> list[tuple[str, float]]:
    data = tmp / "data"
    for d in (data, data / "nodes" / "node2"):
        subprocess.run([sys.executable, "-m", "pinnace.cli", "image", "import", "--data-dir",
                        str(d), str(images / "busybox_1.28.tar"),
                        str(images / "nginx_1.19.tar")], check=True, capture_output=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinnace.cli", "up", "--data-dir", str(data), "--nodes", "2",
         "--nodes-cidr", f"10.198.{random.randint(0, 255)}.0/24", "--node-name", "bench1",
         "--pod-cidr", f"10.42.{random.randint(128, 250)}.0/24", "--port", str(free_port()),
         "--kubelet-port", str(free_port())],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "up.log", "wb"))
    rows: list[tuple[str, float]] = []
    try:
        wait("the kubeconfig", lambda: (data / "kubeconfig").exists())
        wait("2 Ready nodes", lambda: kubectl(data, "get", "nodes", check=False).count(
            " Ready ") == 2)
        rows.append(("up --nodes 2 -> 2 nodes Ready (s)", time.monotonic() - started))
        for name, node, image, cmd in (("client", "bench1", "busybox:1.28", ("sleep", "1d")),
                                       ("near", "bench1", "nginx:1.19", ()),
                                       ("far", "node2", "nginx:1.19", ())):
            subprocess.run(
                [KUBECTL, "--kubeconfig", str(data / "kubeconfig"), "apply", "-f", "-"],
                input=pod(name, node, image, *cmd), text=True, check=True,
                capture_output=True)
        kubectl(data, "wait", "--for=condition=Ready", "pod/client", "pod/near", "pod/far",
                "--timeout=120s")
        def loop(n: int) -> str:  # $0: the target address (sh -c SCRIPT ADDRESS)
            return f"i=0; while [ $i -lt {n} ]; do wget -qO /dev/null http://$0/; " \
                   "i=$((i+1)); done"
        t0 = time.perf_counter()
        kubectl(data, "exec", "client", "--", "true")
        rows.append(("one kubectl exec, empty (ms)", (time.perf_counter() - t0) * 1000))
        for target in ("near", "far"):
            ip = kubectl(data, "get", "pod", target, "-o", "jsonpath={.status.podIP}")
            kubectl(data, "exec", "client", "--", "sh", "-c", loop(10), ip)  # warm: ARP
            t0 = time.perf_counter()
            kubectl(data, "exec", "client", "--", "sh", "-c", loop(requests), ip)
            total = time.perf_counter() - t0
            label = "same node (baseline)" if target == "near" else "across nodes (host-gw)"
            rows.append((f"{label}, ms per request", total * 1000 / requests))
    finally:
        stop(proc)
        subprocess.run([sys.executable, "-m", "pinnace.cli", "down", "--data-dir", str(data)],
                       capture_output=True, check=False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--images", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.requests, build_images(Path(tmp), args.images), Path(tmp))
    print_table([f"what ({args.requests} sequential HTTP GETs)", "value"],
                [(label, f"{value:.2f}") for label, value in rows])


if __name__ == "__main__":
    main()
