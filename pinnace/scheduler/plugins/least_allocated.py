"""LeastAllocated (NodeResourcesFit's default scoring): prefer the node with the most
cpu and memory left after placing the pod, counting requests the Kubernetes way
(100m cpu / 200Mi memory for a container that states none)."""

from __future__ import annotations

from pinnace.scheduler.framework import CPU, MEMORY, NodeInfo, PodInfo

RESOURCES = (CPU, MEMORY)


class LeastAllocated:
    name = "NodeResourcesLeastAllocated"

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        total = 0
        alloc, used, want = node_info.allocatable, node_info.non_zero_requested, \
            pod.non_zero_requests
        for name in RESOURCES:
            capacity = alloc.get(name, 0)
            if capacity <= 0:
                continue  # counts as 0 for this resource
            requested = used.get(name, 0) + want.get(name, 0)
            if requested <= capacity:
                total += (capacity - requested) * 100 // capacity
        return total // len(RESOURCES)
