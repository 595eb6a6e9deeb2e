"""The `kubernetes` Service from pods, on a real node, through kubectl: from a runc pod,
https://10.96.0.1/version reaches the API server (busybox wget, whose TLS names no
signature algorithms), which listens on the pod bridge's gateway and is that Service's
endpoint; the serving certificate verifies against the cluster CA under the name
10.96.0.1. After `pinnace down` nothing of the data dir is left (the fixture's
leftover check)."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import real_cluster, run_pod, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("kubernetes-service"), local_registry.url)


def test_the_kubernetes_service_from_a_pod(cluster: Cluster) -> None:
    run_pod(cluster, "in-cluster", [{"name": "sh", "image": "busybox:1.28",
                                     "command": ["sleep", "3600"]}])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/in-cluster", "--timeout=90s",
                    timeout=100)
    pod_ip = json.loads(cluster.kubectl("get", "pod", "in-cluster", "-o", "json")
                        .stdout)["status"]["podIP"]
    gateway = str(next(ipaddress.ip_network(f"{pod_ip}/24", strict=False).hosts()))
    # the Service's endpoint is the API server on the pod bridge's gateway
    endpoints = json.loads(cluster.kubectl("get", "endpoints", "kubernetes", "-o",
                                           "json").stdout)
    assert endpoints["subsets"] == [{"addresses": [{"ip": gateway}], "ports": [
        {"name": "https", "port": cluster.port, "protocol": "TCP"}]}]
    [slice_] = json.loads(cluster.kubectl(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes", "-o",
        "json").stdout)["items"]
    assert slice_["endpoints"][0]["addresses"] == [gateway]

    def version_from_the_pod() -> str:
        result = cluster.kubectl("exec", "in-cluster", "--", "wget", "-q", "-O", "-",
                                 "--no-check-certificate", "https://10.96.0.1/version",
                                 check=False)
        return result.stdout if result.returncode == 0 else ""
    version = json.loads(wait_for(version_from_the_pod, timeout=20))
    assert version["gitVersion"].endswith("+pinnace")
    # the serving certificate is valid for the ClusterIP (what in-cluster clients dial),
    # checked from the host straight at the gateway: the host's own traffic to 10.96.0.1
    # would meet every cluster's table on a machine running several
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    with socket.create_connection((gateway, cluster.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="10.96.0.1") as tls:
        tls.sendall(b"GET /version HTTP/1.1\r\nHost: 10.96.0.1\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response
    assert json.loads(response.partition(b"\r\n\r\n")[2])["gitVersion"] == \
        version["gitVersion"]
    cluster.kubectl("delete", "pod", "in-cluster")
