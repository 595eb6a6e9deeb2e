"""Cluster DNS on a real node, through kubectl and busybox pods: Service names resolve from
inside pods (short, namespaced and fully qualified, through the search list the agent
writes into each pod's /etc/resolv.conf), nslookup gives the ClusterIP, a headless Service
its ready pods, SRV its named port, NXDOMAIN a missing name; a pod reaches itself through
its own Service, and a backend sees the client pod's own address.

Every name asked stays in `cluster.local` (the busybox resolvers try the search list
first, and names with dots are asked as they are), so no query is forwarded off the
machine; dnsPolicy Default and None are checked by the resolv.conf the pod gets.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest

from pinnace.agent.pod_dns import parse_resolv_conf
from tests.e2e.cluster import Cluster
from tests.e2e.real_node import real_cluster, run_pod, wait_for

NGINX = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx}
spec:
  replicas: 1
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
        - {name: nginx, image: "nginx:1.19", ports: [{containerPort: 80}],
           readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 8080, targetPort: 80}]
"""

# busybox httpd answering /cgi-bin/ip with the peer address it saw
ECHOIP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echoip}
spec:
  replicas: 2
  selector: {matchLabels: {app: echoip}}
  template:
    metadata: {labels: {app: echoip}}
    spec:
      containers:
        - name: httpd
          image: busybox:1.28
          command: ["sh", "-c", "mkdir -p /www/cgi-bin &&
            printf '#!/bin/sh\\\\necho Content-Type: text/plain\\\\necho\\\\necho $REMOTE_ADDR\\\\n'
            > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8000 -h /www"]
          ports: [{name: web, containerPort: 8000}]
          readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echoip}
spec:
  selector: {app: echoip}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Service
metadata: {name: echoip-headless}
spec:
  clusterIP: None
  selector: {app: echoip}
  ports: [{name: web, port: 8000}]
"""

SLEEPER = {"name": "main", "image": "busybox:1.28", "command": ["sleep", "3600"]}


def node_dns(c: Cluster) -> str:
    """The node's cluster DNS address: its pod bridge's gateway, .1 of its pod CIDR."""
    node = json.loads(c.kubectl("get", "node", "-o", "json").stdout)["items"][0]
    return node["spec"]["podCIDR"].rsplit(".", 1)[0] + ".1"


def listeners(address: str, port: int) -> list[str]:
    out = subprocess.run(["ss", "-Hlntu", "src", f"{address}:{port}"], capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    dns: list[str] = []
    for c in real_cluster(tmp_path_factory.mktemp("dns"), local_registry.url):
        yield c
        dns.append(node_dns(c))
        assert len(listeners(dns[0], 53)) == 2  # UDP and TCP, until ...
    # ... pinnace down (the loop's end) leaves nothing listening
    assert dns and listeners(dns[0], 53) == []


@pytest.fixture(scope="module")
def workloads(cluster: Cluster) -> dict[str, object]:
    """nginx, echoip (2 pods, a ClusterIP and a headless Service) and a client pod."""
    cluster.kubectl("apply", "-f", "-", input=NGINX + "---" + ECHOIP)
    run_pod(cluster, "client", [SLEEPER])
    for d in ("nginx", "echoip"):
        cluster.kubectl("rollout", "status", f"deployment/{d}", "--timeout=90s", timeout=100)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
    pods = json.loads(cluster.kubectl("get", "pods", "-o", "json").stdout)["items"]
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    services = {name: json.loads(cluster.kubectl("get", "service", name, "-o", "json").stdout)
                for name in ("nginx", "echoip")}
    return {"ips": ips, "cluster_ips": {n: s["spec"]["clusterIP"] for n, s in services.items()},
            "echoip_pods": sorted(ip for n, ip in ips.items() if n.startswith("echoip-"))}


# (not wget's own -T: Debian's static busybox 1.35 segfaults on it)


def in_pod(c: Cluster, pod: str, *command: str, check: bool = True) -> str:
    result = c.kubectl("exec", pod, "--", *command, check=check, timeout=30)
    return result.stdout + result.stderr


def peer_seen(c: Cluster, pod: str) -> str:
    """The address echoip saw for a request from `pod` through the echoip Service (busybox
    httpd listens dual-stack: it writes IPv4 peers as [::ffff:a.b.c.d])."""
    seen = in_pod(c, pod, "timeout", "10", "wget", "-qO-", "http://echoip/cgi-bin/ip")
    return seen.strip().removeprefix("[::ffff:").removesuffix("]")


def test_pods_get_the_cluster_resolv_conf(cluster: Cluster, workloads: dict) -> None:
    resolv = in_pod(cluster, "client", "cat", "/etc/resolv.conf")
    assert f"nameserver {node_dns(cluster)}\n" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv


def test_service_names_serve_from_a_pod(cluster: Cluster, workloads: dict) -> None:
    for host in ("nginx", "nginx.default", "nginx.default.svc.cluster.local"):
        page = wait_for(lambda h=host: "Welcome to nginx" in in_pod(
            cluster, "client", "timeout", "10", "wget", "-qO-", f"http://{h}:8080/", check=False),
            timeout=20)
        assert page, host


def test_nslookup_gives_the_cluster_ip(cluster: Cluster, workloads: dict) -> None:
    # busybox's nslookup asks every search domain and exits 1 as the other two are
    # NXDOMAIN (it does so on any cluster); the answer for the first is what counts
    out = in_pod(cluster, "client", "nslookup", "nginx", check=False)
    assert re.search(rf"Name:\s+nginx\.default\.svc\.cluster\.local\s+Address:\s+"
                     rf"{re.escape(workloads['cluster_ips']['nginx'])}\b", out), out


def test_headless_service_resolves_to_its_ready_pods(cluster: Cluster,
                                                     workloads: dict) -> None:
    out = in_pod(cluster, "client", "nslookup", "echoip-headless.default.svc.cluster.local")
    found = sorted(re.findall(r"Name:\s+echoip-headless\S+\s+Address:\s+(\S+)", out))
    assert found == workloads["echoip_pods"], out


def test_srv_for_a_named_port(cluster: Cluster, workloads: dict) -> None:
    out = in_pod(cluster, "client", "nslookup", "-type=srv",
                 "_http._tcp.nginx.default.svc.cluster.local")
    assert "0 100 8080 nginx.default.svc.cluster.local" in out, out
    out = in_pod(cluster, "client", "nslookup", "-type=srv",
                 "_web._tcp.echoip-headless.default.svc.cluster.local")
    for ip in workloads["echoip_pods"]:
        assert f"8000 {ip.replace('.', '-')}.echoip-headless.default.svc.cluster.local" in \
            out, out


def test_a_missing_name_is_nxdomain(cluster: Cluster, workloads: dict) -> None:
    result = cluster.kubectl("exec", "client", "--", "nslookup",
                             "nosuch.default.svc.cluster.local", check=False)
    assert result.returncode != 0
    assert "NXDOMAIN" in result.stdout + result.stderr


def test_backend_sees_the_client_pods_own_address(cluster: Cluster, workloads: dict) -> None:
    # no SNAT pod → Service → pod
    assert peer_seen(cluster, "client") == workloads["ips"]["client"]


def test_a_pod_reaches_itself_through_its_own_service(cluster: Cluster,
                                                      workloads: dict) -> None:
    for name, ip in workloads["ips"].items():
        if not name.startswith("echoip-"):
            continue
        # 2 backends, random choice: 20 tries reach the pod itself (hairpin) with
        # certainty but for 2^-20
        answers = [peer_seen(cluster, name) for _ in range(20)]
        assert all(answers), answers
        # the other pod sees this one's address; this one sees itself through the masquerade
        assert ip in answers and len(set(answers)) == 2, (ip, answers)


def test_dns_policy_default_and_none(cluster: Cluster, workloads: dict) -> None:
    run_pod(cluster, "hostdns", [SLEEPER], dnsPolicy="Default")
    run_pod(cluster, "custom", [SLEEPER], dnsPolicy="None", dnsConfig={
        "nameservers": ["192.0.2.53"], "searches": ["example.test"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    for pod in ("hostdns", "custom"):
        cluster.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
    with open("/etc/resolv.conf") as f:
        host = parse_resolv_conf(f.read())  # comments and layout are not kept, the rest is
    assert parse_resolv_conf(in_pod(cluster, "hostdns", "cat", "/etc/resolv.conf")) == host
    assert in_pod(cluster, "custom", "cat", "/etc/resolv.conf") == (
        "nameserver 192.0.2.53\nsearch example.test\noptions ndots:2 edns0\n")
    cluster.kubectl("delete", "pod", "hostdns", "custom", "--wait=false")
    # dnsPolicy None is all the pod's: without a dnsConfig it is refused, naming the field
    bad = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nodns"},
        "spec": {"containers": [SLEEPER], "dnsPolicy": "None"}}))
    assert bad.returncode == 1
    assert "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is " \
        "None" in bad.stderr, bad.stderr


def test_a_pod_with_hostname_and_subdomain_has_its_own_name(cluster: Cluster,
                                                            workloads: dict) -> None:
    # what a StatefulSet's pods rely on: <hostname>.<headless service>.<ns>.svc.cluster.local
    cluster.kubectl("create", "service", "clusterip", "sts", "--clusterip=None",
                    "--tcp=80:80")
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sts-pod", "labels": {"app": "sts"}},
        "spec": {"hostname": "sts-0", "subdomain": "sts", "containers": [SLEEPER],
                 "terminationGracePeriodSeconds": 1}}))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/sts-pod", "--timeout=60s")
    ip = json.loads(cluster.kubectl("get", "pod", "sts-pod", "-o", "json").stdout
                    )["status"]["podIP"]

    def resolved() -> list[str]:
        out = in_pod(cluster, "client", "nslookup", "sts-0.sts.default.svc.cluster.local",
                     check=False)
        return re.findall(r"Name:\s+sts-0\.sts\S+\s+Address:\s+(\S+)", out)
    assert wait_for(resolved, timeout=20) == [ip]
    cluster.kubectl("delete", "pod", "sts-pod", "--wait=false")
    cluster.kubectl("delete", "service", "sts")
