"""What a StatefulSet does next, and its status: pure functions of the set and its pods
(Kubernetes' `stateful_set_control.go`, updateStatefulSet and computeReplicaStatus).

`plan` walks the pods the way Kubernetes does and returns the actions of this round:

1. Replicas, lowest ordinal first. A missing pod is created; a Failed or Succeeded one
   deleted (the next round recreates it). Under `OrderedReady` the walk stops at the
   first pod created, deleted, terminating, or not Running and Ready (and available
   for `minReadySeconds`): pod N+1 starts only once pod N runs and is ready.
   `Parallel` does all of them at once and never waits.
2. Condemned pods (ordinals beyond the replicas), highest first. `OrderedReady`
   deletes one at a time, waits while one is terminating, and does not scale down
   while a pod other than the one to delete is unhealthy.
3. RollingUpdate, once nothing above blocked: from the highest ordinal down to the
   partition, pods not of the update revision are deleted (step 1 recreates them from
   the update revision), as many as `maxUnavailable` (default 1) allows once the
   replicas already down are counted: by default one pod at a time, the highest first.
   `OnDelete` never deletes: pods take the update revision when someone else deletes them.

`calculate_status` counts what was observed; a rolling update is complete (current
revision := update revision) once every replica is updated and ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pinnace.api.types import Obj
from pinnace.controllers._rollout import scaled_value
from pinnace.controllers.statefulset_pods import (
    is_finished,
    is_healthy,
    is_running_and_available,
    is_running_and_ready,
    is_terminating,
    ordinal_of,
    ordinal_range,
    phase,
    replicas,
    revision_of,
)


@dataclass
class Plan:
    create: list[int] = field(default_factory=list)  # ordinals, in this order
    delete: list[Obj] = field(default_factory=list)  # pods, in this order
    # waiting on a pod that becomes available only with time (minReadySeconds)
    wait_for_availability: bool = False


def min_ready_seconds(sts: Obj) -> int:
    return int(sts["spec"].get("minReadySeconds") or 0)


def split_pods(sts: Obj, pods: list[Obj]) -> tuple[dict[int, Obj], list[Obj]]:
    """(the replicas by ordinal, the condemned pods highest ordinal first)."""
    wanted = ordinal_range(sts)
    by_ordinal = {ordinal_of(p): p for p in pods if ordinal_of(p) in wanted}
    condemned = sorted((p for p in pods if ordinal_of(p) not in wanted and ordinal_of(p) >= 0),
                       key=ordinal_of, reverse=True)
    return by_ordinal, condemned


def plan(sts: Obj, pods: list[Obj], update_revision: str) -> Plan:
    """This round's actions for the set's pods (its members, terminating ones included)."""
    out = Plan()
    ordered = (sts["spec"].get("podManagementPolicy") or "OrderedReady") == "OrderedReady"
    min_ready = min_ready_seconds(sts)
    by_ordinal, condemned = split_pods(sts, pods)
    in_order = [by_ordinal.get(o) for o in ordinal_range(sts)]
    unhealthy = [p for p in [*(p for p in in_order if p), *reversed(condemned)]
                 if not is_healthy(p)]
    first_unhealthy = unhealthy[0] if unhealthy else None

    for ordinal, pod in zip(ordinal_range(sts), in_order, strict=True):
        if pod is None:
            out.create.append(ordinal)
            if ordered:
                return out
            continue
        if is_finished(pod) and not is_terminating(pod):
            out.delete.append(pod)
            if ordered:
                return out
            continue
        if not ordered:
            continue
        if is_terminating(pod) or not is_running_and_ready(pod):
            return out
        if not is_running_and_available(pod, min_ready):
            out.wait_for_availability = True
            return out
    if out.create or out.delete:
        return out  # Parallel: this round's creations first, then the rest

    for pod in condemned:
        if is_terminating(pod):
            if ordered:
                return out
            continue
        if ordered and first_unhealthy is not None and pod is not first_unhealthy:
            return out  # do not scale down while another pod is unhealthy
        out.delete.append(pod)
        if ordered:
            return out
    if out.delete or sts["metadata"].get("deletionTimestamp"):
        return out

    strategy = sts["spec"].get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return out
    rolling = strategy.get("rollingUpdate") or {}
    partition = int(rolling.get("partition") or 0)
    budget = max_unavailable(rolling, replicas(sts))
    start = ordinal_range(sts).start
    updatable = [o for o in reversed(ordinal_range(sts)) if o >= start + partition]

    def up(pod: Obj | None) -> bool:
        return pod is not None and is_healthy(pod) and is_running_and_available(pod, min_ready)
    # replicas down already (missing, terminating, not ready) use up the budget
    budget -= sum(1 for o in updatable if not up(by_ordinal.get(o)))
    for ordinal in updatable:
        pod = by_ordinal.get(ordinal)
        if pod is None or revision_of(pod) == update_revision or is_terminating(pod):
            continue
        if not up(pod):
            out.delete.append(pod)  # down anyway: replacing it costs nothing
        elif budget > 0:
            out.delete.append(pod)
            budget -= 1
    return out


def max_unavailable(rolling: Obj, total: int) -> int:
    """How many replicas a rolling update may have down at once: `maxUnavailable`
    (a number or a percentage rounded down), 1 when unset, never below 1."""
    return max(scaled_value(rolling.get("maxUnavailable", 1), total, round_up=False), 1)


def calculate_status(sts: Obj, pods: list[Obj], *, current_revision: str,
                     update_revision: str, collision_count: int) -> Obj:
    """StatefulSetStatus from the set's pods (all its members, condemned and terminating
    ones included, as Kubernetes counts them)."""
    min_ready = min_ready_seconds(sts)
    count = ready = available = current = updated = 0
    for pod in pods:
        if phase(pod):
            count += 1
        if is_running_and_ready(pod):
            ready += 1
            if is_running_and_available(pod, min_ready):
                available += 1
        if phase(pod) and not is_terminating(pod):
            current += revision_of(pod) == current_revision
            updated += revision_of(pod) == update_revision
    status: Obj = {
        "observedGeneration": sts["metadata"].get("generation", 0),
        "replicas": count, "readyReplicas": ready, "currentReplicas": current,
        "updatedReplicas": updated, "availableReplicas": available,
        "currentRevision": current_revision, "updateRevision": update_revision,
        "collisionCount": collision_count,
    }
    strategy = sts["spec"].get("updateStrategy") or {}
    want = replicas(sts)
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and \
            updated == want and ready == want and count == want:
        status["currentReplicas"] = updated
        status["currentRevision"] = update_revision
    return status
