"""Issue 3, Done-when 5: a node that stops heartbeating goes NotReady and is drained.

Stopping `fake-1`'s heartbeat
(annotation `pinnace.io/fake-heartbeat: stopped`) must make it NotReady (Ready
condition Unknown) with the `node.kubernetes.io/unreachable` NoSchedule and
NoExecute taints; pods tolerating unreachable for 2 s are evicted after those
2 s, a pod with the default 300 s toleration and the DaemonSet's pod stay, and
the Deployment's replacement pods go elsewhere.

The grace period is 3 s (`--node-monitor-grace-period 3`); simulated nodes then renew
their Lease every 0.75 s, four times per grace period as a kubelet does (10 s of 40 s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.workloads import (
    apply,
    get_json,
    is_ready,
    is_terminating,
    items,
    live,
    new_namespace,
    start_fake_cluster,
    wait_for,
)
from tests.paths import MANIFESTS

pytestmark = pytest.mark.e2e

UNREACHABLE = "node.kubernetes.io/unreachable"
GRACE = "3"
SHORT = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
          "tolerationSeconds": 2}]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_fake_cluster(tmp_path_factory, "--node-monitor-grace-period", GRACE) as c:
        yield c


def pod_manifest(name: str, **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "nginx:1.19"}], **spec}})


def deployment_manifest(replicas: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"tolerations": SHORT, "containers": [
                                  {"name": "c", "image": "nginx:1.19"}]}}}})


def node_status_column(c: Cluster, node: str) -> str:
    return c.kubectl("get", "nodes", node, "--no-headers").stdout.split()[1]


def gone_or_terminating(c: Cluster, ns: str, name: str) -> bool:
    result = c.kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return result.returncode != 0 or is_terminating(json.loads(result.stdout))


def test_unreachable_node_is_tainted_and_drained(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "nodelc")
    apply(cluster, MANIFESTS / "09-nginx-daemonset.yaml", "-n", ns)
    on_fake1 = {"nodeSelector": {"kubernetes.io/hostname": "fake-1"}}
    apply(cluster, pod_manifest("short", tolerations=SHORT, **on_fake1), "-n", ns)
    apply(cluster, pod_manifest("default", **on_fake1), "-n", ns)
    apply(cluster, deployment_manifest(6), "-n", ns)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")
    wait_for(lambda: len([p for p in live(items(cluster, "pods", "-n", ns)) if is_ready(p)])
             == 3 + 2 + 6, what="all pods running")
    pods = items(cluster, "pods", "-n", ns)
    daemon_pod = next(p["metadata"]["name"] for p in pods
                      if p["spec"]["nodeName"] == "fake-1"
                      and (p["metadata"].get("labels") or {}).get("app") == "nginx")
    web_on_fake1 = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == "fake-1"
                    and (p["metadata"].get("labels") or {}).get("app") == "web"}
    # The admission default: 300 s for unreachable when the pod does not say.
    default_tol = get_json(cluster, "pod", "default", "-n", ns)["spec"]["tolerations"]
    assert {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300} in default_tol

    cluster.kubectl("annotate", "node", "fake-1", "pinnace.io/fake-heartbeat=stopped")
    try:
        wait_for(lambda: node_status_column(cluster, "fake-1") == "NotReady", timeout=30,
                 what="fake-1 NotReady")
        tainted = time.monotonic()
        node = get_json(cluster, "node", "fake-1")
        ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
        assert ready["status"] == "Unknown", ready
        taints = wait_for(lambda: {(t["key"], t["effect"]) for t in
                                   get_json(cluster, "node", "fake-1")["spec"].get("taints", [])
                                   } >= {(UNREACHABLE, "NoExecute")} and True,
                          what="unreachable NoExecute taint")
        assert taints
        assert {t["effect"] for t in get_json(cluster, "node", "fake-1")["spec"]["taints"]
                if t["key"] == UNREACHABLE} == {"NoSchedule", "NoExecute"}
        # The other nodes keep heartbeating.
        assert node_status_column(cluster, "fake-0") == "Ready"

        wait_for(lambda: gone_or_terminating(cluster, ns, "short"), timeout=15,
                 what="the 2 s-tolerating pod to be evicted")
        assert time.monotonic() - tainted >= 1.0, "evicted before its tolerationSeconds"
        for name in web_on_fake1:
            wait_for(lambda name=name: gone_or_terminating(cluster, ns, name), timeout=10,
                     what=f"deployment pod {name} to be evicted")
        # The Deployment replaces its evicted pods on reachable nodes.
        wait_for(lambda: len(r := [p for p in live(items(cluster, "pods", "-n", ns,
                                                         "-l", "app=web")) if is_ready(p)])
                 == 6 and all(p["spec"]["nodeName"] != "fake-1" for p in r),
                 what="6 web pods away from fake-1")
        time.sleep(1)
        # The DaemonSet pod tolerates unreachable forever; `default` has 300 s.
        for name in (daemon_pod, "default"):
            pod = get_json(cluster, "pod", name, "-n", ns)
            assert not is_terminating(pod), name
    finally:
        cluster.kubectl("annotate", "node", "fake-1", "pinnace.io/fake-heartbeat-")
    # Heartbeats again: Ready, and the taints are lifted.
    wait_for(lambda: node_status_column(cluster, "fake-1") == "Ready", timeout=15,
             what="fake-1 Ready again")
    wait_for(lambda: not [t for t in get_json(cluster, "node", "fake-1")["spec"].get("taints", [])
                          if t["key"] == UNREACHABLE], what="unreachable taints removed")


def test_heartbeating_nodes_stay_ready_with_a_short_grace_period(cluster: Cluster) -> None:
    deadline = time.monotonic() + 12  # longer than one 10 s lease period
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "nodes", "--no-headers").stdout
        statuses = {line.split()[0]: line.split()[1] for line in out.splitlines()}
        assert statuses == {"fake-0": "Ready", "fake-1": "Ready", "fake-2": "Ready"}, statuses
        time.sleep(0.5)
