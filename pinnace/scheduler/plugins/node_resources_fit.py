"""NodeResourcesFit: the pod's requests must fit in what the node's `status.allocatable`
leaves after the pods already on it; and the pod count must stay within `pods`."""

from __future__ import annotations

from pinnace.scheduler.framework import CPU, PODS, SUCCESS, NodeInfo, PodInfo, Status

TOO_MANY_PODS = "Too many pods"


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if node_info.pod_room > 0:  # the hot path: a plain loop over what the pod asks
            free = node_info.free
            for name, amount in pod.fit_requests:
                if amount > free.get(name, 0):
                    break
            else:
                return SUCCESS
        alloc, used = node_info.allocatable, node_info.requested
        too_many = len(node_info.pods) >= alloc.get(PODS, 0)
        # The slow path, only for nodes that fail: name every missing resource.
        reasons = [TOO_MANY_PODS] if too_many else []
        for name, amount in pod.requests.items():
            if amount > 0 and name != PODS and amount > alloc.get(name, 0) - used.get(name, 0):
                reasons.append(f"Insufficient {name}")
        if reasons:
            # cpu first, as Kubernetes checks cpu, memory, ephemeral-storage, then others
            reasons.sort(key=lambda r: (r != TOO_MANY_PODS, r != f"Insufficient {CPU}"))
            return Status.unschedulable(*reasons)
        return SUCCESS
