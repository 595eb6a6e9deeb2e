"""Issue 3, Done-when 1: DaemonSets on simulated nodes, driven through kubectl.

The seed DaemonSet (`09-nginx-daemonset.yaml`) runs one pod per node; nodes
coming and going, and a nodeSelector, change the set; deleting it removes its pods.
Each test applies the seed in its own namespace on one shared 3-node cluster.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.workloads import (
    apply,
    fake_node_manifest,
    is_ready,
    items,
    live,
    new_namespace,
    start_fake_cluster,
    wait_for,
)
from tests.paths import MANIFESTS

pytestmark = pytest.mark.e2e

SEED = MANIFESTS / "09-nginx-daemonset.yaml"
FAKE_NODES = {"fake-0", "fake-1", "fake-2"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_fake_cluster(tmp_path_factory) as c:
        yield c


def pods_per_node(c: Cluster, ns: str) -> Counter[str]:
    return Counter(p["spec"].get("nodeName") for p in live(items(c, "pods", "-n", ns,
                                                                 "-l", "app=nginx")))


def wait_pods_on(c: Cluster, ns: str, nodes: set[str]) -> None:
    """Wait until exactly one live, Ready DaemonSet pod runs on each of `nodes`, none elsewhere."""
    def done() -> bool:
        pods = live(items(c, "pods", "-n", ns, "-l", "app=nginx"))
        per_node = Counter(p["spec"].get("nodeName") for p in pods)
        return per_node == Counter(nodes) and all(is_ready(p) for p in pods)
    wait_for(done, timeout=20, what=f"one ready pod on each of {sorted(nodes)} in {ns}")


def test_seed_daemonset_runs_one_pod_per_node(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "ds-seed")
    apply(cluster, SEED, "-n", ns)
    wait_pods_on(cluster, ns, FAKE_NODES)
    wait_for(lambda: json.loads(cluster.kubectl(
        "get", "ds", "nginx", "-n", ns, "-o", "json").stdout)["status"].get("numberReady") == 3,
        what="ds status numberReady 3")
    ds = json.loads(cluster.kubectl("get", "ds", "nginx", "-n", ns, "-o", "json").stdout)
    assert ds["status"]["desiredNumberScheduled"] == 3
    assert ds["status"]["currentNumberScheduled"] == 3
    # Every pod is owned by the DaemonSet (controller ref).
    for pod in items(cluster, "pods", "-n", ns, "-l", "app=nginx"):
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("DaemonSet", "nginx", True)


def test_new_node_gets_a_pod_and_deleted_node_loses_it(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "ds-nodes")
    apply(cluster, SEED, "-n", ns)
    wait_pods_on(cluster, ns, FAKE_NODES)
    apply(cluster, fake_node_manifest("fake-3"))
    try:
        wait_pods_on(cluster, ns, FAKE_NODES | {"fake-3"})
    finally:
        cluster.kubectl("delete", "node", "fake-3")
    wait_pods_on(cluster, ns, FAKE_NODES)
    assert "fake-3" not in pods_per_node(cluster, ns)


def test_node_selector_limits_the_set(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "ds-sel")
    label = f"{ns}-run"
    apply(cluster, SEED, "-n", ns)
    wait_pods_on(cluster, ns, FAKE_NODES)
    cluster.kubectl("label", "node", "fake-0", "fake-2", f"{label}=yes")
    try:
        patch = {"spec": {"template": {"spec": {"nodeSelector": {label: "yes"}}}}}
        cluster.kubectl("patch", "ds", "nginx", "-n", ns, "-p", json.dumps(patch))
        wait_pods_on(cluster, ns, {"fake-0", "fake-2"})
        # A node that stops matching loses its pod; one that starts matching gains one.
        cluster.kubectl("label", "node", "fake-2", f"{label}-")
        cluster.kubectl("label", "node", "fake-1", f"{label}=yes")
        wait_pods_on(cluster, ns, {"fake-0", "fake-1"})
        for pod in live(items(cluster, "pods", "-n", ns, "-l", "app=nginx")):
            assert pod["spec"]["nodeSelector"] == {label: "yes"}
    finally:
        cluster.kubectl("label", "node", "fake-0", "fake-1", "fake-2", f"{label}-",
                        check=False)


def test_delete_daemonset_removes_its_pods(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "ds-del")
    apply(cluster, SEED, "-n", ns)
    wait_pods_on(cluster, ns, FAKE_NODES)
    cluster.kubectl("delete", "ds", "nginx", "-n", ns)
    wait_for(lambda: not items(cluster, "pods", "-n", ns), timeout=20,
             what="the DaemonSet's pods to be deleted")
    assert cluster.kubectl("get", "ds", "-n", ns).stderr.startswith("No resources found")
