"""NodeUnschedulable: a cordoned node (spec.unschedulable) takes only pods that
tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint."""

from __future__ import annotations

from pinnace.api.scheduling import tolerations_tolerate_taint
from pinnace.scheduler.framework import SUCCESS, NodeInfo, PodInfo, Status

REASON = "node(s) were unschedulable"
TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = "NodeUnschedulable"
    passes_plain_nodes = True  # it rejects only for a taint or spec.unschedulable

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if not node_info.unschedulable:
            return SUCCESS
        if tolerations_tolerate_taint(pod.tolerations, TAINT):
            return SUCCESS
        return Status.unresolvable(REASON)
