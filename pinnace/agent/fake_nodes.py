"""Simulated nodes: many node agents over the fake runtime, in one process (like kwok).

`FakeNodes(client, factory, count=N)` registers `fake-0` … `fake-{N-1}` and runs
a simulated agent for every Node annotated `pinnace.io/fake: "true"`, so
creating such a Node through the API adds a node and deleting it removes one.

Built to carry thousands of nodes and tens of thousands of pods:
- one Node informer and one Pod informer (shared through the factory) for all
  simulated nodes; pod events are routed to their node by `spec.nodeName`
  (an informer index serves a node's pods when its agent starts);
- no task per node or per pod while idle: heartbeats, exits and backoffs are
  `loop.call_later` timers; first heartbeats are spread over one lease period;
- status is written only when it changes.

Each node gets the pod CIDR 10.244.N.0/24 (the N-th /24 from 10.244.0.0,
continuing through 10.0.0.0/8 past 256 nodes) and host IP 172.16.0.0 + 2 + N;
capacity is 32 CPU / 256Gi / 110 pods unless the Node's annotations
`pinnace.io/fake-cpu`, `-memory`, `-pods` say otherwise. Their kubelet port is 0: they
serve no logs, exec or port-forward, and the API server says so at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Callable

from pinnace.agent.node import NodeAgent, node_labels, node_status
from pinnace.agent.runtime.fake import FakeRuntime
from pinnace.api import errors
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import NODE_NAME_INDEX, index_pods_by_node

log = logging.getLogger(__name__)


FAKE = "pinnace.io/fake"
DEFAULT_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110"}
_CAPACITY_ANNOTATIONS = {"cpu": "pinnace.io/fake-cpu", "memory": "pinnace.io/fake-memory",
                         "pods": "pinnace.io/fake-pods"}
_FIRST_SUBNET = int(ipaddress.ip_address("10.244.0.0")) >> 8
_HOST_BASE = int(ipaddress.ip_address("172.16.0.2"))


def pod_cidr(index: int) -> str:
    subnet = (_FIRST_SUBNET + index) % (1 << 16) | (10 << 16)
    return f"{ipaddress.ip_address(subnet << 8)}/24"


def cidr_index(cidr: str) -> int:
    subnet = int(ipaddress.ip_network(cidr, strict=False).network_address) >> 8
    return ((subnet & 0xFFFF) - (_FIRST_SUBNET & 0xFFFF)) % (1 << 16)


def host_ip(index: int) -> str:
    return str(ipaddress.ip_address(_HOST_BASE + index))


def capacity_of(node: Obj) -> dict[str, str]:
    annotations = node["metadata"].get("annotations") or {}
    return {k: annotations.get(a, DEFAULT_CAPACITY[k]) for k, a in _CAPACITY_ANNOTATIONS.items()}


def is_fake(node: Obj) -> bool:
    return (node["metadata"].get("annotations") or {}).get(FAKE) == "true"


class FakeNodes:
    def __init__(self, client: Client, factory: InformerFactory, *, count: int = 0,
                 lease_period: float = 10.0, status_report_period: float = 300.0,
                 backoff_base: float = 10.0,
                 client_for_node: Callable[[str], Client] | None = None,
                 only: range | None = None) -> None:
        self.client = client
        # each node registers and runs as itself (system:node:<name>) when given
        self.client_for_node = client_for_node or (lambda _name: client)
        self.count = count
        # simulate only fake-i for i in `only`, registering those (None: every fake node,
        # registering fake-0 … fake-{count-1}); several FakeNodes share a cluster so
        self.only = only
        self.lease_period = lease_period
        self.status_report_period = status_report_period
        self.backoff_base = backoff_base
        self.agents: dict[str, NodeAgent] = {}
        self._indices: dict[str, int] = {}  # node name -> subnet index in use
        self._active = False
        self._node_rt = client.resource("v1", "Node")
        self.nodes = factory.informer("v1", "Node")
        self.pods = factory.informer("v1", "Pod")
        index_pods_by_node(self.pods)
        self.nodes.add_handler(on_add=self._node_changed,
                               on_update=lambda _old, new: self._node_changed(new),
                               on_delete=self._node_deleted)
        self.pods.add_handler(on_add=self._pod_changed,
                              on_update=lambda _old, new: self._pod_changed(new),
                              on_delete=self._pod_deleted)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        await asyncio.gather(self.nodes.wait_synced(), self.pods.wait_synced())
        self._active = True
        try:
            for node in self.nodes.list():
                self._node_changed(node)
            await self.register(self.count)
            await asyncio.Event().wait()
        finally:
            self._active = False
            for agent in self.agents.values():
                agent.stop()
            self.agents.clear()

    async def register(self, count: int) -> None:
        """Create Nodes fake-0 … fake-{count-1} (those that exist are left as they are)."""
        indices = self.only if self.only is not None else range(count)
        names = [f"fake-{i}" for i in indices if self.nodes.get(f"fake-{i}") is None]
        for start in range(0, len(names), 64):
            await asyncio.gather(*(self._create(n) for n in names[start:start + 64]))

    async def _create(self, name: str) -> None:
        index = self._allocate(name, preferred=int(name.rsplit("-", 1)[1]))
        node: Obj = {"metadata": {"name": name, "annotations": {FAKE: "true"},
                                  "labels": {**node_labels(name), "type": "fake"}},
                     "spec": {"podCIDR": pod_cidr(index), "podCIDRs": [pod_cidr(index)]}}
        node["status"] = node_status(name, capacity=DEFAULT_CAPACITY,
                                     host_ip=host_ip(index), runtime="fake", old=None,
                                     now=time.time(), kubelet_port=0)
        try:
            await self.client_for_node(name).create(self._node_rt, node)
        except errors.ApiError as e:
            if e.code != 409:
                raise

    def _allocate(self, name: str, *, preferred: int | None = None) -> int:
        if name in self._indices:
            return self._indices[name]
        used = set(self._indices.values())
        index = preferred if preferred is not None and preferred not in used else 0
        while index in used:
            index += 1
        self._indices[name] = index
        return index

    # -- routing -------------------------------------------------------------------------

    def _mine(self, name: str) -> bool:
        if self.only is None:
            return True
        index = name.rsplit("-", 1)[-1]
        return name.startswith("fake-") and index.isdigit() and int(index) in self.only

    def _node_changed(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and name not in self._indices:
            self._indices[name] = cidr_index(cidr)
        if not self._active:
            return
        agent = self.agents.get(name)
        if not is_fake(node) or not self._mine(name):
            if agent is not None:
                self._stop(name)
            return
        if agent is None:
            index = self._allocate(name)
            cidr = cidr or pod_cidr(index)
            agent = NodeAgent(self.client_for_node(name), FakeRuntime(pod_cidr=cidr),
                              node_name=name, host_ip=host_ip(index),
                              pod_cidr=cidr, capacity=capacity_of(node),
                              lease_period=self.lease_period,
                              status_report_period=self.status_report_period,
                              backoff_base=self.backoff_base, kubelet_port=0)
            self.agents[name] = agent
            agent.node_updated(node)
            agent.start(first_heartbeat=random.random() * min(self.lease_period, 1.0))
            for pod in self.pods.by_index(NODE_NAME_INDEX, name):
                agent.pod_updated(pod)
            return
        agent.capacity = capacity_of(node)
        agent.node_updated(node)

    def _node_deleted(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        self._stop(name)
        self._indices.pop(name, None)

    def _stop(self, name: str) -> None:
        agent = self.agents.pop(name, None)
        if agent is not None:
            agent.stop()

    def _pod_changed(self, pod: Obj) -> None:
        agent = self.agents.get((pod.get("spec") or {}).get("nodeName") or "")
        if agent is not None:
            agent.pod_updated(pod)

    def _pod_deleted(self, pod: Obj) -> None:
        agent = self.agents.get((pod.get("spec") or {}).get("nodeName") or "")
        if agent is not None:
            agent.pod_deleted(pod)
