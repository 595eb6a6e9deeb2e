"""Node lifecycle: taints that follow the Ready condition, when a pod must be evicted."""

from __future__ import annotations

from pinnace.api.types import Obj
from pinnace.controllers.node_lifecycle import (
    NOT_READY,
    UNREACHABLE,
    desired_taints,
    eviction_delay,
    ready_status,
)

NOW = "2026-01-01T00:00:00Z"


def node(ready: str | None, *taints: Obj) -> Obj:
    conditions = [{"type": "Ready", "status": ready}] if ready else []
    return {"metadata": {"name": "n1"}, "spec": {"taints": list(taints)},
            "status": {"conditions": conditions}}


def test_ready_status_defaults_to_unknown() -> None:
    assert ready_status(node("True")) == "True"
    assert ready_status(node(None)) == "Unknown"


def test_taints_follow_the_ready_condition() -> None:
    assert desired_taints(node("Unknown"), NOW) == [
        {"key": UNREACHABLE, "effect": "NoSchedule"},
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": NOW}]
    false = desired_taints(node("False"), NOW)
    assert {(t["key"], t["effect"]) for t in false} == {(NOT_READY, "NoSchedule"),
                                                         (NOT_READY, "NoExecute")}
    own = {"key": "dedicated", "effect": "NoSchedule"}
    stale = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "old"}
    assert desired_taints(node("True", own, stale), NOW) == [own]


def test_existing_taints_keep_their_time_added() -> None:
    kept = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2025-12-31T00:00:00Z"}
    taints = desired_taints(node("Unknown", kept), NOW)
    assert kept in taints and len(taints) == 2


def test_eviction_waits_for_the_smallest_toleration_seconds() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
    added = 1767225600.0  # the taint's timeAdded as epoch seconds
    assert eviction_delay({"spec": {}}, [taint], added + 5) == 0.0  # not tolerated
    forever = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert eviction_delay({"spec": {"tolerations": [forever]}}, [taint], added) is None
    patient = {"spec": {"tolerations": [{**forever, "tolerationSeconds": 30},
                                        {"operator": "Exists", "tolerationSeconds": 60}]}}
    assert eviction_delay(patient, [taint], added + 10) == 20.0
    assert eviction_delay(patient, [taint], added + 40) == 0.0
    # the controller's own sighting wins over timeAdded (whole seconds only)
    seen = {(UNREACHABLE, "NoExecute"): added + 0.5}
    assert eviction_delay(patient, [taint], added + 10, seen) == 20.5
