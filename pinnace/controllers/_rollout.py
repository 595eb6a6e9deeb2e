"""The arithmetic of Deployment rollouts, as pure functions of observed objects.

Kubernetes' `deployment/util` in Python: the pod-template hash that names a
Deployment's ReplicaSets, revisions, maxSurge/maxUnavailable (surge rounds up,
unavailable rounds down, both zero means one may be unavailable), how big the
new ReplicaSet may grow, proportional scaling, the Deployment status and its
conditions (Available, Progressing, ReplicaFailure) with Kubernetes' reasons
and messages. Nothing here does I/O; `deployment.py` decides and writes.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta

from pinnace.api.conditions import get_condition, new_condition, remove_condition
from pinnace.api.timestamps import format_time, parse_time
from pinnace.api.types import Obj

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Deployment annotations that are not copied onto its ReplicaSets
NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
              DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"}
MAX_INT32 = 2**31 - 1
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels: no words in generated names


# -- names, revisions, templates -----------------------------------------------------------

def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A stable short hash of a pod template (FNV-1a over its canonical JSON)."""
    h = 0x811C9DC5
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(h))


def without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
        if not labels:
            del t["metadata"]["labels"]
    if "metadata" in t and not t["metadata"]:
        del t["metadata"]
    return t


def equal_ignore_hash(a: Obj | None, b: Obj | None) -> bool:
    return without_hash(a) == without_hash(b)


def revision(obj: Obj) -> int:
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0) or 0)


def st(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0) or 0)


def available(rs: Obj) -> int:
    """Available pods of rs, trusting no more than its spec: a ReplicaSet just scaled
    down has not yet reported the pods it is deleting."""
    return min(st(rs, "availableReplicas"), replicas(rs))


def created(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("creationTimestamp", ""), obj["metadata"]["name"]


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's (hash label aside)."""
    for rs in sorted(rss, key=created):
        if equal_ignore_hash(rs["spec"].get("template"), d["spec"].get("template")):
            return rs
    return None


# -- surge and unavailability --------------------------------------------------------------

def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if value.endswith("%"):
        raw = int(value[:-1]) * total / 100
        return math.ceil(raw) if round_up else math.floor(raw)
    return int(value)


def _rolling(d: Obj) -> Obj | None:
    strategy = d["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {"maxSurge": "25%", "maxUnavailable": "25%"}


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods for a RollingUpdate Deployment."""
    rolling = _rolling(d) or {}
    desired = replicas(d)
    surge = scaled_value(rolling.get("maxSurge"), desired, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # otherwise a rollout could never start
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if _rolling(d) is not None else 0


def max_unavailable(d: Obj) -> int:
    if _rolling(d) is None or replicas(d) == 0:
        return 0
    return min(fenceposts(d)[1], replicas(d))


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now."""
    if _rolling(d) is None:
        return replicas(d)
    # pods of a ReplicaSet scaled down but not yet gone still count against the surge
    current = sum(max(replicas(rs), st(rs, "replicas")) for rs in all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    grow = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + max(grow, 0)


def replicas_annotations(d: Obj) -> dict[str, str]:
    """The desired/max-replicas annotations a Deployment's ReplicaSets carry."""
    return {DESIRED_REPLICAS: str(replicas(d)), MAX_REPLICAS: str(replicas(d) + max_surge(d))}


# -- proportional scaling ------------------------------------------------------------------

def active(rss: list[Obj]) -> list[Obj]:
    return [rs for rs in rss if replicas(rs) > 0]


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The one ReplicaSet with pods; or, when none has any, the newest one."""
    if new_rs is None and not old_rss:
        return None
    olds = sorted(old_rss, key=created, reverse=True)
    running = active(olds + ([new_rs] if new_rs else []))
    if not running:
        return new_rs if new_rs is not None else olds[0]
    return running[0] if len(running) == 1 else None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
    return desired == str(replicas(d)) and replicas(rs) == replicas(d) and \
        st(rs, "availableReplicas") == replicas(d)


def proportional_sizes(d: Obj, rss: list[Obj]) -> list[tuple[Obj, int]]:
    """New sizes for the active ReplicaSets when a rolling Deployment is resized
    mid-rollout: each keeps its share of `replicas + maxSurge`, the rounding
    leftover goes to the biggest."""
    rss = active(rss)
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - sum(replicas(rs) for rs in rss)
    if to_add > 0:  # biggest first, newer first among equals
        rss.sort(key=lambda rs: created(rs), reverse=True)
        rss.sort(key=replicas, reverse=True)
    elif to_add < 0:  # biggest first, older first among equals
        rss.sort(key=created)
        rss.sort(key=replicas, reverse=True)
    sizes: list[int] = []
    added = 0
    for rs in rss:
        share = _proportion(rs, d, to_add, added) if to_add else 0
        sizes.append(replicas(rs) + share)
        added += share
    if rss and to_add:
        sizes[0] = max(sizes[0] + to_add - added, 0)
    return list(zip(rss, sizes, strict=True))


def _proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if replicas(rs) == 0 or to_add == added:
        return 0
    if replicas(d) == 0:
        fraction = -replicas(rs)
    else:
        target = replicas(d) + max_surge(d)
        try:
            annotated = int((rs["metadata"].get("annotations") or {})[MAX_REPLICAS])
        except (KeyError, ValueError):
            annotated = st(d, "replicas")
        if annotated <= 0:
            return 0
        exact = replicas(rs) * target / annotated
        fraction = math.floor(exact + 0.5) - replicas(rs)  # round half away from 0
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# -- status and conditions -----------------------------------------------------------------

def deployment_condition(type_: str, cond_status: str, reason: str, message: str,
                         now: datetime | None = None, *, previous: Obj | None = None) -> Obj:
    """A Deployment condition stamped `now`: Deployments also carry lastUpdateTime;
    with the `previous` condition's status it keeps that one's lastTransitionTime."""
    return new_condition(type_, cond_status, reason, message, now=format_time(now),
                         previous=previous, extra_times=("lastUpdateTime",))


def set_condition(status: Obj, cond: Obj) -> None:
    """Kubernetes' SetDeploymentCondition: same status and reason is no change;
    same status keeps the transition time."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and \
            current.get("reason") == cond.get("reason"):
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def has_progress_deadline(d: Obj) -> bool:
    deadline = d["spec"].get("progressDeadlineSeconds")
    return deadline is not None and deadline != MAX_INT32


def calculate_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> Obj:
    """Counts from the ReplicaSets' statuses, and the Available condition."""
    old = d.get("status") or {}
    avail = sum(st(rs, "availableReplicas") for rs in all_rss)
    total = sum(replicas(rs) for rs in all_rss)
    status: Obj = {
        "observedGeneration": d["metadata"].get("generation", 0),
        "replicas": sum(st(rs, "replicas") for rs in all_rss),
        "updatedReplicas": st(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": sum(st(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": avail,
        "unavailableReplicas": max(total - avail, 0),
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if avail >= replicas(d) - max_unavailable(d):
        cond = deployment_condition("Available", "True", "MinimumReplicasAvailable",
                             "Deployment has minimum availability.")
    else:
        cond = deployment_condition("Available", "False", "MinimumReplicasUnavailable",
                             "Deployment does not have minimum availability.")
    set_condition(status, cond)
    return status


def is_complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want and \
        status.get("availableReplicas", 0) == want and \
        status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)


def is_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}
    old_olds = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_olds = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or \
        new_olds < old_olds or \
        status.get("readyReplicas", 0) > old.get("readyReplicas", 0) or \
        status.get("availableReplicas", 0) > old.get("availableReplicas", 0)


def progress_deadline_at(d: Obj, status: Obj) -> datetime | None:
    """When the current rollout times out; None when it cannot (done, or no deadline)."""
    cond = get_condition(status, "Progressing")
    if not has_progress_deadline(d) or cond is None or \
            cond.get("reason") in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    return since + timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))


def is_timed_out(d: Obj, status: Obj, now: datetime | None = None) -> bool:
    cond = get_condition(status, "Progressing")
    if not has_progress_deadline(d) or cond is None:
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    deadline = progress_deadline_at(d, status)
    return deadline is not None and deadline < (now or datetime.now(UTC))


def rollout_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None,
                   now: datetime | None = None) -> Obj:
    """calculate_status plus the Progressing and ReplicaFailure conditions."""
    status = calculate_status(d, all_rss, new_rs)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
    current = get_condition(d.get("status") or {}, "Progressing")
    done = status["replicas"] == status["updatedReplicas"] and current is not None and \
        current.get("reason") == "NewReplicaSetAvailable"
    what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else \
        f'Deployment "{d["metadata"]["name"]}"'
    if has_progress_deadline(d) and not done:
        if is_complete(d, status):
            set_condition(status, deployment_condition(
                "Progressing", "True", "NewReplicaSetAvailable",
                f"{what} has successfully progressed.", now))
        elif is_progressing(d, status):
            # progress refreshes lastUpdateTime even with the same reason
            cond = deployment_condition("Progressing", "True", "ReplicaSetUpdated",
                                        f"{what} is progressing.", now, previous=current)
            remove_condition(status, "Progressing")
            set_condition(status, cond)
        elif is_timed_out(d, status, now):
            set_condition(status, deployment_condition(
                "Progressing", "False", "ProgressDeadlineExceeded",
                f"{what} has timed out progressing.", now))
    failure = next((c for rs in all_rss
                    if (c := get_condition(rs.get("status"), "ReplicaFailure"))), None)
    if failure is not None:
        set_condition(status, deployment_condition(
            "ReplicaFailure", failure.get("status", "True"), failure.get("reason", ""),
            failure.get("message", ""), now))
    else:
        remove_condition(status, "ReplicaFailure")
    return status
