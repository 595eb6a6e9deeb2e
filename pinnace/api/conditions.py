"""Status conditions, as every Kubernetes controller and the kubelet keep them.

A condition is `{type, status, reason, message, lastTransitionTime, …}` in a list under
`status.conditions`. The rule they all share: `lastTransitionTime` moves only when
`status` changes; a changed reason or message alone is an update, not a transition.
"""

from __future__ import annotations

from pinnace.api.timestamps import format_time
from pinnace.api.types import Obj


def find(conditions: list[Obj] | None, type_: str) -> Obj | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def get_condition(status: Obj | None, type_: str) -> Obj | None:
    return find((status or {}).get("conditions"), type_)


def is_true(conditions: list[Obj] | None, type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def new_condition(type_: str, status: str, reason: str = "", message: str = "", *,
                  now: str | None = None, previous: Obj | None = None,
                  extra_times: tuple[str, ...] = ()) -> Obj:
    """A condition stamped `now` (default: the current time); it keeps `previous`'s
    lastTransitionTime when the status is the same. `extra_times` names more time
    fields stamped now (Deployments' lastUpdateTime, Jobs' lastProbeTime)."""
    stamp = now or format_time()
    since = stamp
    if previous is not None and previous.get("status") == status and \
            previous.get("lastTransitionTime"):
        since = previous["lastTransitionTime"]
    cond: Obj = {"type": type_, "status": status}
    for f in extra_times:
        cond[f] = stamp
    cond["lastTransitionTime"] = since
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def same_status(a: Obj, b: Obj) -> bool:
    """Two status objects are equal but for zero or empty fields, which a server may
    leave out (omitempty): the test controllers use before writing status."""
    return {k: v for k, v in a.items() if v} == {k: v for k, v in b.items() if v}
