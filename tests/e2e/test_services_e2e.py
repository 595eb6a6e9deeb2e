"""Services on a real node, through kubectl: the EndpointSlice controller finds the pods, the
Service proxy's nftables table carries seed 07's NodePort 31001 (on 127.0.0.1 too) and the
ClusterIP to them, balances over every ready pod (or keeps a client on one with
sessionAffinity ClientIP), and refuses at once without one."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import direct_http, real_cluster, wait_for
from tests.paths import MANIFESTS

SEED = str(MANIFESTS / "07-nginx-deployment-service.yaml")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("services"), local_registry.url)


def page(url: str) -> bytes | None:
    try:
        with direct_http.open(url, timeout=2) as response:
            return response.read()
    except (OSError, urllib.error.URLError):
        return None


def ready_addresses(c: Cluster) -> list[str]:
    endpoints = json.loads(c.kubectl("get", "endpoints", "nginx", "-o", "json").stdout)
    return [a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []]


def refused_at_once(host: str, port: int) -> bool:
    started = time.monotonic()
    with socket.socket() as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return time.monotonic() - started < 1.0
        except OSError:
            return False
    return False


def test_seed_service_answers_on_its_node_port_and_cluster_ip(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", SEED)
    cluster.kubectl("rollout", "status", "deployment/nginx", "--timeout=90s", timeout=100)
    svc = json.loads(cluster.kubectl("get", "service", "nginx", "-o", "json").stdout)
    cluster_ip = svc["spec"]["clusterIP"]
    pod_ips = [p["status"]["podIP"] for p in json.loads(cluster.kubectl(
        "get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"]]
    wait_for(lambda: ready_addresses(cluster) == pod_ips, timeout=30)
    described = cluster.kubectl("describe", "service", "nginx").stdout
    assert f"Endpoints:                {pod_ips[0]}:80" in described, described
    # the guide's promise: the node's port 31001 reaches an nginx pod
    body = wait_for(lambda: page("http://127.0.0.1:31001/"), timeout=10)
    assert b"Welcome to nginx" in body
    assert b"Welcome to nginx" in (wait_for(lambda: page(f"http://{cluster_ip}:8080/"),
                                            timeout=10))

    # scaled to 0: no endpoints, and both addresses refuse at once rather than time out
    cluster.kubectl("scale", "deployment/nginx", "--replicas=0")
    wait_for(lambda: ready_addresses(cluster) == [], timeout=60)
    wait_for(lambda: refused_at_once("127.0.0.1", 31001), timeout=10)
    assert refused_at_once(cluster_ip, 8080)

    # back to one pod (a new one, a new IP): the same ClusterIP and NodePort answer
    cluster.kubectl("scale", "deployment/nginx", "--replicas=1")
    cluster.kubectl("rollout", "status", "deployment/nginx", "--timeout=90s", timeout=100)
    # the promise: the node port answers within 1 s of the pod being Ready (measured
    # from when kubectl learnt the rollout was done, which is after the pod became Ready)
    ready_seen = time.monotonic()
    assert b"Welcome to nginx" in wait_for(lambda: page("http://127.0.0.1:31001/"), timeout=30)
    assert time.monotonic() - ready_seen < 1.0
    again = json.loads(cluster.kubectl("get", "service", "nginx", "-o", "json").stdout)
    assert again["spec"]["clusterIP"] == cluster_ip
    cluster.kubectl("delete", "-f", SEED)


WHOAMI = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: whoami}
spec:
  replicas: 3
  selector: {matchLabels: {app: whoami}}
  template:
    metadata: {labels: {app: whoami}}
    spec:
      containers:
        - name: httpd
          image: busybox:1.28
          command: ["sh", "-c", "mkdir /www && hostname > /www/index.html &&
                                 exec httpd -f -p 8000 -h /www"]
          ports: [{name: web, containerPort: 8000}]
          readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: whoami}
spec:
  type: NodePort
  selector: {app: whoami}
  ports: [{port: 80, targetPort: web}]
"""


def test_node_port_balances_over_every_ready_pod(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=WHOAMI)
    cluster.kubectl("rollout", "status", "deployment/whoami", "--timeout=90s", timeout=100)
    names = {p["metadata"]["name"] for p in json.loads(cluster.kubectl(
        "get", "pods", "-l", "app=whoami", "-o", "json").stdout)["items"]}
    svc = json.loads(cluster.kubectl("get", "service", "whoami", "-o", "json").stdout)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    wait_for(lambda: page(f"http://127.0.0.1:{node_port}/"), timeout=30)
    seen = {(page(f"http://127.0.0.1:{node_port}/") or b"").decode().strip()
            for _ in range(30)}
    assert seen == names, (seen, names)  # 30 requests reach all three pods (random choice)

    def served_by(n: int) -> set[str]:
        return {(page(f"http://127.0.0.1:{node_port}/") or b"").decode().strip()
                for _ in range(n)}

    # sessionAffinity ClientIP: this client (the host, 127.0.0.1) stays with one pod ...
    cluster.kubectl("patch", "service", "whoami", "-p", '{"spec": {"sessionAffinity": '
                    '"ClientIP"}}')
    wait_for(lambda: len(served_by(10)) == 1, timeout=10)
    sticky = served_by(20)
    assert len(sticky) == 1 and sticky <= names, sticky
    # ... and switching back spreads the requests again
    cluster.kubectl("patch", "service", "whoami", "-p", '{"spec": {"sessionAffinity": '
                    '"None"}}')
    wait_for(lambda: served_by(30) == names, timeout=10)
    # a second Service asking for a node port already taken is refused, naming the field
    clash = cluster.kubectl("create", "service", "nodeport", "clash", "--tcp=80:80",
                            f"--node-port={node_port}", check=False)
    assert clash.returncode == 1
    assert "spec.ports[0].nodePort: Invalid value" in clash.stderr, clash.stderr
    assert "provided port is already allocated" in clash.stderr, clash.stderr
    cluster.kubectl("delete", "-f", "-", input=WHOAMI)
