"""Score plugins and the FitError message."""

from __future__ import annotations

from pinnace.scheduler.framework import Status
from pinnace.scheduler.plugins import LeastAllocated, NodeAffinity, Spread, TaintToleration
from pinnace.scheduler.scheduler import fit_error_message, num_feasible_nodes_to_find
from tests.unit.scheduler.conftest import make_node, make_pod


def test_least_allocated_prefers_the_emptier_node() -> None:
    busy, idle = make_node("busy"), make_node("idle")
    busy.add_pod(make_pod("x", cpu="3", memory="6Gi"))
    pod = make_pod(cpu="1", memory="2Gi")
    assert LeastAllocated().score(pod, idle) == 75
    assert LeastAllocated().score(pod, busy) == 0
    # no requests still counts (100m / 200Mi), so empty pods spread by load
    assert LeastAllocated().score(make_pod(), idle) < 100


def test_spread_prefers_nodes_with_fewer_siblings() -> None:
    a, b = make_node("a"), make_node("b")
    a.add_pod(make_pod("s1", owner="rs"))
    a.add_pod(make_pod("s2", owner="rs"))
    b.add_pod(make_pod("other", owner="other-rs"))
    pod = make_pod("new", owner="rs")
    scores = {n.name: Spread().score(pod, n) for n in (a, b)}
    Spread().normalize(pod, scores)
    assert scores == {"a": 0, "b": 100}
    assert not Spread().applies(make_pod())


def test_preferred_affinity_scores_by_weight() -> None:
    plugin = NodeAffinity()
    pod = make_pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}},
        {"weight": 30, "preference": {"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}}]}})
    nodes = [make_node("n1", labels={"zone": "a"}), make_node("n2"), make_node("n3")]
    scores = {n.name: plugin.score(pod, n) for n in nodes}
    plugin.normalize(pod, scores)
    assert scores == {"n1": 33, "n2": 100, "n3": 0}


def test_prefer_no_schedule_taints_lower_the_score() -> None:
    plugin = TaintToleration()
    tainted = make_node("t", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    clean = make_node("c")
    pod = make_pod()
    scores = {n.name: plugin.score(pod, n) for n in (tainted, clean)}
    plugin.normalize(pod, scores)
    assert scores == {"t": 0, "c": 100}


def test_fit_error_message_counts_and_sorts_reasons() -> None:
    statuses = {"a": Status.unschedulable("Insufficient cpu"),
                "b": Status.unschedulable("Insufficient cpu", "Insufficient memory"),
                "c": Status.unresolvable("node(s) had untolerated taint {gpu: true}")}
    assert fit_error_message(make_pod(), 3, statuses) == (
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint "
        "{gpu: true}, 2 Insufficient cpu. preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, 2 No preemption victims found for "
        "incoming pod.")
    never = make_pod(preemptionPolicy="Never")
    assert fit_error_message(never, 1, {"a": statuses["a"]}) == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to "
        "preemptionPolicy=Never.")
    assert fit_error_message(make_pod(), 0, {}) == "no nodes available to schedule pods"


def test_nodes_to_score_follows_percentage_of_nodes_to_score() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(1000) == 420   # 50% - 1000/125 = 42%
    assert num_feasible_nodes_to_find(5000) == 500   # 10%
    assert num_feasible_nodes_to_find(100_000) == 5000  # at least 5%
    assert num_feasible_nodes_to_find(150) == 100    # never under 100


def test_batched_scores_are_the_per_node_scores() -> None:
    nodes = [make_node("a"), make_node("b", cpu="2", memory="1Gi"), make_node("c", cpu="0")]
    nodes[0].add_pod(make_pod("x", cpu="1", memory="1Gi", owner="rs"))
    nodes[1].add_pod(make_pod("y", cpu="1", owner="rs"))
    nodes[1].add_pod(make_pod("z", cpu="100m", owner="rs"))
    pod = make_pod("new", cpu="500m", memory="512Mi", owner="rs")
    for plugin in (LeastAllocated(), Spread()):
        assert plugin.score_nodes(pod, nodes) == [plugin.score(pod, n) for n in nodes]
    assert Spread().score_nodes(pod, nodes) == [1, 2, 0]


def test_pre_score_skips_scorers_that_cannot_rank_the_nodes() -> None:
    prefer = [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]
    clean, tainted = make_node("clean"), make_node("tainted", taints=prefer)
    pod = make_pod()
    assert not TaintToleration().pre_score(pod, [clean, make_node("other")])
    assert TaintToleration().pre_score(pod, [clean, tainted])
    assert not NodeAffinity().pre_score(make_pod(nodeSelector={"disk": "ssd"}), [clean])
    preferred = make_pod(affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}})
    assert NodeAffinity().pre_score(preferred, [clean])
    # plain nodes (no taints, not cordoned) are the ones the taint filters may skip
    assert clean.plain and not tainted.plain
    assert not make_node("cordoned", unschedulable=True).plain
