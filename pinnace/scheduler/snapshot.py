"""The scheduler's picture of the cluster: a NodeInfo per node, kept current.

Informer events update it incrementally (a pod added, moved or removed touches one
NodeInfo; a node event touches one) instead of rebuilding per cycle, so a cycle
costs nothing to start. A scheduling cycle is synchronous code on the event loop,
so it reads a consistent snapshot without copying.

Assumed pods: the moment the scheduler picks a node, the pod is counted on it
(`assume`), so the next cycle sees its resources while the binding is in flight.
When the informer reports the pod bound, the assumption is confirmed; if the
binding fails, `forget` takes it off again.
"""

from __future__ import annotations

from pinnace.scheduler.framework import NodeInfo, Obj, PodInfo

TERMINAL_PHASES = ("Succeeded", "Failed")


class ClusterSnapshot:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._pod_node: dict[str, str] = {}  # pod key -> node it is counted on
        self._assumed: set[str] = set()
        # the nodes that exist, in name order, rebuilt lazily when one comes or goes: every
        # cycle reads it, and its NodeInfos change in place
        self._order: list[NodeInfo] | None = None

    # -- nodes -----------------------------------------------------------------------------

    def node_list(self) -> list[NodeInfo]:
        """The nodes that exist (not placeholders for pods on unknown nodes), stable order."""
        if self._order is None:
            self._order = [self.nodes[n] for n in sorted(
                n for n, info in self.nodes.items() if info.node is not None)]
        return self._order

    def __len__(self) -> int:
        return len(self.node_list())

    def set_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
            self._order = None
        elif info.node is None:
            self._order = None
        info.set_node(node)

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        self._order = None
        if info.pods:
            info.set_node(None)  # its pods still exist until the API says otherwise
        else:
            del self.nodes[name]

    # -- pods ------------------------------------------------------------------------------

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def node_of(self, key: str) -> str | None:
        return self._pod_node.get(key)

    def assume(self, pod: PodInfo, node_name: str) -> None:
        self._place(pod, node_name)
        self._assumed.add(pod.key)

    def forget(self, key: str) -> None:
        if key in self._assumed:
            self._assumed.discard(key)
            self._unplace(key)

    def set_pod(self, pod: Obj) -> None:
        """An informer add/update: count a bound, running pod on its node."""
        info = PodInfo.of(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node_name or phase in TERMINAL_PHASES:
            self.remove_pod(info.key)
            return
        self._assumed.discard(info.key)  # confirmed by the API
        self._place(info, node_name)

    def remove_pod(self, key: str) -> None:
        self._assumed.discard(key)
        self._unplace(key)

    def _place(self, pod: PodInfo, node_name: str) -> None:
        old = self._pod_node.get(pod.key)
        if old is not None and old != node_name:
            self._unplace(pod.key)
        info = self.nodes.get(node_name)
        if info is None:
            info = self.nodes[node_name] = NodeInfo(node_name)
        info.add_pod(pod)
        self._pod_node[pod.key] = node_name

    def _unplace(self, key: str) -> None:
        node_name = self._pod_node.pop(key, None)
        if node_name is None:
            return
        info = self.nodes.get(node_name)
        if info is None:
            return
        info.remove_pod(key)
        if info.node is None and not info.pods:
            del self.nodes[node_name]
