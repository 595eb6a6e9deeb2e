"""LeastAllocated (NodeResourcesFit's default scoring): prefer the node with the most
cpu and memory left after placing the pod, counting requests the Kubernetes way
(100m cpu / 200Mi memory for a container that states none)."""

from __future__ import annotations

from pinnace.scheduler.framework import CPU, MEMORY, NodeInfo, PodInfo

RESOURCES = (CPU, MEMORY)


class LeastAllocated:
    name = "NodeResourcesLeastAllocated"

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        return self.score_nodes(pod, [node_info])[0]

    def score_nodes(self, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        # one loop, unrolled over cpu and memory: this runs for every feasible node of
        # every cycle
        want_cpu = pod.non_zero_requests.get(CPU, 0)
        want_memory = pod.non_zero_requests.get(MEMORY, 0)
        out = []
        for ni in nodes:
            cpu, cpu_used, memory, memory_used = ni.load
            total = 0
            if cpu > 0:  # a resource the node lacks counts as 0
                requested = cpu_used + want_cpu
                if requested <= cpu:
                    total += (cpu - requested) * 100 // cpu
            if memory > 0:
                requested = memory_used + want_memory
                if requested <= memory:
                    total += (memory - requested) * 100 // memory
            out.append(total // len(RESOURCES))
        return out
