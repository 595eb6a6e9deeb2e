"""LoadBalancer Services on a real node, through kubectl: each gets its own address of
the pool (127/8: local to the host) in its status, and it answers from the host; two on
the same port both answer (what k3s' servicelb cannot do); a type change gives the
address back. The data path is the service proxy's rules for
`status.loadBalancer.ingress[].ip` (branch svc-proxy). After `pinnace down` nothing of
the data dir is left (the fixture's leftover check)."""

from __future__ import annotations

import ipaddress
import json
import random
import urllib.error
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import direct_http, real_cluster, wait_for

# a pool of its own, so that clusters of parallel test runs never share an address
POOL = f"127.{random.randint(241, 254)}.{random.randint(0, 255)}.0/24"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("load-balancer"), local_registry.url,
                            "--lb-pool", POOL)


def page(url: str) -> bytes | None:
    try:
        with direct_http.open(url, timeout=2) as response:
            return response.read()
    except (OSError, urllib.error.URLError):
        return None


def web(name: str) -> str:
    """A busybox httpd answering its own name on port 8000, behind a LoadBalancer on 80."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: httpd
          image: busybox:1.28
          command: ["sh", "-c", "mkdir /www && echo {name} > /www/index.html &&
                                 exec httpd -f -p 8000 -h /www"]
          readinessProbe: {{tcpSocket: {{port: 8000}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: LoadBalancer
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8000}}]
"""


def external_ip(c: Cluster, name: str) -> str:
    svc = json.loads(c.kubectl("get", "service", name, "-o", "json").stdout)
    ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or [{}]
    return ingress[0].get("ip", "")


def test_two_load_balancers_on_one_port_both_answer_from_the_host(cluster: Cluster) -> None:
    for name in ("blue", "green"):
        cluster.kubectl("apply", "-f", "-", input=web(name))
    for name in ("blue", "green"):
        cluster.kubectl("rollout", "status", f"deployment/{name}", "--timeout=90s",
                        timeout=100)
    ips = {name: wait_for(lambda n=name: external_ip(cluster, n), timeout=20)
           for name in ("blue", "green")}
    assert len(set(ips.values())) == 2
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(POOL) for ip in ips.values())
    listed = cluster.kubectl("get", "services", "blue", "green").stdout
    assert ips["blue"] in listed and ips["green"] in listed, listed
    for name, ip in ips.items():
        body = wait_for(lambda ip=ip: page(f"http://{ip}/"), timeout=20)
        assert body.decode().strip() == name
    # a LoadBalancer turned ClusterIP gives its address back: it no longer answers there
    cluster.kubectl("patch", "service", "green", "-p", '{"spec": {"type": "ClusterIP"}}')
    wait_for(lambda: external_ip(cluster, "green") == "", timeout=20)
    wait_for(lambda: page(f"http://{ips['green']}/") is None, timeout=20)
    assert (page(f"http://{ips['blue']}/") or b"").decode().strip() == "blue"
    for name in ("blue", "green"):
        cluster.kubectl("delete", "-f", "-", input=web(name))
