"""Two `pinnace server --store etcd` on a 3-member etcd cluster on loopback (issue 13,
done-when 4): either server keeps the cluster usable when the other is killed, the
controllers move to the survivor within the lease time and never act twice, the
`kubernetes` Endpoints list the live servers, and killing an etcd member loses no
acknowledged write.

The servers listen on 127.0.0.1 and 127.0.0.2 with one port, as API servers of one
cluster do on their machines; the second gets the first's pki/ (CA, tokens, encryption
key), as every kube-apiserver of a cluster shares them.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pinnace.api.timestamps import to_epoch
from tests.e2e.cluster import Cluster
from tests.etcd_cluster import _DIRECT, EtcdCluster
from tests.ports import free_port

pytestmark = pytest.mark.e2e

# short leader election: a dead leader's Lease expires after 4 s
LEADER_FLAGS = ("--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3",
                "--leader-elect-retry-period", "0.5")


def wait(cond: Callable[[], object], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.2)


class Servers:
    def __init__(self, root: Path, etcd: EtcdCluster) -> None:
        port = free_port()
        self.servers = []
        for i, host in enumerate(("127.0.0.1", "127.0.0.2")):
            # a parent each: the log is named for the port, which the two share
            s = Cluster(data_dir=root / f"s{i}" / "data", home=root / f"s{i}" / "home",
                        port=port)
            s.home.mkdir(parents=True)
            s.extra = ("--host", host, "--store", "etcd", "--etcd-endpoints",
                       ",".join(etcd.endpoints), *LEADER_FLAGS, "-v")
            self.servers.append(s)

    def start(self, i: int) -> None:
        s = self.servers[i]
        if i == 1 and not (s.data_dir / "pki").exists():
            shutil.copytree(self.servers[0].data_dir / "pki", s.data_dir / "pki")
        s.restart(timeout=60)

    def leader(self, lease: str) -> int:
        """Which server's process holds `lease` now (its log names the holder)."""
        holder = json.loads(self.survivor().kubectl(
            "get", "lease", "-n", "kube-system", lease, "-o", "json").stdout)["spec"].get(
            "holderIdentity", "")
        for i, s in enumerate(self.servers):
            assert s.log_path is not None
            if holder and f"{lease}: {holder} became the leader" in s.log_path.read_text():
                return i
        return -1

    def survivor(self) -> Cluster:
        return next(s for s in self.servers if s.proc is not None and s.proc.poll() is None)


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[tuple[EtcdCluster, Servers]]:
    with EtcdCluster(tmp_path / "etcd", members=3) as etcd:
        servers = Servers(tmp_path, etcd)
        try:
            servers.start(0)
            servers.start(1)
            yield etcd, servers
        finally:
            for s in servers.servers:
                s.kill()


def pods(server: Cluster, app: str) -> list[str]:
    out = server.kubectl("get", "pods", "-l", f"app={app}", "-o", "name").stdout
    return out.split()


def endpoint_ips(server: Cluster) -> list[str]:
    ep = json.loads(server.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    return sorted(a["ip"] for sub in ep.get("subsets") or [] for a in sub["addresses"])


def test_either_server_dies_and_the_other_takes_over(ha: tuple[EtcdCluster, Servers]
                                                     ) -> None:
    _, servers = ha
    a, b = servers.servers
    wait(lambda: endpoint_ips(a) == ["127.0.0.1", "127.0.0.2"], 30,
         "the kubernetes Endpoints list both servers")
    wait(lambda: servers.leader("kube-controller-manager") == 0, 20, "server 0 leads")
    assert servers.leader("kube-scheduler") == 0

    # written through one server, seen through the other; the controllers act once
    b.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=5")
    wait(lambda: len(pods(a, "web")) == 5, 30, "5 pods")

    for victim, heir in ((0, 1), (1, 0)):
        killed_at = time.time()
        servers.servers[victim].kill()
        survivor = servers.servers[heir]
        assert survivor.kubectl("get", "namespaces").returncode == 0  # usable at once
        wait(lambda heir=heir: servers.leader("kube-controller-manager") == heir, 20,
             "the survivor leads the controllers")
        # taken over once the 4 s Lease ran out (retry period 0.5 s with jitter; allow
        # for a busy machine), as the survivor's acquireTime says
        acquired = to_epoch(json.loads(survivor.kubectl(
            "get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "json"
        ).stdout)["spec"]["acquireTime"])
        assert acquired is not None and 3.0 < acquired - killed_at < 12
        wait(lambda heir=heir: servers.leader("kube-scheduler") == heir, 20,
             "the survivor leads the scheduler")
        replicas = 7 if victim == 0 else 3
        survivor.kubectl("scale", "deployment", "web", f"--replicas={replicas}")
        wait(lambda r=replicas, s=survivor: len(pods(s, "web")) == r, 30, f"{replicas} pods")
        for _ in range(10):  # and no second controller-manager adds more
            assert len(pods(survivor, "web")) == replicas
            time.sleep(0.3)
        rs = survivor.kubectl("get", "rs", "-l", "app=web", "-o", "name").stdout.split()
        assert len(rs) == 1
        mine = "127.0.0.2" if heir == 1 else "127.0.0.1"
        # the dead server's Lease expires (15 s) and the next round drops it
        wait(lambda s=survivor, ip=mine: endpoint_ips(s) == [ip], 45,
             "the kubernetes Endpoints drop the dead server")
        servers.start(victim)
        wait(lambda s=survivor: endpoint_ips(s) == ["127.0.0.1", "127.0.0.2"], 30,
             "the restarted server is listed again")

    # a server stopped gracefully takes itself off the endpoints at once (well before
    # its Lease would expire) and hands its Leases over
    b.stop()
    wait(lambda: endpoint_ips(a) == ["127.0.0.1"], 8, "the stopped server is dropped")
    wait(lambda: servers.leader("kube-controller-manager") == 0, 8, "server 0 leads")


def test_killing_an_etcd_member_loses_no_acknowledged_write(
        ha: tuple[EtcdCluster, Servers]) -> None:
    etcd, servers = ha
    a, b = servers.servers
    acked: dict[str, str] = {}
    failed = 0
    for i in range(120):
        if i == 40:
            etcd.stop_member(0, signal.SIGKILL)  # the member both servers talk to first
        name = f"cm-{i}"
        r = a.kubectl("create", "configmap", name, f"--from-literal=i={i}", check=False)
        if r.returncode == 0:
            acked[name] = str(i)
        else:
            failed += 1
    print(f"{failed} of 120 writes failed while the member was going")
    assert len(acked) >= 100, f"{failed} writes failed"
    # read through the other server (whose etcd client failed over too)
    out = json.loads(b.kubectl("get", "configmaps", "-o", "json").stdout)
    stored = {cm["metadata"]["name"]: cm["data"]["i"] for cm in out["items"]
              if re.fullmatch(r"cm-\d+", cm["metadata"]["name"])}
    assert {k: stored.get(k) for k in acked} == acked
    # and the member comes back and catches up
    etcd.start_member(0)
    etcd.wait_healthy()
    prefix = b"/registry/core/configmaps/default/"
    body = json.dumps({"key": base64.b64encode(prefix).decode(), "count_only": True,
                       "range_end": base64.b64encode(prefix[:-1] + b"0").decode()}).encode()
    with _DIRECT.open(urllib.request.Request(f"{etcd.endpoints[0]}/v3/kv/range", body),
                      timeout=30) as r:
        assert int(json.loads(r.read()).get("count", 0)) >= len(acked)


def test_server_on_etcd_with_client_certificates(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path / "etcd", tls=True) as etcd:
        tls = etcd.tls_dir
        server = Cluster(data_dir=tmp_path / "data", home=tmp_path / "home")
        server.home.mkdir()
        try:
            server.start(timeout=60, extra=(
                "--store", "etcd", "--etcd-endpoints", ",".join(etcd.endpoints),
                "--etcd-cafile", str(tls / "ca.crt"), "--etcd-certfile", str(tls / "client.crt"),
                "--etcd-keyfile", str(tls / "client.key")))
            server.kubectl("create", "configmap", "over-tls", "--from-literal=a=b")
            assert server.kubectl("get", "configmap", "over-tls", "-o",
                                  "jsonpath={.data.a}").stdout == "b"
        finally:
            server.kill()
        # without the client certificate the members refuse it, and the server says so
        bad = subprocess.run([sys.executable, "-m", "pinnace.cli", "server", "--data-dir",
                              str(tmp_path / "data2"), "--port", str(free_port()),
                              "--store", "etcd", "--etcd-endpoints", etcd.endpoints[0],
                              "--etcd-cafile", str(tls / "ca.crt")],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and "pinnace: store: etcd unavailable" in bad.stderr
