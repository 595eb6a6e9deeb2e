"""What the audit log costs the in-process components: gets through `LocalTransport` (as
the scheduler, RBAC applied, as a component inside `pinnace up` makes them) with no
policy, with a policy that logs nothing of them, and with one that logs them.

    python -m bench.audit [--gets 1000] [--rounds 30]

Prints one table: gets/s per mode, the best round (as timeit reports) and the median;
the modes are interleaved, in a rotating order, so that a busy machine slows them alike.
The baseline, in the same run, is the transport with its audit hook bypassed: the code
before the audit log saw in-process requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from pinnace.apiserver import component_policy
from pinnace.apiserver.audit import AuditLog, Policy
from pinnace.apiserver.local import LocalTransport
from pinnace.cluster import Cluster, ClusterConfig

_POLICIES: dict[str, list[dict[str, Any]]] = {
    "policy, level None for it": [{"level": "None", "users": ["system:kube-scheduler"]},
                                  {"level": "Metadata"}],
    "policy, Metadata": [{"level": "Metadata"}],
    "policy, RequestResponse": [{"level": "RequestResponse"}],
}


def _audit_log(tmp: Path, rules: list[dict[str, Any]]) -> AuditLog:
    path = tmp / f"{len(list(tmp.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                    "rules": rules}))
    return AuditLog(Policy.load(path), tmp / f"{path.stem}.log")


async def measure(tmp: Path, gets: int, rounds: int) -> list[tuple[str, float, float]]:
    async with Cluster(ClusterConfig(data_dir=tmp / "data", port=0, controllers=False,
                                     scheduler=False)) as cluster:
        registry = cluster.server.registry
        assert registry is not None
        c = cluster.client
        pods = c.resource("v1", "Pod")
        await c.create(pods, {"metadata": {"name": "p"},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                       "default")
        client = cluster.client_as(component_policy.SCHEDULER)
        transport = client.transport
        assert isinstance(transport, LocalTransport)
        logs = {name: _audit_log(tmp, rules) for name, rules in _POLICIES.items()}
        modes: dict[str, Any] = {"baseline: audit hook bypassed": None,
                                 "no policy": None, **logs}
        rates: dict[str, list[float]] = {m: [] for m in modes}
        hook = transport._audit
        order = list(modes)
        for r in range(rounds):
            # each round starts with a different mode: none is always first or last
            for mode in order[r % len(order):] + order[:r % len(order)]:
                audit_log = modes[mode]
                registry.audit_log = audit_log
                if mode.startswith("baseline"):
                    transport._audit = lambda *_: None  # type: ignore[method-assign]
                started = time.perf_counter()
                for _ in range(gets):
                    await client.get(pods, "p", "default")
                rates[mode].append(gets / (time.perf_counter() - started))
                transport._audit = hook  # type: ignore[method-assign]
        registry.audit_log = None
        for audit_log in logs.values():
            audit_log.close()
        return [(m, max(r), statistics.median(r)) for m, r in rates.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gets", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as d:
        results = asyncio.run(measure(Path(d), args.gets, args.rounds))
    best, median = results[0][1], results[0][2]
    title = "in-process get as system:kube-scheduler"
    width = max(len(title), *(len(m) for m, _, _ in results))
    print(f"{title.ljust(width)}  {'best/s':>8}  "
          f"{'vs base':>8}  {'median/s':>8}  {'vs base':>8}")
    print(f"{'-' * width}  " + "  ".join(["-" * 8] * 4))
    for mode, b, m in results:
        print(f"{mode.ljust(width)}  {b:8.0f}  {100 * (b / best - 1):+7.1f}%  "
              f"{m:8.0f}  {100 * (m / median - 1):+7.1f}%")
    print(f"({args.rounds} rounds of {args.gets} gets; python "
          f"{sys.version.split()[0]}, {os.cpu_count()} cpus shared with other work)")


if __name__ == "__main__":
    main()
