"""What ServiceAccount tokens cost the API server, over HTTPS on loopback.

    python -m bench.service_account_tokens [--requests 2000] [--pods 300] [--concurrency 16]

One table, each row beside its baseline measured in the same run:
- GETs/s authenticated by a ServiceAccount JWT (signature checked once, then the
  ServiceAccount and the bound pod looked up in the watch caches per request) vs by a
  static token (`tokens.csv`) of a user the same Role is bound to;
- pod creations/s with the ServiceAccount admission (serviceAccountName, the
  kube-api-access volume and mounts) vs a server without it;
- TokenRequests/s (an RSA-2048 signature each).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import in_parallel, print_table
from pinnace.cluster import Cluster, ClusterConfig

NS_PATH = "/api/v1/namespaces/default"
RBAC_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/default"
STATIC_TOKEN = "bench-static-token"
ROUNDS = 2  # each server runs this often, alternating; the better round counts


async def rate(n: int, fn: Callable[[int], Awaitable[object]], concurrency: int) -> float:
    t0 = time.perf_counter()
    await in_parallel(n, fn, concurrency)
    return n / (time.perf_counter() - t0)


def prepare_data_dir(data: Path) -> None:
    """The data dir with a static-token user (`tokens.csv`, read at start)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "tokens.csv").write_text(f"{STATIC_TOKEN},alice,alice-uid\n")


async def measure(data: Path, *, admission: bool, requests: int, pods: int,
                  concurrency: int) -> dict[str, float]:
    prepare_data_dir(data)
    cluster = Cluster(ClusterConfig(data_dir=data, port=0, controllers=False, scheduler=False,
                                    service_account_admission=admission))
    await cluster.start()
    ctx = ssl.create_default_context(cadata=cluster.server.ca_pem.decode())
    admin = {"Authorization": f"Bearer {cluster.server.token}"}
    out: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                ssl=ctx, limit=concurrency)) as s:
            async def call(method: str, path: str, headers: dict[str, str],
                           body: Any = None, want: int = 200, base: str = NS_PATH) -> Any:
                async with s.request(method, cluster.server.url + base + path, json=body,
                                     headers=headers) as r:
                    answer = await r.json()
                    assert r.status == want, answer
                    return answer

            await call("POST", "/serviceaccounts", admin, {"metadata": {"name": "default"}},
                       201)
            await call("POST", "/configmaps", admin, {"metadata": {"name": "cm"}}, 201)
            pod = {"metadata": {"name": "anchor"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
            await call("POST", "/pods", admin, pod, 201)
            answer = await call("POST", "/serviceaccounts/default/token", admin, {"spec": {
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "anchor"}}},
                201)
            bearer = {"Authorization": f"Bearer {answer['status']['token']}"}
            # the ServiceAccount may read the ConfigMap
            await call("POST", "/roles", admin, {"metadata": {"name": "r"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}, 201,
                base=RBAC_PATH)
            await call("POST", "/rolebindings", admin, {
                "metadata": {"name": "r"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "default",
                              "namespace": "default"},
                             {"kind": "User", "name": "alice",
                              "apiGroup": "rbac.authorization.k8s.io"}]}, 201, base=RBAC_PATH)
            static = {"Authorization": f"Bearer {STATIC_TOKEN}"}
            out["get (static token)"] = await rate(
                requests, lambda _: call("GET", "/configmaps/cm", static), concurrency)
            out["get (ServiceAccount JWT)"] = await rate(
                requests, lambda _: call("GET", "/configmaps/cm", bearer), concurrency)
            out["pod create"] = await rate(pods, lambda i: call("POST", "/pods", admin, {
                **pod, "metadata": {"name": f"p{i}"}}, 201), concurrency)
            out["TokenRequest"] = await rate(pods, lambda _: call(
                "POST", "/serviceaccounts/default/token", admin, {"spec": {}}, 201),
                concurrency)
    finally:
        await cluster.stop()
    return out


async def main_async(args: argparse.Namespace) -> None:
    without: dict[str, float] = {}
    with_: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pinnace-bench-sa-") as tmp:
        for i in range(ROUNDS):  # alternating, so a busy spell of the machine hits both
            for admission, best in ((False, without), (True, with_)):
                got = await measure(Path(tmp) / f"{admission}-{i}", admission=admission,
                                    requests=args.requests, pods=args.pods,
                                    concurrency=args.concurrency)
                for k, v in got.items():
                    best[k] = max(best.get(k, 0.0), v)
    rows = [
        ("GETs/s, ServiceAccount JWT vs static token", with_["get (ServiceAccount JWT)"],
         with_["get (static token)"]),
        ("pod creates/s, ServiceAccount admission on vs off", with_["pod create"],
         without["pod create"]),
        ("TokenRequests/s (RS256 signing) vs pod creates/s", with_["TokenRequest"],
         with_["pod create"]),
    ]
    print_table(["measure", "value", "baseline", "ratio"],
                [(name, f"{value:.0f}", f"{base:.0f}", f"{value / base:.2f}")
                 for name, value, base in rows],
                note=f"best of {ROUNDS} alternating rounds per server")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--pods", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
