"""Node IPAM: every Node gets a slice of the cluster CIDR as its `spec.podCIDR`.

kube-controller-manager's range allocator: the cluster CIDR (10.42.0.0/16, k3s'
default) is cut into /24s; a Node without `spec.podCIDR` gets the lowest free one,
written once (`podCIDR` and `podCIDRs`). The free set is recomputed from the Node
informer at every reconcile, so nothing is kept across a restart and a node that
registered with a CIDR of its own (an explicit `--pod-cidr`, or `pinnace up`'s node)
keeps it and is simply counted as used. CIDRs handed out but not yet seen in the
cache are held in memory, so two nodes registering at once never get the same one;
one worker keeps the allocation serial. A deleted Node's CIDR is free again.
"""

from __future__ import annotations

import ipaddress
import logging

from pinnace.api import errors
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller

log = logging.getLogger(__name__)

CLUSTER_CIDR = "10.42.0.0/16"
NODE_CIDR_MASK = 24


def node_pod_cidr(node: Obj) -> str:
    return (node.get("spec") or {}).get("podCIDR") or ""


class NodeIpamController(Controller):
    name = "node-ipam"
    workers = 1  # allocation is serial: a free CIDR is chosen and written before the next

    def __init__(self, client: Client, factory: InformerFactory, *,
                 cluster_cidr: str = CLUSTER_CIDR, node_cidr_mask: int = NODE_CIDR_MASK
                 ) -> None:
        super().__init__(client, factory)
        self.cluster = ipaddress.ip_network(cluster_cidr)
        self.mask = node_cidr_mask
        self.node_rt = client.resource("v1", "Node")
        self.nodes = self.watch("v1", "Node", on_delete=self._released)
        self._pending: dict[str, str] = {}  # node name -> CIDR written, not yet in the cache

    def _released(self, node: Obj) -> None:
        self._pending.pop(node["metadata"]["name"], None)

    def _used(self) -> set[str]:
        used = set(self._pending.values())
        for node in self.nodes.list():
            for cidr in (node.get("spec") or {}).get("podCIDRs") or [node_pod_cidr(node)]:
                if cidr:
                    used.add(str(ipaddress.ip_network(cidr, strict=False)))
        return used

    def _next_free(self) -> str | None:
        used = self._used()
        for subnet in self.cluster.subnets(new_prefix=self.mask):
            if str(subnet) not in used and not any(
                    subnet.overlaps(ipaddress.ip_network(u)) for u in used
                    if ipaddress.ip_network(u).prefixlen != self.mask):
                return str(subnet)
        return None

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        name = node["metadata"]["name"]
        if node_pod_cidr(node):
            self._pending.pop(name, None)
            return
        if name in self._pending:  # written, the cache has not caught up yet
            return
        cidr = self._next_free()
        if cidr is None:
            log.warning("node %s: no pod CIDR left in %s", name, self.cluster)
            return
        self._pending[name] = cidr
        try:
            await self.client.patch(self.node_rt, name, {
                "metadata": {"uid": node["metadata"]["uid"]},
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except errors.ApiError as e:
            self._pending.pop(name, None)
            if e.code in (404, 409):
                return  # gone or replaced: its own event comes
            raise
        log.info("node %s: pod CIDR %s", name, cidr)
