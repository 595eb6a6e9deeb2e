"""NodeName: a pod that names its node fits only that node."""

from __future__ import annotations

from pinnace.scheduler.framework import SUCCESS, NodeInfo, PodInfo, Status

REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = "NodeName"

    def applies(self, pod: PodInfo) -> bool:
        return bool((pod.obj.get("spec") or {}).get("nodeName"))

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        wanted = (pod.obj.get("spec") or {}).get("nodeName")
        if wanted and wanted != node_info.name:
            return Status.unresolvable(REASON)
        return SUCCESS
