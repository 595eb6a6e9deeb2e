"""ReplicaSet: the status from the pods it controls, and which pods go first."""

from __future__ import annotations

from datetime import UTC, datetime

from pinnace.api.types import Obj
from pinnace.controllers.replicaset import calculate_status, pods_to_delete
from tests.unit.controllers.objects import pod

NOW = datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)


def replicaset(*, min_ready: int = 0, status: Obj | None = None) -> Obj:
    return {"metadata": {"name": "web", "namespace": "default", "uid": "rs", "generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": min_ready,
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}},
            "status": status or {}}


def names(pods: list[Obj]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_status_counts_labeled_ready_and_available_pods() -> None:
    full = {"app": "web", "tier": "front"}
    pods = [pod("a", labels=full),
            pod("b", labels={"app": "web"}),
            pod("c", labels=full, ready=False),
            pod("d", labels=full, ready_since="2026-01-01T00:00:50Z")]
    status = calculate_status(replicaset(min_ready=30), pods, None, NOW)
    assert status == {"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 3,
                      "availableReplicas": 2, "observedGeneration": 3}


def test_without_min_ready_seconds_ready_is_available() -> None:
    pods = [pod("a", ready_since="2026-01-01T00:00:59Z")]
    assert calculate_status(replicaset(), pods, None, NOW)["availableReplicas"] == 1


def test_a_failure_sets_replica_failure_and_success_clears_it() -> None:
    status = calculate_status(replicaset(), [], ("FailedCreate", "quota"), NOW)
    [cond] = status["conditions"]
    assert cond == {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                    "message": "quota", "lastTransitionTime": "2026-01-01T00:01:00Z"}
    later = datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)
    again = calculate_status(replicaset(status=status), [], ("FailedCreate", "quota"), later)
    assert again["conditions"] == [cond]  # the same failure keeps its time
    other = calculate_status(replicaset(status=status), [], ("FailedDelete", "x"), later)
    assert other["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert "conditions" not in calculate_status(replicaset(status=status), [], None, later)


def test_other_conditions_survive() -> None:
    old = {"conditions": [{"type": "Custom", "status": "True"}]}
    status = calculate_status(replicaset(status=old), [], None, NOW)
    assert status["conditions"] == [{"type": "Custom", "status": "True"}]


def test_pods_to_delete_follow_kubernetes_ranking() -> None:
    pods = [
        pod("running-old", created="2026-01-01T00:00:00Z", ready_since="2026-01-01T00:00:10Z"),
        pod("unscheduled", phase="Pending", node=None, ready=False),
        pod("pending", phase="Pending", ready=False),
        pod("not-ready", ready=False),
        pod("ready-recently", ready_since="2026-01-01T00:00:40Z"),
        pod("restarting", restarts=5, ready_since="2026-01-01T00:00:10Z"),
        pod("running-new", created="2026-01-01T00:00:05Z", ready_since="2026-01-01T00:00:10Z"),
    ]
    assert names(pods_to_delete(pods, len(pods))) == [
        "unscheduled", "pending", "not-ready", "ready-recently", "restarting",
        "running-new", "running-old"]
    assert names(pods_to_delete(pods, 2)) == ["unscheduled", "pending"]


def test_equal_pods_go_by_name() -> None:
    assert names(pods_to_delete([pod("b"), pod("a")], 1)) == ["a"]
