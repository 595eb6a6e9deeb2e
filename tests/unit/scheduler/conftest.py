"""Builders for pods and nodes as the API would hand them to the scheduler."""

from __future__ import annotations

from typing import Any

from pinnace.scheduler.framework import NodeInfo, PodInfo


def make_pod(name: str = "p", *, cpu: str | None = None, memory: str | None = None,
             owner: str = "", **spec: Any) -> PodInfo:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    pod: dict[str, Any] = {"metadata": {"name": name, "namespace": "default"},
                           "spec": {"containers": [{"name": "c", "resources": {
                               "requests": requests}}], **spec}}
    if owner:
        pod["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner,
                                               "uid": owner, "controller": True}]
    return PodInfo.of(pod)


def make_node(name: str = "n", *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
              labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
              unschedulable: bool = False) -> NodeInfo:
    info = NodeInfo(name)
    info.set_node({"metadata": {"name": name, "labels": labels or {}},
                   "spec": {"taints": taints or [], "unschedulable": unschedulable},
                   "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}})
    return info
