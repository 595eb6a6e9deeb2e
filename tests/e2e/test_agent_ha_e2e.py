"""An agent outlives the API server it talks to (issue 13, done-when 4: "agents
reconnect"): a 3-member etcd on loopback, two `pinnace server --store etcd` on 127.0.0.1
and 127.0.0.2 (the second with a copy of the first's pki/), and one `pinnace agent
--server URL,URL` (or `--server URL` of the first only: it learns the other from the
`kubernetes` Endpoints) running real runc pods. The agent runs in the host's network
namespace with a data dir of its own, node IP 127.0.0.3 and a random pod CIDR, so it
reaches both servers on loopback; `pinnace down` of its data dir must leave nothing.

Killing (SIGKILL, by PID) the server the agent holds connections to leaves the node
Ready, its Lease renewed through the other server (whose node lifecycle controller, now
the leader, would mark it NotReady after 6 s without one), a new pod is scheduled to it
and starts, and its logs come through the survivor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.api.timestamps import to_epoch
from tests.e2e.cluster import Cluster, free_port
from tests.e2e.real_node import run_pod
from tests.e2e.test_etcd_ha_e2e import Servers, wait
from tests.etcd_cluster import EtcdCluster
from tests.leftovers import leftovers, random_pod_cidr

pytestmark = pytest.mark.e2e

NODE = "ha-agent"
NODE_IP = "127.0.0.3"
GRACE = 6.0  # --node-monitor-grace-period of both servers; the agent renews every 1 s


class AgentProcess:
    """`pinnace agent` in the host netns, started and stopped by its PID."""

    def __init__(self, data_dir: Path, servers: list[str], token_file: Path) -> None:
        self.data_dir = data_dir
        self.log = data_dir.parent / "agent.log"
        self.command = [sys.executable, "-m", "pinnace.cli", "agent", "--server",
                        ",".join(servers), "--token-file", str(token_file),
                        "--node-name", NODE, "--node-ip", NODE_IP,
                        "--kubelet-port", str(free_port()), "--pod-cidr", random_pod_cidr(),
                        "--lease-period", "1", "--restart-backoff", "1",
                        "--data-dir", str(data_dir), "-v"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def servers_connected(self) -> set[str]:
        """host:port of the API servers this agent holds TCP connections to (ss -p)."""
        assert self.proc is not None
        out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True,
                             text=True).stdout
        return {line.split()[3] for line in out.splitlines()
                if f"pid={self.proc.pid}," in line}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


# "first" only: learning the second server from the Endpoints and failing over to it is
# the harder path; an explicit `--server` list fails over through the same transport
# (tests/integration/test_leader_election.py, test_informer.py cover that) — one case
# keeps the suite's time down
@pytest.fixture(params=["first"])
def ha_agent(request: pytest.FixtureRequest, tmp_path: Path, local_registry: Any
             ) -> Iterator[tuple[Servers, AgentProcess]]:
    """`--server` lists both servers, or the first only (the agent learns the second
    from the `kubernetes` Endpoints)."""
    with EtcdCluster(tmp_path / "etcd", members=3) as etcd:
        servers = Servers(tmp_path, etcd)
        for s in servers.servers:
            s.extra += ("--node-monitor-grace-period", str(GRACE))
        agent_dir = tmp_path / "agent" / "data"
        agent_dir.mkdir(parents=True)
        local_registry.write_registries_yaml(agent_dir)
        port = servers.servers[0].port
        urls = [f"https://127.0.0.1:{port}", f"https://127.0.0.2:{port}"]
        agent = AgentProcess(agent_dir, urls if request.param == "both" else urls[:1],
                             servers.servers[0].data_dir / "node-token")
        try:
            servers.start(0)
            servers.start(1)
            agent.start()
            yield servers, agent
        finally:
            agent.stop()
            for s in servers.servers:
                s.kill()
            down = subprocess.run([sys.executable, "-m", "pinnace.cli", "down", "--data-dir",
                                   str(agent_dir)], capture_output=True, text=True, timeout=120)
            assert down.returncode == 0, down.stderr
            assert leftovers(agent_dir) == []


def node_ready(server: Cluster) -> bool:
    out = server.kubectl("get", "node", NODE, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conditions = json.loads(out.stdout).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def pod_running_on_node(server: Cluster, name: str) -> bool:
    out = server.kubectl("get", "pod", name, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    pod = json.loads(out.stdout)
    return pod["spec"].get("nodeName") == NODE and pod["status"].get("phase") == "Running"


def lease_renewed(server: Cluster) -> float:
    out = server.kubectl("get", "lease", "-n", "kube-node-lease", NODE, "-o",
                         "jsonpath={.spec.renewTime}")
    return to_epoch(out.stdout) or 0.0


def test_the_agent_moves_to_the_other_server(ha_agent: tuple[Servers, AgentProcess]
                                             ) -> None:
    servers, agent = ha_agent
    a = servers.servers[0]
    wait(lambda: node_ready(a), 120, f"node {NODE} Ready")
    containers = [{"name": "c", "image": "busybox:1.28",
                   "command": ["sh", "-c", "echo hello from $POD; sleep 3600"],
                   "env": [{"name": "POD", "valueFrom": {"fieldRef": {
                       "fieldPath": "metadata.name"}}}]}]
    run_pod(a, "before", containers)
    wait(lambda: pod_running_on_node(a, "before"), 90, "pod before Running on the agent")

    port = a.port
    # the servers the agent knows: those of --server, and those the Endpoints list
    wait(lambda: f"API server https://127.0.0.2:{port} (from the kubernetes Endpoints)"
         in agent.log.read_text() or "127.0.0.2" in " ".join(agent.command), 30,
         "the agent knows the second server")
    # the server the agent talks to: the one it holds connections to (the first it
    # joined, by its --server list)
    talking = agent.servers_connected() & {f"127.0.0.1:{port}", f"127.0.0.2:{port}"}
    assert len(talking) == 1, f"the agent talks to {talking}"
    victim = 0 if talking == {f"127.0.0.1:{port}"} else 1
    survivor = servers.servers[1 - victim]
    servers.servers[victim].kill()
    killed_at = time.time()

    # the node stays Ready well past the grace period: its Lease is renewed through the
    # survivor, whose controllers (leader after 4 s) would otherwise mark it NotReady
    wait(lambda: lease_renewed(survivor) > killed_at + 1, 20,
         "the node's Lease renewed after the kill")
    watch_until = time.monotonic() + 1.5 * GRACE
    while time.monotonic() < watch_until:
        assert node_ready(survivor), "the node went NotReady"
        time.sleep(0.5)
    wait(lambda: servers.leader("kube-scheduler") == 1 - victim, 30,
         "the survivor leads the scheduler")
    assert servers.leader("kube-controller-manager") == 1 - victim
    assert lease_renewed(survivor) > time.time() - GRACE
    assert agent.servers_connected() & {f"127.0.0.{2 - victim}:{port}"}, \
        "the agent holds connections to the survivor"

    # a new pod is scheduled to the node and starts; its logs come through the survivor
    run_pod(survivor, "after", containers)
    wait(lambda: pod_running_on_node(survivor, "after"), 90, "pod after Running")
    wait(lambda: "hello from after" in survivor.kubectl("logs", "after", check=False).stdout,
         30, "the new pod's logs")
    # the agent's watches follow the survivor: a deletion through it stops the old pod
    survivor.kubectl("delete", "pod", "before", "--wait=false")
    wait(lambda: survivor.kubectl("get", "pod", "before", check=False).returncode != 0, 60,
         "pod before deleted by its node")
    assert agent.proc is not None and agent.proc.poll() is None
