"""Pod garbage collector: removes pods nothing else will ever finish.

Watches Pods (indexed by spec.nodeName) and Nodes. Three kinds of garbage, as
Kubernetes' podgc:

- orphaned pods: bound to a node that does not exist. The cache may lag behind a
  node that just registered, so the node's absence is confirmed with a live GET
  before the pod is force-deleted (grace 0).
- terminating pods that were never scheduled: no node agent will finish their
  deletion, so it is finished here (grace 0).
- terminated pods (Succeeded/Failed) beyond `terminated_pod_threshold`: the
  oldest go first.

A node's deletion queues the pods bound to it at once; a periodic sweep every
`gc_period` seconds queues every candidate (the safety net, like Kubernetes'
20-second loop) and trims terminated pods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pinnace.api import errors
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import NODE_NAME_INDEX, index_pods_by_node
from pinnace.controllers.base import Controller, delete_if_same

log = logging.getLogger(__name__)

TERMINATED_POD_THRESHOLD = 12500
GC_PERIOD = 20.0
_TERMINATED = ("Succeeded", "Failed")


class PodGCController(Controller):
    name = "pod-gc"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 terminated_pod_threshold: int = TERMINATED_POD_THRESHOLD,
                 gc_period: float = GC_PERIOD) -> None:
        super().__init__(client, factory)
        self.pod_rt = client.resource("v1", "Pod")
        self.node_rt = client.resource("v1", "Node")
        self.threshold = terminated_pod_threshold
        self.gc_period = gc_period
        self.pods = factory.informer("v1", "Pod")
        self.nodes = factory.informer("v1", "Node")
        index_pods_by_node(self.pods)
        self.add_loop(self._sweep_forever)
        self.nodes.add_handler(on_delete=self._on_node_deleted)
        self.pods.add_handler(on_add=self._on_pod, on_update=lambda _o, new: self._on_pod(new))

    def _on_node_deleted(self, node: Obj) -> None:
        for pod in self.pods.by_index(NODE_NAME_INDEX, node["metadata"]["name"]):
            self.enqueue(pod)

    def _on_pod(self, pod: Obj) -> None:
        if _is_garbage_candidate(pod, self.nodes.get):
            self.enqueue(pod)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # transient: the next sweep tries again
                log.warning("pod-gc: sweep failed: %s", e)
            await asyncio.sleep(self.gc_period)

    async def sweep(self) -> None:
        """Queue every orphaned or unscheduled terminating pod; delete the oldest
        terminated pods beyond the threshold."""
        terminated: list[Obj] = []
        for pod in self.pods.list():
            if _is_garbage_candidate(pod, self.nodes.get):
                self.enqueue(pod)
            if (pod.get("status") or {}).get("phase") in _TERMINATED:
                terminated.append(pod)
        excess = len(terminated) - self.threshold
        if excess <= 0:
            return
        terminated.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                       p["metadata"]["name"]))
        for pod in terminated[:excess]:
            await self._force_delete(pod)

    async def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            if self.nodes.get(node_name) is not None or await self._node_exists(node_name):
                return
            log.info("pod-gc: deleting pod %s bound to missing node %s", key, node_name)
            await self._force_delete(pod)
        elif pod["metadata"].get("deletionTimestamp"):
            await self._force_delete(pod)

    async def _node_exists(self, name: str) -> bool:
        try:
            await self.client.get(self.node_rt, name)
        except errors.ApiError as e:
            if e.code == 404:
                return False
            raise
        return True

    async def _force_delete(self, pod: Obj) -> None:
        await delete_if_same(self.client, self.pod_rt, pod, grace_period_seconds=0)


def _is_garbage_candidate(pod: Obj, node_of: Callable[[str], Obj | None]) -> bool:
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        return node_of(node_name) is None
    return bool(pod["metadata"].get("deletionTimestamp"))
