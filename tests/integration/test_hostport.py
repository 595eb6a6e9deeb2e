"""hostPort and hostNetwork on the runc runtime, with real runc pods from the stand-in images.

hostPort: a sandbox publishing nginx's port 80 on a free port of 127.0.0.1 serves nginx's
page to the test, through the data dir's nftables table; stopping the sandbox withdraws
it (the port refuses, the table is gone) and `cleanup_all` removes the table. hostNetwork:
the container shares the host's interfaces and hostname, and a busybox httpd in it answers
on the host's loopback. Every test tears down with `cleanup_all()` (even on failure) and
checks that nothing of the data dir is left: netns, bridge, mount, cgroup, nft table.
Only loopback is used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pinnace.agent.network import HostPortMapping, HostPorts
from pinnace.agent.runtime import ContainerConfig, ContainerState, PodSandboxConfig
from pinnace.agent.runtime.interface import PortMapping
from pinnace.agent.runtime.runc import RuncRuntime
from tests.leftovers import random_pod_cidr
from tests.ports import free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("nft") is None
    or not Path("/usr/lib/cni/bridge").exists(),
    reason="needs root, runc, nft and the CNI plugins in /usr/lib/cni")


def nft_tables() -> list[str]:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                          check=True).stdout.split("\n")


def has_table(rt: RuncRuntime) -> bool:
    return f"table ip {rt.hostports.table}" in nft_tables()


def route_localnet(bridge: str) -> str:
    return Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def exists(path: str) -> bool:
    return Path(path).exists()


def delete_table(table: str) -> None:
    subprocess.run(["nft", "delete", "table", "ip", table], check=True)


def get(port: int, timeout: float = 2.0) -> str:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://127.0.0.1:{port}/", timeout=timeout) as r:
        return r.read().decode()


async def get_eventually(port: int, within: float = 15.0) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            return await asyncio.to_thread(get, port)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


async def run(rt: RuncRuntime, sandbox: PodSandboxConfig, image: str,
              command: list[str]) -> tuple[str, str]:
    sid = await rt.run_pod_sandbox(sandbox)
    cid = await rt.create_container(sid, ContainerConfig("main", image, command=command))
    await rt.start_container(cid)
    return sid, cid


async def test_host_port_serves_nginx_on_loopback_until_the_sandbox_stops(
        runtime: RuncRuntime, node_dir: Path) -> None:
    on_loopback, on_any = free_port(), free_port()
    sid, cid = await run(runtime, PodSandboxConfig(
        "uid-web", "web", "default", port_mappings=[
            PortMapping(80, on_loopback, "TCP", "127.0.0.1"),
            PortMapping(80, on_any)]), "nginx:1.19", [])
    page = await get_eventually(on_loopback)
    assert "nginx" in page
    assert "nginx" in await get_eventually(on_any)  # hostIP "": every address, 127.0.0.1 too
    assert has_table(runtime)
    bridge = runtime.network.bridge
    assert route_localnet(bridge) == "1"
    # from 127.0.0.1 the pod sees the bridge's address (masquerade), as replies need
    gateway = str(next(ipaddress.ip_network(runtime.network.pod_cidr).hosts()))
    assert gateway in runtime.log_path(cid).read_text()
    sb = read_json(node_dir / "runtime" / "sandboxes" / sid / "sandbox.json")
    assert sb["port_mappings"][0] == {"container_port": 80, "host_port": on_loopback,
                                      "protocol": "TCP", "host_ip": "127.0.0.1"}

    await runtime.stop_pod_sandbox(sid)
    assert refused(on_loopback) and refused(on_any)
    assert not has_table(runtime)
    assert route_localnet(bridge) == "0"
    await runtime.remove_pod_sandbox(sid)


async def test_mappings_outlive_the_runtime_object_and_cleanup_all_removes_the_table(
        runtime: RuncRuntime, node_dir: Path) -> None:
    port = free_port()
    await run(runtime, PodSandboxConfig("uid-kept", "kept", "default",
                                        port_mappings=[PortMapping(80, port)]),
              "nginx:1.19", [])
    assert "nginx" in await get_eventually(port)
    again = RuncRuntime(node_dir, pod_cidr=runtime.network.pod_cidr)
    assert [m.host_port for ms in again.hostports.mappings().values() for m in ms] == [port]
    # a table lost meanwhile comes back from the file
    delete_table(again.hostports.table)
    assert refused(port)
    await again.hostports.sync()
    assert "nginx" in await get_eventually(port)
    await again.cleanup_all()
    assert not has_table(runtime) and refused(port)
    assert again.hostports.mappings() == {}


async def test_a_second_sandbox_keeps_its_ports_when_the_first_stops(
        runtime: RuncRuntime) -> None:
    first, second = free_port(), free_port()
    sid1, _ = await run(runtime, PodSandboxConfig("uid-a", "a", "default",
                                                  port_mappings=[PortMapping(80, first)]),
                        "nginx:1.19", [])
    await run(runtime, PodSandboxConfig("uid-b", "b", "default",
                                        port_mappings=[PortMapping(80, second, "TCP")]),
              "nginx:1.19", [])
    assert "nginx" in await get_eventually(first)
    assert "nginx" in await get_eventually(second)
    await runtime.stop_pod_sandbox(sid1)
    assert refused(first)
    assert "nginx" in await get_eventually(second)
    assert has_table(runtime)


async def test_host_network_shares_the_hosts_interfaces_and_loopback(
        runtime: RuncRuntime) -> None:
    port = free_port()
    script = (f"mkdir -p /www && echo hello-from-host-network > /www/index.html && "
              f"cat /proc/net/dev && hostname && exec httpd -f -p 127.0.0.1:{port} -h /www")
    sid, cid = await run(runtime, PodSandboxConfig("uid-hostnet", "hostnet", "default",
                                                   host_network=True,
                                                   port_mappings=[PortMapping(port, port)]),
                         "busybox:1.28", ["sh", "-c", script])
    assert (await runtime.pod_sandbox_status(sid)).ip == ""
    assert "hello-from-host-network" in await get_eventually(port)
    out = runtime.log_path(cid).read_text()
    seen = {line.split(" F ", 1)[-1].split(":")[0].strip() for line in out.splitlines()
            if ":" in line.split(" F ", 1)[-1]}
    assert set(os.listdir("/sys/class/net")) <= seen
    assert socket.gethostname() in out
    # no CNI ran: no netns, no bridge, no table for this data dir
    assert not exists(runtime.network.netns_path(sid))
    assert not exists(f"/sys/class/net/{runtime.network.bridge}")
    assert not has_table(runtime)
    await runtime.stop_pod_sandbox(sid)
    assert (await runtime.container_status(cid)).state is ContainerState.EXITED
    assert refused(port)
    await runtime.remove_pod_sandbox(sid)


async def test_time_to_add_and_remove_a_mapping(node_dir: Path) -> None:
    """Publishing is one `nft -f` of the whole table: measure it with 1 and 100 sandboxes
    published (pod IPs need no pod here: the rules are all there is)."""
    cidr = random_pod_cidr()
    net = ipaddress.ip_network(cidr)
    ports = HostPorts(node_dir, bridge="pn-none", pod_cidr=cidr)
    try:
        timings = {}
        for n in (1, 100):
            for i in range(n - 1):
                await ports.add(f"s{i}", str(net[i + 2]), [HostPortMapping(80, 40000 + i)])
            t0 = time.perf_counter()
            await ports.add("last", str(net[200]), [HostPortMapping(80, 45000, "UDP")])
            added = time.perf_counter() - t0
            t0 = time.perf_counter()
            await ports.remove("last")
            timings[n] = (added, time.perf_counter() - t0)
            assert "last" not in ports.mappings()
        print("\nhostPort nft -f with N sandboxes published: " + ", ".join(
            f"N={n}: add {a * 1000:.1f} ms, remove {r * 1000:.1f} ms"
            for n, (a, r) in timings.items()))
        assert all(a < 1 and r < 1 for a, r in timings.values())
    finally:
        await ports.cleanup_all()
    assert f"table ip {ports.table}" not in nft_tables()
