"""The Service data path with a real runc pod: a NodePort Service in front of nginx, its
EndpointSlice written by the test (not by the EndpointSlice controller), the proxy on the
test's API server writing the data dir's `pinnace-svc-<hash>` table.

From the host: the ClusterIP and 127.0.0.1:nodePort serve nginx's page; with the slice's
endpoint removed both refuse at once; the table is removed after the test, and the runtime
fixture's leftover check runs. A burst of changes is written once, and a table lost meanwhile
comes back with the next change. Pods reach the Service, its own backend included
(hairpin). Traffic goes only to the test's pod network (the ClusterIP
is DNATed to the pod before it leaves the host; without an endpoint it is rejected in
the output hook) and to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.agent.network import dir_hash
from pinnace.agent.runtime import ContainerConfig, PodSandboxConfig
from pinnace.agent.runtime.runc import RuncRuntime
from pinnace.cluster import ComponentRunner
from pinnace.proxy import Proxier, ProxySettings, remove_table, table_name
from tests.integration.conftest import eventually

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("nft") is None
    or not Path("/usr/lib/cni/bridge").exists(),
    reason="needs root, runc, nft and the CNI plugins in /usr/lib/cni")


def nft_tables() -> list[str]:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def delete_table(table: str) -> None:
    subprocess.run(["nft", "delete", "table", "ip", table], check=True)


def bridge_nf_call_iptables() -> bool:
    path = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    return path.exists() and path.read_text().strip() == "1"


def route_localnet(bridge: str) -> str:
    return Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip()


def get(host: str, port: int, timeout: float = 2.0) -> str:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{host}:{port}/", timeout=timeout) as r:
        return r.read().decode()


async def get_eventually(host: str, port: int, within: float = 15.0) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            return await asyncio.to_thread(get, host, port)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def connect_error(host: str, port: int, timeout: float = 3.0) -> tuple[int, float]:
    """errno of a TCP connect (0: it connected; -1: timed out) and how long it took."""
    t0 = time.monotonic()
    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            err = s.connect_ex((host, port))
        except TimeoutError:
            err = -1
    if err == errno.EAGAIN:  # what connect_ex says when the timeout ran out
        err = -1
    return err, time.monotonic() - t0


@pytest.fixture
async def table(node_dir: Path, runtime: RuncRuntime) -> AsyncIterator[str]:
    """The data dir's service table, removed (and checked gone) after the test."""
    name = table_name(dir_hash(node_dir))
    try:
        yield name
    finally:
        await remove_table(name, bridge=runtime.network.bridge,
                           hostport_table=runtime.hostports.table)
        assert f"table ip {name}" not in nft_tables()


@pytest.fixture
def start_proxier(runtime: RuncRuntime, table: str, client: Any,
                  components: ComponentRunner) -> Callable[..., Awaitable[Proxier]]:
    """Starts the proxy on the test's table and pod network; keyword arguments go to its
    ProxySettings (node_name=…)."""
    async def start(**settings: Any) -> Proxier:
        proxier = Proxier(client, components.factory, ProxySettings(
            table=table, bridge=runtime.network.bridge, pod_cidr=runtime.network.pod_cidr,
            **settings))
        await components.start(proxier)
        return proxier
    return start


async def run_nginx(rt: RuncRuntime) -> str:
    sid = await rt.run_pod_sandbox(PodSandboxConfig("uid-svc-web", "web", "default"))
    cid = await rt.create_container(sid, ContainerConfig("main", "nginx:1.19"))
    await rt.start_container(cid)
    return (await rt.pod_sandbox_status(sid)).ip


async def run_busybox(rt: RuncRuntime, name: str, script: str) -> tuple[str, str]:
    """A busybox pod running `script`: (container id, pod IP)."""
    sid = await rt.run_pod_sandbox(PodSandboxConfig(f"uid-svc-{name}", name, "default"))
    cid = await rt.create_container(sid, ContainerConfig(
        "main", "busybox:1.28", command=["sh", "-c", script]))
    await rt.start_container(cid)
    return cid, (await rt.pod_sandbox_status(sid)).ip


def endpoint_slice(*pod_ips: str | None, svc: str = "web",
                   nodes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The slice of `svc` naming `pod_ips` (on `nodes`, in order, when given)."""
    endpoints = [{"addresses": [ip], "conditions": {"ready": True}} for ip in pod_ips if ip]
    for ep, node in zip(endpoints, nodes, strict=False):
        ep["nodeName"] = node
    return {"metadata": {"name": f"{svc}-test", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": endpoints}


async def serve_web(client: Any, *pod_ips: str | None, nodes: tuple[str, ...] = (),
                    **spec: Any) -> dict[str, Any]:
    """Service `web` (port 8080 to the pods' 80, more of its spec in `spec`) and its
    slice naming `pod_ips`: the created Service."""
    svc = await client.create(client.resource("v1", "Service"), {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {**spec, "ports": [{"name": "http", "port": 8080, "targetPort": 80}]}})
    await client.create(client.resource("discovery.k8s.io/v1", "EndpointSlice"),
                        endpoint_slice(*pod_ips, nodes=nodes))
    return svc


async def set_endpoints(client: Any, *pod_ips: str | None, svc: str = "web",
                        nodes: tuple[str, ...] = ()) -> None:
    """Rewrite the endpoints of `svc`'s slice (none when no `pod_ips`)."""
    es_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    current = await client.get(es_rt, f"{svc}-test", "default")
    current["endpoints"] = endpoint_slice(*pod_ips, svc=svc, nodes=nodes)["endpoints"]
    await client.update(es_rt, current)


async def test_cluster_ip_and_node_port_serve_the_pod_and_refuse_without_endpoints(
        runtime: RuncRuntime, table: str, client: Any,
        start_proxier: Callable[..., Awaitable[Proxier]]) -> None:
    pod_ip = await run_nginx(runtime)
    # a random ClusterIP, so a cluster running on this host never has the same one
    cluster_ip = f"10.{random.randint(100, 111)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
    svc = await serve_web(client, pod_ip, type="NodePort", clusterIP=cluster_ip,
                          selector={"app": "web"})
    node_port = svc["spec"]["ports"][0]["nodePort"]
    proxier = await start_proxier()

    assert "nginx" in await get_eventually(cluster_ip, 8080)
    assert "nginx" in await get_eventually("127.0.0.1", node_port)
    assert f"table ip {table}" in nft_tables()
    assert route_localnet(runtime.network.bridge) == "1"

    # the endpoint goes: both addresses refuse at once (a reset, not a timeout)
    syncs = proxier.syncs
    await set_endpoints(client)
    await eventually(lambda: proxier.syncs > syncs, within=2)
    for host, port in ((cluster_ip, 8080), ("127.0.0.1", node_port)):
        err, took = await asyncio.to_thread(connect_error, host, port)
        assert err == errno.ECONNREFUSED and took < 1, (host, port, err, took)

    # and it comes back with the endpoint
    await set_endpoints(client, pod_ip)
    assert "nginx" in await get_eventually("127.0.0.1", node_port, within=5)


async def test_a_burst_of_changes_is_one_write_and_services_without_endpoints_reject(
        runtime: RuncRuntime, table: str, client: Any,
        start_proxier: Callable[..., Awaitable[Proxier]]) -> None:
    proxier = await start_proxier()
    await eventually(lambda: proxier.syncs >= 1, within=5)
    before = proxier.syncs
    svc_rt = client.resource("v1", "Service")
    created = await asyncio.gather(*(client.create(svc_rt, {
        "metadata": {"name": f"burst-{i}", "namespace": "default"},
        "spec": {"ports": [{"port": 80 + i}]}}) for i in range(20)))

    def all_rejected() -> bool:
        text = listed(table)
        return all(f"{s['spec']['clusterIP']} . tcp . {s['spec']['ports'][0]['port']} : "
                   f"goto reject-chain" in text for s in created)
    await eventually(all_rejected, within=5)
    assert proxier.syncs - before < 10  # debounced: far fewer writes than changes
    # the table is the cluster's state, whatever happened to it meanwhile
    delete_table(table)
    await client.delete(svc_rt, "burst-0", "default")
    gone = f"{created[0]['spec']['clusterIP']} . tcp . 80 :"
    await eventually(lambda: f"table ip {table}" in nft_tables() and gone not in listed(table),
                     within=5)


async def test_pods_reach_a_service_and_a_pod_reaches_itself_through_its_own(
        runtime: RuncRuntime, table: str, client: Any,
        start_proxier: Callable[..., Awaitable[Proxier]]) -> None:
    server, server_ip = await run_busybox(runtime, "hairpin", "mkdir -p /www && echo "
                                          "hello-from-pod > /www/index.html && "
                                          "exec httpd -f -p 80 -h /www")
    other, _ = await run_busybox(runtime, "client", "exec sleep 3600")
    cluster_ip = (await serve_web(client, server_ip))["spec"]["clusterIP"]
    await start_proxier()
    assert "hello-from-pod" in await get_eventually(cluster_ip, 8080)
    # the server itself (hairpin: masqueraded, so the reply comes back through the host);
    # another pod only with br_netfilter, as in Kubernetes: without it the reply crosses the
    # bridge without meeting conntrack's reverse NAT
    clients = [server, other] if bridge_nf_call_iptables() else [server]
    for cid in clients:
        code, out, err = await runtime.exec_sync(
            cid, ["timeout", "5", "wget", "-qO-", f"http://{cluster_ip}:8080/"], 10)
        assert code == 0 and b"hello-from-pod" in out, (cid, code, out, err)


def listed(table: str) -> str:
    """The table as `nft list` prints it ("" before it exists)."""
    return subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                          text=True).stdout


def affinity_sets(table: str) -> dict[str, str]:
    """The table's affinity sets: name -> what `nft list` prints of it."""
    return {m.group(1): m.group(2) for m in
            re.finditer(r"set (affinity-\w+) \{(.*?)\n\t\}", listed(table), re.S)}


async def test_a_change_rewrites_only_its_service_and_clients_keep_their_endpoints(
        runtime: RuncRuntime, table: str, client: Any,
        start_proxier: Callable[..., Awaitable[Proxier]]) -> None:
    pod_ip = await run_nginx(runtime)
    svc_rt = client.resource("v1", "Service")
    svc = await serve_web(client, pod_ip, sessionAffinity="ClientIP")
    cluster_ip = svc["spec"]["clusterIP"]
    proxier = await start_proxier()
    assert "nginx" in await get_eventually(cluster_ip, 8080)
    (name, remembered), = affinity_sets(table).items()
    assert "elements = {" in remembered  # this host, as the client
    full_syncs = proxier.full_syncs

    # other Services come, and this one gets a second endpoint: an address of the pod
    # network nobody has (a connection sent there would time out)
    spare = str(ipaddress.ip_network(runtime.network.pod_cidr)[250])
    others = await asyncio.gather(*(client.create(svc_rt, {
        "metadata": {"name": f"other-{i}", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]}}) for i in range(5)))
    await set_endpoints(client, pod_ip, spare)
    await eventually(lambda: f"dnat to {spare}:80" in listed(table) and all(
        f"{o['spec']['clusterIP']} . tcp . 80 : goto reject-chain" in listed(table)
        for o in others), within=5)
    # written piece by piece: the client is still remembered, and still sent to its pod
    assert proxier.full_syncs == full_syncs
    assert "elements = {" in affinity_sets(table)[name]
    for _ in range(10):
        assert "nginx" in await asyncio.to_thread(get, cluster_ip, 8080)


async def test_load_balancer_addresses_and_external_ips_answer_like_the_cluster_ip(
        runtime: RuncRuntime, table: str, client: Any,
        start_proxier: Callable[..., Awaitable[Proxier]]) -> None:
    pod_ip = await run_nginx(runtime)
    svc_rt = client.resource("v1", "Service")
    es_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
    # loopback addresses (all local on Linux), random so that no running cluster has them
    prefix = f"127.{random.randint(240, 247)}.{random.randint(0, 255)}"
    lb_a, lb_b, external = f"{prefix}.1", f"{prefix}.2", f"{prefix}.3"
    port = {"name": "http", "port": 80, "targetPort": 80}
    a = await client.create(svc_rt, {
        "metadata": {"name": "lb-a", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False,
                 "ports": [port]}})
    b = await client.create(svc_rt, {
        "metadata": {"name": "lb-b", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "externalIPs": [external], "ports": [port]}})
    for svc, ip in ((a, lb_a), (b, lb_b)):
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
        await client.update_status(svc_rt, svc)
        await client.create(es_rt, endpoint_slice(pod_ip, svc=svc["metadata"]["name"]))
    await start_proxier()

    # two LoadBalancers on port 80, and an external IP, all answer from the host
    for host in (lb_a, lb_b, external):
        assert "nginx" in await get_eventually(host, 80), host
    # a port the Service lacks is refused at once on its ClusterIP, not left to time out
    err, took = await asyncio.to_thread(connect_error, a["spec"]["clusterIP"], 81)
    assert err == errno.ECONNREFUSED and took < 1, (err, took)
    # without endpoints, lb-b's addresses refuse at once; lb-a's still answers
    await set_endpoints(client, svc="lb-b")
    await eventually(lambda: f"{lb_b} . tcp . 80 : goto reject-chain" in listed(table),
                     within=5)
    for host in (lb_b, external):
        err, took = await asyncio.to_thread(connect_error, host, 80)
        assert err == errno.ECONNREFUSED and took < 1, (host, err, took)
    assert "nginx" in await asyncio.to_thread(get, lb_a, 80)


@contextlib.contextmanager
def outside_client() -> Iterator[tuple[str, str]]:
    """A network namespace standing for a machine outside the cluster, linked to the host by
    a veth pair: (its name, the host's address it reaches); deleted afterwards."""
    tag = f"{random.randint(0, 0xffffff):06x}"
    ns, host_if = f"pnxout-{tag}", f"pnxo{tag}"
    net = f"100.{random.randint(64, 127)}.{random.randint(0, 255)}.{random.randrange(0, 256, 4)}"
    base = ipaddress.ip_address(net)
    host_ip, client_ip = str(base + 1), str(base + 2)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)
    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{client_ip}/30", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "default", "via", host_ip)
        yield ns, host_ip
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)  # the veth pair goes with it


def get_from(ns: str, url: str) -> str:
    """GET `url` from inside `ns`: the body, or the error's name (a drop: "timeout")."""
    script = ("import sys, urllib.request\n"
              "try:\n"
              "    print(urllib.request.urlopen(sys.argv[1], timeout=1.5).read().decode())\n"
              "except Exception as e:\n"
              "    print('timeout' if 'timed out' in str(e) else repr(e))\n")
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script, url],
                          capture_output=True, text=True, timeout=30).stdout.strip()


async def test_external_traffic_policy_local_keeps_the_client_address_on_local_endpoints(
        runtime: RuncRuntime, table: str, client: Any,
        start_proxier: Callable[..., Awaitable[Proxier]]) -> None:
    # a server that answers with the client address it sees
    _, pod_ip = await run_busybox(
        runtime, "whoami", "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho "
        "Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && "
        "chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www")
    # the pod on this node, and an endpoint on another node (an address nobody has: a
    # connection sent there would time out)
    spare = str(ipaddress.ip_network(runtime.network.pod_cidr)[250])
    svc = await serve_web(client, pod_ip, spare, nodes=("node-a", "node-b"), type="NodePort",
                          externalTrafficPolicy="Local")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    await start_proxier(node_name="node-a")
    await eventually(lambda: f"tcp . {node_port} : goto ext-" in listed(table), within=5)

    with outside_client() as (ns, host_ip):
        url = f"http://{host_ip}:{node_port}/cgi-bin/ip"
        client_ip = str(ipaddress.ip_address(host_ip) + 1)
        # (busybox's httpd prints an IPv4 client as [::ffff:a.b.c.d])
        seen = {(await asyncio.to_thread(get_from, ns, url)).removeprefix("[::ffff:")
                .removesuffix("]") for _ in range(8)}
        assert seen == {client_ip}, seen  # only the local pod, and it sees the client
        # no endpoint on this node: the NodePort drops (no reset: another node may serve)
        await set_endpoints(client, pod_ip, spare, nodes=("node-b", "node-b"))
        await eventually(lambda: f"tcp . {node_port} : drop" in listed(table), within=5)
        assert await asyncio.to_thread(get_from, ns, url) == "timeout"


async def test_internal_traffic_policy_local_sends_cluster_ip_traffic_to_local_endpoints(
        runtime: RuncRuntime, table: str, client: Any,
        start_proxier: Callable[..., Awaitable[Proxier]]) -> None:
    pod_ip = await run_nginx(runtime)
    # the pod on this node, and an endpoint on another (an address nobody has)
    spare = str(ipaddress.ip_network(runtime.network.pod_cidr)[250])
    svc = await serve_web(client, pod_ip, spare, nodes=("node-a", "node-b"),
                          internalTrafficPolicy="Local")
    cluster_ip = svc["spec"]["clusterIP"]
    await start_proxier(node_name="node-a")
    assert "nginx" in await get_eventually(cluster_ip, 8080)
    for _ in range(8):  # never the other node's endpoint
        assert "nginx" in await asyncio.to_thread(get, cluster_ip, 8080)
    # none on this node: dropped (not refused: the Service has endpoints, elsewhere)
    await set_endpoints(client, pod_ip, spare, nodes=("node-b", "node-b"))
    await eventually(lambda: f"{cluster_ip} . tcp . 8080 : drop" in listed(table), within=5)
    err, _ = await asyncio.to_thread(connect_error, cluster_ip, 8080, 1.5)
    assert err == -1  # timed out
