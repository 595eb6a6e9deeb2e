"""DaemonSet: which nodes run a daemon pod, the pod's node, the status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pinnace.api.types import Obj
from pinnace.controllers.daemonset import (
    REVISION_HASH_LABEL,
    NodePlacement,
    calculate_status,
    daemon_tolerations,
    node_of_pod,
    should_run,
)
from tests.unit.controllers.objects import pod

NOW = datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)


def node(name: str = "n1", labels: dict[str, str] | None = None, *taints: tuple[str, str]
         ) -> Obj:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": [{"key": k, "effect": e} for k, e in taints]}}


def test_a_plain_node_runs_the_daemon() -> None:
    assert should_run({}, node()) == (True, True)


def test_node_name_and_node_selector_choose_nodes() -> None:
    assert should_run({"nodeName": "n2"}, node("n1")) == (False, False)
    assert should_run({"nodeName": "n1"}, node("n1")) == (True, True)
    spec = {"nodeSelector": {"disk": "ssd"}}
    assert should_run(spec, node(labels={"disk": "ssd"})) == (True, True)
    assert should_run(spec, node(labels={"disk": "hdd"})) == (False, False)


def test_required_node_affinity_chooses_nodes() -> None:
    spec: Obj = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}
    assert should_run(spec, node(labels={"zone": "a"})) == (True, True)
    assert should_run(spec, node(labels={"zone": "b"})) == (False, False)


def test_taints_keep_new_pods_off_and_no_execute_evicts() -> None:
    assert should_run({}, node("n1", None, ("dedicated", "NoSchedule"))) == (False, True)
    assert should_run({}, node("n1", None, ("dedicated", "NoExecute"))) == (False, False)
    assert should_run({}, node("n1", None, ("soft", "PreferNoSchedule"))) == (True, True)
    tolerant = {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}
    assert should_run(tolerant, node("n1", None, ("dedicated", "NoExecute"))) == (True, True)


def test_daemon_pods_tolerate_node_conditions() -> None:
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        assert should_run({}, node("n1", None, (key, "NoExecute"))) == (True, True)
    assert should_run({}, node("n1", None, ("node.kubernetes.io/unschedulable",
                                             "NoSchedule"))) == (True, True)
    net = ("node.kubernetes.io/network-unavailable", "NoSchedule")
    assert should_run({}, node("n1", None, net)) == (False, True)
    assert should_run({"hostNetwork": True}, node("n1", None, net)) == (True, True)


def test_daemon_tolerations_replace_the_templates_own_for_the_same_taint() -> None:
    spec = {"tolerations": [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "operator": "Exists",
         "tolerationSeconds": 5},
        {"key": "mine", "operator": "Exists"}]}
    out = daemon_tolerations(spec)
    assert out[0] == {"key": "mine", "operator": "Exists"}
    not_ready = [t for t in out if t["key"] == "node.kubernetes.io/not-ready"]
    assert not_ready == [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                          "effect": "NoExecute"}]


def test_the_node_of_a_pod_is_its_binding_or_its_affinity() -> None:
    assert node_of_pod({"spec": {"nodeName": "n3"}}) == "n3"
    aimed = {"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In",
                              "values": ["n4"]}]}]}}}}}
    assert node_of_pod(aimed) == "n4"
    assert node_of_pod({"spec": {}}) == ""


def test_status_counts_desired_current_ready_available_updated_misscheduled() -> None:
    ds = {"metadata": {"name": "agent", "generation": 4}, "spec": {"minReadySeconds": 30},
          "status": {"numberUnavailable": 9}}

    def daemon(name: str, revision: str = "r2", **kw: Any) -> Obj:
        return pod(name, labels={REVISION_HASH_LABEL: revision}, **kw)
    placements = [
        NodePlacement("n1", True, True, [daemon("a")]),
        NodePlacement("n2", True, True, [daemon("b", "r1", ready_since="2026-01-01T00:00:50Z")]),
        NodePlacement("n3", True, True, []),
        NodePlacement("n4", False, False, [daemon("c")]),
        NodePlacement("gone", False, False, [daemon("d")], node_gone=True),
        NodePlacement("n5", False, True, []),
    ]
    status = calculate_status(ds, placements, "r2", NOW)
    assert status == {"desiredNumberScheduled": 3, "currentNumberScheduled": 2,
                      "numberMisscheduled": 1, "numberReady": 2, "numberAvailable": 1,
                      "updatedNumberScheduled": 1, "observedGeneration": 4,
                      "numberUnavailable": 2}
    everything = [NodePlacement("n1", True, True, [daemon("a")])]
    assert "numberUnavailable" not in calculate_status(ds, everything, "r2", NOW)
