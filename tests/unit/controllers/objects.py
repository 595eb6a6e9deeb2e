"""Builders for the objects the controllers' pure functions read, and a fake clock."""

from __future__ import annotations

from typing import Any

from pinnace.api.types import Obj


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pod(name: str, *, phase: str = "Running", node: str | None = "n1", ready: bool = True,
        ready_since: str = "2026-01-01T00:00:00Z", created: str = "2026-01-01T00:00:00Z",
        restarts: int = 0, uid: str | None = None, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, deleting: bool = False,
        finalizers: list[str] | None = None, **status: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "uid": uid or f"uid-{name}",
                 "creationTimestamp": created, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:10:00Z"
    if finalizers:
        meta["finalizers"] = finalizers
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": ready_since}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "app", "restartCount": restarts}],
                       **status}}
