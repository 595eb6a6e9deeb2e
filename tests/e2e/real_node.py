"""A `pinnace up` with one real node (runc containers) for end-to-end tests.

The node pulls through the session's local registry, configured in the data dir's
`registries.yaml` as the mirror of docker.io, so the seed manifests run unmodified and
no test traffic leaves loopback. Each cluster has its own pod CIDR (a random /24 in
10.200.0.0/13) and kubelet port, and is torn down with `pinnace down`, after which
nothing of its data dir may be left on the host.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e import workloads
from tests.e2e.cluster import Cluster
from tests.leftovers import leftovers, random_pod_cidr
from tests.ports import free_port

NODE = "pinnace-e2e"


def registries_yaml(registry_url: str) -> str:
    return f'mirrors:\n  "docker.io":\n    endpoint:\n      - "{registry_url}"\n'


def real_cluster(base: Path, registry_url: str, *extra: str, node_name: str = NODE
                 ) -> Iterator[Cluster]:
    data = base / "data"
    data.mkdir(parents=True)
    (data / "registries.yaml").write_text(registries_yaml(registry_url))
    c = Cluster(data_dir=data, home=base / "home", real_node=True)
    try:
        c.start(extra=("--node-name", node_name, "--kubelet-port", str(free_port()),
                       "--pod-cidr", random_pod_cidr(), "--restart-backoff", "1", *extra))
        c.kubectl("wait", "--for=condition=Ready", f"node/{node_name}", "--timeout=60s")
        yield c
    finally:
        c.stop()
        c.down()
        assert leftovers(data) == []


def pod(c: Cluster, name: str, namespace: str = "default") -> dict[str, Any]:
    return json.loads(c.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)


def wait_for(check: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    """`workloads.wait_for` with a real node's patience (images unpack, containers start)."""
    return workloads.wait_for(check, timeout=timeout, interval=interval)


def container_status(c: Cluster, name: str, container: str = "") -> dict[str, Any]:
    statuses = (pod(c, name).get("status") or {}).get("containerStatuses") or []
    for s in statuses:
        if not container or s["name"] == container:
            return s
    return {}


def run_pod(c: Cluster, name: str, containers: list[dict], **spec: object) -> None:
    """kubectl apply a Pod of `containers` (grace period 1 s unless `spec` says otherwise)."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 1, **spec}}
    c.kubectl("apply", "-f", "-", input=json.dumps(body))


# HTTP straight to loopback or a pod address, never through a proxy from the environment
direct_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
