"""The cluster snapshot: pods counted on nodes as events arrive, assumed pods."""

from __future__ import annotations

from pinnace.scheduler.framework import PodInfo
from pinnace.scheduler.snapshot import ClusterSnapshot


def node(name: str) -> dict:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": "4", "pods": "10"}}}


def pod(name: str, node_name: str = "", phase: str = "Pending") -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node_name, "containers": [{"resources": {
                "requests": {"cpu": "1"}}}]}, "status": {"phase": phase}}


def test_assume_counts_at_once_and_forget_undoes() -> None:
    snap = ClusterSnapshot()
    snap.set_node(node("n1"))
    snap.assume(PodInfo.of(pod("a")), "n1")
    assert snap.nodes["n1"].requested["cpu"] == 1000 and snap.is_assumed("default/a")
    snap.forget("default/a")
    assert snap.nodes["n1"].requested["cpu"] == 0 and not snap.nodes["n1"].pods


def test_binding_confirmed_by_the_informer() -> None:
    snap = ClusterSnapshot()
    snap.set_node(node("n1"))
    snap.assume(PodInfo.of(pod("a")), "n1")
    snap.set_pod(pod("a", "n1"))
    assert not snap.is_assumed("default/a")
    snap.forget("default/a")  # too late: it is bound
    assert snap.nodes["n1"].requested["cpu"] == 1000


def test_finished_and_deleted_pods_free_their_node() -> None:
    snap = ClusterSnapshot()
    snap.set_node(node("n1"))
    snap.set_pod(pod("a", "n1"))
    snap.set_pod(pod("b", "n1"))
    snap.set_pod(pod("a", "n1", phase="Succeeded"))
    snap.remove_pod("default/b")
    assert snap.nodes["n1"].requested["cpu"] == 0


def test_pods_seen_before_their_node() -> None:
    snap = ClusterSnapshot()
    snap.set_pod(pod("a", "late"))
    assert snap.node_list() == []
    snap.set_node(node("late"))
    assert [n.name for n in snap.node_list()] == ["late"]
    assert len(snap.node_list()[0].pods) == 1
    snap.remove_node("late")
    assert snap.node_list() == [] and snap.node_of("default/a") == "late"
