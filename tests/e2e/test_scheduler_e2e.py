"""Issue 3, Done-when 4: the scheduler on 3 simulated nodes (32 CPU each), through kubectl.

Unschedulable pods stay Pending with a `FailedScheduling` event worded like
kube-scheduler's; nodeSelector, required node affinity and taints/tolerations
decide where pods land. Node labels and taints are undone by each test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.workloads import apply, get_json, items, new_namespace, start_fake_cluster, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_fake_cluster(tmp_path_factory) as c:
        yield c


def pod_manifest(name: str, **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "nginx:1.19"}], **spec}})


def node_of(c: Cluster, ns: str, name: str) -> str:
    return wait_for(lambda: get_json(c, "pod", name, "-n", ns)["spec"].get("nodeName"),
                    what=f"pod {name} to be bound")


def failed_scheduling(c: Cluster, ns: str, name: str) -> list[str]:
    events = items(c, "events", "-n", ns, "--field-selector",
                   f"reason=FailedScheduling,involvedObject.name={name}")
    return [e["message"] for e in events]


def test_pod_too_big_for_any_node_stays_pending(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "sched-big")
    apply(cluster, json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.19",
                                 "resources": {"requests": {"cpu": "64"}}}]}}), "-n", ns)
    messages = wait_for(lambda: failed_scheduling(cluster, ns, "big"),
                        what="a FailedScheduling event")
    assert messages[0].startswith("0/3 nodes are available: 3 Insufficient cpu."), messages
    # The same through the user's usual commands.
    out = cluster.kubectl("get", "events", "-n", ns,
                          "--field-selector", "reason=FailedScheduling").stdout
    assert "0/3 nodes are available: 3 Insufficient cpu." in out
    describe = cluster.kubectl("describe", "pod", "big", "-n", ns).stdout
    assert "FailedScheduling" in describe and "3 Insufficient cpu." in describe
    pod = get_json(cluster, "pod", "big", "-n", ns)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    scheduled = {c["type"]: c for c in pod["status"]["conditions"]}["PodScheduled"]
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")


def test_node_selector_is_honoured(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "sched-sel")
    label = f"{ns}-disk"
    cluster.kubectl("label", "node", "fake-2", f"{label}=ssd")
    try:
        for i in range(4):
            apply(cluster, pod_manifest(f"p{i}", nodeSelector={label: "ssd"}), "-n", ns)
        assert {node_of(cluster, ns, f"p{i}") for i in range(4)} == {"fake-2"}
        # No node carries the value asked for: Pending, with the scheduler's reason.
        apply(cluster, pod_manifest("nowhere", nodeSelector={label: "nvme"}), "-n", ns)
        messages = wait_for(lambda: failed_scheduling(cluster, ns, "nowhere"),
                            what="a FailedScheduling event")
        assert messages[0].startswith(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ), messages
        # Labelling a node makes the pending pod schedulable.
        cluster.kubectl("label", "node", "fake-0", f"{label}=nvme")
        assert node_of(cluster, ns, "nowhere") == "fake-0"
    finally:
        cluster.kubectl("label", "node", "fake-0", "fake-2", f"{label}-", check=False)


def affinity(operator: str, hosts: list[str]) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": operator,
                                  "values": hosts}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [term]}}}


def test_required_node_affinity_is_honoured(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "sched-aff")
    for i in range(3):
        apply(cluster, pod_manifest(f"in{i}", affinity=affinity("In", ["fake-0"])), "-n", ns)
        apply(cluster, pod_manifest(f"notin{i}",
                                    affinity=affinity("NotIn", ["fake-0", "fake-1"])), "-n", ns)
    assert {node_of(cluster, ns, f"in{i}") for i in range(3)} == {"fake-0"}
    assert {node_of(cluster, ns, f"notin{i}") for i in range(3)} == {"fake-2"}


def test_taints_and_tolerations_are_honoured(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "sched-taint")
    cluster.kubectl("taint", "nodes", "fake-1", "k=v:NoSchedule")
    try:
        for i in range(6):
            apply(cluster, pod_manifest(f"free{i}"), "-n", ns)
        assert "fake-1" not in {node_of(cluster, ns, f"free{i}") for i in range(6)}

        pinned = {"nodeSelector": {"kubernetes.io/hostname": "fake-1"}}
        apply(cluster, pod_manifest("intolerant", **pinned), "-n", ns)
        toleration = {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}
        apply(cluster, pod_manifest("tolerant", tolerations=[toleration], **pinned), "-n", ns)
        assert node_of(cluster, ns, "tolerant") == "fake-1"
        messages = wait_for(lambda: failed_scheduling(cluster, ns, "intolerant"),
                            what="a FailedScheduling event")
        assert messages[0].startswith(
            "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, "
            "2 node(s) didn't match Pod's node affinity/selector."), messages
        assert not get_json(cluster, "pod", "intolerant", "-n", ns)["spec"].get("nodeName")
    finally:
        cluster.kubectl("taint", "nodes", "fake-1", "k=v:NoSchedule-", check=False)
    # Removing the taint lets the pending pod on.
    assert node_of(cluster, ns, "intolerant") == "fake-1"
