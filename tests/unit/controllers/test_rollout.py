"""Deployment rollout arithmetic: surge and unavailability, growth, proportional scaling,
status and conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pinnace.api.types import Obj
from pinnace.controllers import _rollout as ro

NOW = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)


def deployment(replicas: int = 10, surge: Any = "25%", unavailable: Any = "25%",
               strategy: str = "RollingUpdate", **spec: Any) -> Obj:
    rolling = {"type": strategy}
    if strategy == "RollingUpdate":
        rolling["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": {"replicas": replicas, "strategy": rolling,
                     "template": {"metadata": {"labels": {"app": "web"}}}, **spec},
            "status": {}}


def rs(name: str, replicas: int, *, created: str = "2026-01-01T00:00:00Z",
       status: Obj | None = None, annotations: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": annotations or {}},
            "spec": {"replicas": replicas}, "status": status or {}}


# -- surge and unavailability --------------------------------------------------------------

def test_percentages_round_surge_up_and_unavailability_down() -> None:
    assert ro.scaled_value("25%", 10, round_up=True) == 3
    assert ro.scaled_value("25%", 10, round_up=False) == 2
    assert ro.scaled_value(4, 10, round_up=False) == 4
    assert ro.scaled_value("7", 10, round_up=True) == 7
    assert ro.scaled_value(None, 10, round_up=True) == 0
    assert ro.fenceposts(deployment()) == (3, 2)


def test_both_zero_lets_one_pod_be_unavailable() -> None:
    d = deployment(replicas=3, surge="10%", unavailable="10%")  # 1 and 0
    assert ro.fenceposts(d) == (1, 0)
    d = deployment(replicas=3, surge=0, unavailable=0)
    assert ro.fenceposts(d) == (0, 1)


def test_unavailability_never_exceeds_replicas_and_recreate_has_none() -> None:
    assert ro.max_unavailable(deployment(replicas=2, unavailable=5)) == 2
    assert ro.max_unavailable(deployment(replicas=0)) == 0
    recreate = deployment(strategy="Recreate")
    assert ro.max_surge(recreate) == 0 and ro.max_unavailable(recreate) == 0


def test_the_new_replicaset_grows_within_the_surge() -> None:
    d = deployment(replicas=10, surge=3)
    old, new = rs("old", 10, status={"replicas": 10}), rs("new", 0)
    assert ro.new_rs_new_replicas(d, [old, new], new) == 3
    # scaled down but pods not gone yet: they still count against the surge
    old, new = rs("old", 8, status={"replicas": 10}), rs("new", 3, status={"replicas": 3})
    assert ro.new_rs_new_replicas(d, [old, new], new) == 3
    old, new = rs("old", 5, status={"replicas": 5}), rs("new", 3, status={"replicas": 3})
    assert ro.new_rs_new_replicas(d, [old, new], new) == 8
    assert ro.new_rs_new_replicas(deployment(strategy="Recreate"), [new], new) == 10


# -- proportional scaling ------------------------------------------------------------------

def test_scaling_mid_rollout_is_proportional() -> None:
    # Kubernetes' documented example: 10 replicas, maxSurge 3, a rollout stuck with 8
    # old and 5 new pods; scaled to 15, the 5 extra pods go 3 to old and 2 to new.
    d = deployment(replicas=15, surge=3, unavailable=2)
    d["status"] = {"replicas": 13}
    max13 = {ro.MAX_REPLICAS: "13"}
    sizes = ro.proportional_sizes(d, [rs("old", 8, annotations=max13),
                                      rs("new", 5, created="2026-01-02T00:00:00Z",
                                         annotations=max13)])
    assert {r["metadata"]["name"]: n for r, n in sizes} == {"old": 11, "new": 7}


def test_scaling_down_mid_rollout_takes_from_the_biggest_first() -> None:
    d = deployment(replicas=5, surge=0, unavailable=1)
    max10 = {ro.MAX_REPLICAS: "10"}
    sizes = ro.proportional_sizes(d, [rs("old", 6, annotations=max10),
                                      rs("new", 4, created="2026-01-02T00:00:00Z",
                                         annotations=max10)])
    assert {r["metadata"]["name"]: n for r, n in sizes} == {"old": 3, "new": 2}


def test_scaling_to_zero_empties_every_replicaset() -> None:
    d = deployment(replicas=0)
    sizes = ro.proportional_sizes(d, [rs("a", 3), rs("b", 2, created="2026-01-02T00:00:00Z")])
    assert sorted(n for _, n in sizes) == [0, 0]


def test_the_active_replicaset() -> None:
    new, old = rs("new", 0, created="2026-01-02T00:00:00Z"), rs("old", 4)
    assert ro.find_active_or_latest(new, [old]) is old
    assert ro.find_active_or_latest(new, [rs("old", 0)]) is new
    assert ro.find_active_or_latest(rs("new", 2), [old]) is None  # two with pods
    assert ro.find_active_or_latest(None, []) is None


# -- status and conditions -----------------------------------------------------------------

def test_status_sums_the_replicasets_and_sets_available() -> None:
    d = deployment(replicas=4, surge=1, unavailable=1)
    new = rs("new", 3, status={"replicas": 3, "readyReplicas": 3, "availableReplicas": 2})
    old = rs("old", 1, status={"replicas": 1, "readyReplicas": 1, "availableReplicas": 1})
    status = ro.calculate_status(d, [old, new], new)
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "readyReplicas": 4,
        "availableReplicas": 3, "unavailableReplicas": 1}
    [cond] = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "Available", "True", "MinimumReplicasAvailable")
    assert cond["lastUpdateTime"] == cond["lastTransitionTime"]


def test_set_condition_keeps_the_transition_time_of_the_same_status() -> None:
    status: Obj = {}
    ro.set_condition(status, ro.deployment_condition("Progressing", "True", "A", "a", NOW))
    later = datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)
    ro.set_condition(status, ro.deployment_condition("Progressing", "True", "A", "x", later))
    [cond] = status["conditions"]
    assert cond["message"] == "a"  # same status and reason: no change at all
    ro.set_condition(status, ro.deployment_condition("Progressing", "True", "B", "b", later))
    [cond] = status["conditions"]
    assert cond["reason"] == "B" and cond["lastUpdateTime"] == "2026-01-01T00:05:00Z"
    assert cond["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    ro.set_condition(status, ro.deployment_condition("Progressing", "False", "C", "c", later))
    assert status["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_progress_deadline() -> None:
    d = deployment(progressDeadlineSeconds=60)
    status: Obj = {"conditions": [ro.deployment_condition("Progressing", "True",
                                                          "ReplicaSetUpdated", "", NOW)]}
    assert ro.progress_deadline_at(d, status) == datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
    assert not ro.is_timed_out(d, status, datetime(2026, 1, 1, 0, 0, 59, tzinfo=UTC))
    assert ro.is_timed_out(d, status, datetime(2026, 1, 1, 0, 1, 1, tzinfo=UTC))
    done: Obj = {"conditions": [ro.deployment_condition("Progressing", "True",
                                                        "NewReplicaSetAvailable", "", NOW)]}
    assert ro.progress_deadline_at(d, done) is None


def test_template_hash_ignores_its_own_label_and_changes_with_collisions() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    labeled = {"metadata": {"labels": {"app": "web", ro.HASH_LABEL: "x"}},
               "spec": {"containers": []}}
    assert ro.equal_ignore_hash(template, labeled)
    assert ro.template_hash(template) == ro.template_hash(template)
    assert ro.template_hash(template) != ro.template_hash(template, 1)
