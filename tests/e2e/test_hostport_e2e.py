"""hostPort and hostNetwork on a real node, as kubectl sees them: a pod's `hostPort` answers on
the node's loopback while the pod lives and stops answering once it is deleted; a
`hostNetwork: true` pod reports the node's IP as its podIP and shares the node's
interfaces. Only loopback is used; `pinnace down` must leave no nft table behind (checked
by `real_cluster`)."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from pinnace.agent.network import dir_hash
from tests.e2e.cluster import Cluster
from tests.e2e.real_node import direct_http, pod, real_cluster, run_pod, wait_for
from tests.ports import free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("hostport"), local_registry.url)


def get(port: int) -> str:
    try:
        with direct_http.open(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def has_table(c: Cluster) -> bool:
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return f"table ip pinnace-{dir_hash(c.data_dir)}" in tables.splitlines()


def running(c: Cluster, name: str) -> dict:
    return wait_for(lambda: (p := pod(c, name))["status"].get("phase") == "Running" and p)


def test_host_port_answers_on_loopback_while_the_pod_lives(cluster: Cluster) -> None:
    port = free_port()
    run_pod(cluster, "web-hostport", [{"name": "web", "image": "nginx:1.19", "ports": [
        {"containerPort": 80, "hostPort": port}]}])
    p = running(cluster, "web-hostport")
    assert p["status"]["podIP"] != p["status"]["hostIP"]
    assert "nginx" in wait_for(lambda: get(port), timeout=30)
    assert has_table(cluster)
    cluster.kubectl("delete", "pod", "web-hostport", "--wait=true", "--timeout=60s")
    wait_for(lambda: refused(port) and not has_table(cluster), timeout=30)


def test_host_network_pod_has_the_nodes_ip_and_interfaces(cluster: Cluster) -> None:
    port = free_port()
    script = ("mkdir -p /www && echo hello-host-network > /www/index.html && "
              f"exec httpd -f -p 127.0.0.1:{port} -h /www")
    run_pod(cluster, "hostnet", [{"name": "c", "image": "busybox:1.28",
                                "command": ["sh", "-c", script]}], hostNetwork=True)
    p = running(cluster, "hostnet")
    assert p["status"]["podIP"] == p["status"]["hostIP"] == "127.0.0.1"
    assert p["status"]["podIPs"] == [{"ip": "127.0.0.1"}]
    assert "hello-host-network" in wait_for(lambda: get(port), timeout=30)
    dev = cluster.kubectl("exec", "hostnet", "--", "cat", "/proc/net/dev").stdout
    names = {line.split(":")[0].strip() for line in dev.splitlines() if ":" in line}
    assert set(os.listdir("/sys/class/net")) <= names
    cluster.kubectl("delete", "pod", "hostnet", "--wait=true", "--timeout=60s")
    wait_for(lambda: refused(port), timeout=30)
