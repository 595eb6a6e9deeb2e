"""Node lifecycle: mark silent nodes, taint them, evict the pods that don't tolerate it.

Watches Nodes, Leases (kube-node-lease) and Pods (indexed by spec.nodeName).

- Health: the controller notes, on its own clock, when it last saw a node's
  heartbeat change (the Lease's renewTime or the Ready condition's
  lastHeartbeatTime — comparing against the local clock, not the timestamps,
  makes clock skew harmless). Every `eviction_check` seconds it looks for nodes
  silent longer than `grace_period`: their conditions become Unknown
  (reason NodeStatusUnknown, "Kubelet stopped posting node status.").
- Taints follow the Ready condition: Unknown → `node.kubernetes.io/unreachable`,
  False → `node.kubernetes.io/not-ready`, each NoExecute and NoSchedule; True →
  neither. The agent sets Ready True again when it heartbeats again.
- Eviction (Kubernetes' taint manager): a pod on a node with NoExecute taints is
  deleted at once unless it tolerates every one of them; if it does, after the
  smallest tolerationSeconds among the tolerations used, counted from the
  moment the controller first saw the taint — its timeAdded has whole seconds
  only — (no tolerationSeconds: never).

Two queues, one key type each: node names (health and taints) and pod keys
`namespace/name` (eviction), as Kubernetes' node lifecycle controller keeps its
node and pod update queues apart. Both reconciles are idempotent and read the
caches.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pinnace.api import errors
from pinnace.api.conditions import get_condition, new_condition
from pinnace.api.scheduling import toleration_tolerates_taint
from pinnace.api.timestamps import now_rfc3339, to_epoch
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import NODE_NAME_INDEX, index_pods_by_node, key_of
from pinnace.controllers.base import Controller

log = logging.getLogger(__name__)

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
LEASE_NAMESPACE = "kube-node-lease"
_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def ready_status(node: Obj) -> str:
    return (get_condition(node.get("status"), "Ready") or {}).get("status") or "Unknown"


def desired_taints(node: Obj, now: str) -> list[Obj]:
    """The node's taints with unreachable/not-ready made to match its Ready condition."""
    key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(ready_status(node))
    current = (node.get("spec") or {}).get("taints") or []
    kept = [t for t in current if t.get("key") not in (UNREACHABLE, NOT_READY)
            or (t.get("key") == key and t.get("effect") in ("NoExecute", "NoSchedule"))]
    for effect in ("NoSchedule", "NoExecute"):
        if key and not any(t.get("key") == key and t.get("effect") == effect for t in kept):
            taint: Obj = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = now
            kept.append(taint)
    return kept


def eviction_delay(pod: Obj, taints: list[Obj], now: float,
                   seen: dict[tuple[str, str], float] | None = None) -> float | None:
    """Seconds until the pod must go (0: now), or None if it tolerates the taints forever.
    A taint counts from when it was `seen` (local clock), else from its timeAdded."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    deadline: float | None = None
    for taint in taints:
        used = [t for t in tolerations if toleration_tolerates_taint(t, taint)]
        if not used:
            return 0.0
        seconds = [t["tolerationSeconds"] for t in used if t.get("tolerationSeconds") is not None]
        if not seconds:
            continue
        added = (seen or {}).get((taint.get("key", ""), taint.get("effect", ""))) or \
            to_epoch(taint.get("timeAdded")) or now
        at = added + max(min(seconds), 0)
        deadline = at if deadline is None else min(deadline, at)
    return None if deadline is None else max(deadline - now, 0.0)


class NodeLifecycleController(Controller):
    name = "node-lifecycle"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory, *, grace_period: float = 40.0,
                 eviction_check: float = 5.0) -> None:
        super().__init__(client, factory)
        self.grace_period = grace_period
        self.eviction_check = eviction_check
        self._node_rt = client.resource("v1", "Node")
        self._pod_rt = client.resource("v1", "Pod")
        self.nodes = factory.informer("v1", "Node")
        self.leases = factory.informer("coordination.k8s.io/v1", "Lease")
        self.pods = factory.informer("v1", "Pod")
        index_pods_by_node(self.pods)
        self.pod_queue = self.add_queue("pods", self._reconcile_pod)
        self.add_loop(self._monitor)
        # node name -> (last heartbeat seen, monotonic time it was first seen)
        self._probes: dict[str, tuple[tuple[str, str], float]] = {}
        # node name -> (taint key, effect) -> wall time the NoExecute taint was first seen
        self._taints_seen: dict[str, dict[tuple[str, str], float]] = {}
        self.nodes.add_handler(on_add=self._node_event,
                               on_update=self._node_updated, on_delete=self._node_deleted)
        self.leases.add_handler(on_add=self._lease_event,
                                on_update=lambda _old, new: self._lease_event(new))
        self.pods.add_handler(on_add=self._pod_event,
                              on_update=lambda _old, new: self._pod_event(new))

    # -- events: only keys ---------------------------------------------------------------

    def _node_event(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        self._observe(name)
        taints = {(t.get("key", ""), t.get("effect", "")) for t in _no_execute(node)}
        seen = self._taints_seen.setdefault(name, {})
        for gone in set(seen) - taints:
            del seen[gone]
        for new in taints - set(seen):
            seen[new] = time.time()
        self.queue.add(name)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self._node_event(new)
        if (old.get("spec") or {}).get("taints") != (new.get("spec") or {}).get("taints"):
            for pod in self.pods.by_index(NODE_NAME_INDEX, new["metadata"]["name"]):
                self.pod_queue.add(key_of(pod))

    def _node_deleted(self, node: Obj) -> None:
        self._probes.pop(node["metadata"]["name"], None)
        self._taints_seen.pop(node["metadata"]["name"], None)

    def _lease_event(self, lease: Obj) -> None:
        if lease["metadata"].get("namespace") == LEASE_NAMESPACE:
            self._observe(lease["metadata"]["name"])

    def _pod_event(self, pod: Obj) -> None:
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is not None and _no_execute(node):
            self.pod_queue.add(key_of(pod))

    def _observe(self, name: str) -> None:
        """Note the local time whenever the node's heartbeat changes."""
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        renew = ((lease or {}).get("spec") or {}).get("renewTime") or ""
        node = self.nodes.get(name)
        beat = (get_condition((node or {}).get("status"), "Ready") or {}).get(
            "lastHeartbeatTime") or ""
        seen = self._probes.get(name)
        if seen is None or seen[0] != (renew, beat):
            self._probes[name] = ((renew, beat), time.monotonic())
            if seen is not None and node is not None and ready_status(node) == "Unknown":
                self.queue.add(name)

    def silent(self, name: str) -> bool:
        seen = self._probes.get(name)
        return seen is not None and time.monotonic() - seen[1] > self.grace_period

    # -- the loop ------------------------------------------------------------------------

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.eviction_check)
            for node in self.nodes.list():
                name = node["metadata"]["name"]
                if name not in self._probes:
                    self._observe(name)
                if self.silent(name) and ready_status(node) != "Unknown":
                    self.queue.add(name)

    # -- nodes ---------------------------------------------------------------------------

    async def reconcile(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        if self.silent(name) and _needs_unknown(node):
            node = await self._mark_unknown(node)
        now = now_rfc3339()
        taints = desired_taints(node, now)
        if taints != ((node.get("spec") or {}).get("taints") or []):
            await self.client.patch(self._node_rt, name, {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"taints": taints or None}})

    async def _mark_unknown(self, node: Obj) -> Obj:
        now = now_rfc3339()
        conditions = []
        have = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
        for ctype in _CONDITIONS:
            c = dict(have.get(ctype) or {"type": ctype})
            if "lastHeartbeatTime" in c:
                reason, message = "NodeStatusUnknown", "Kubelet stopped posting node status."
            else:
                reason, message = "NodeStatusNeverUpdated", "Kubelet never posted node status."
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = now
            c.update(status="Unknown", reason=reason, message=message)
            conditions.append(c)
        conditions += [c for t, c in have.items() if t not in _CONDITIONS]
        log.info("node %s: no heartbeat for %ss, marking it Unknown", node["metadata"]["name"],
                 self.grace_period)
        out = await self.client.patch(self._node_rt, node["metadata"]["name"], {
            "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
            "status": {"conditions": conditions}}, subresource="status")
        await record_event(self.client, out, component="node-controller", type_="Normal",
                           reason="NodeNotReady",
                           message=f"Node {node['metadata']['name']} status is now: "
                                   "NodeNotReady")
        return out

    # -- pods ----------------------------------------------------------------------------

    async def _reconcile_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        taints = _no_execute(node)
        if not taints:
            return
        delay = eviction_delay(pod, taints, time.time(),
                               self._taints_seen.get(node["metadata"]["name"]))
        if delay is None:
            return
        if delay > 0:
            self.pod_queue.add_after(key, delay)
            return
        await self._evict(pod)

    async def _evict(self, pod: Obj) -> None:
        m = pod["metadata"]
        ref = f"{m['namespace']}/{m['name']}"
        await record_event(self.client, pod, component="taint-eviction-controller",
                           type_="Normal", reason="TaintManagerEviction",
                           message=f"Marking for deletion Pod {ref}")
        conditions = [c for c in (pod.get("status") or {}).get("conditions") or []
                      if c.get("type") != "DisruptionTarget"]
        conditions.append(new_condition("DisruptionTarget", "True", "DeletionByTaintManager",
                                        "Taint manager: deleting due to NoExecute taint"))
        try:
            await self.client.patch(self._pod_rt, m["name"], {"status": {
                "conditions": conditions}}, namespace=m["namespace"], subresource="status")
            await self.client.delete(self._pod_rt, m["name"], m["namespace"],
                                     preconditions={"uid": m["uid"]})
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise


def _needs_unknown(node: Obj) -> bool:
    conds = {c.get("type"): c.get("status")
             for c in (node.get("status") or {}).get("conditions") or []}
    return any(conds.get(t) != "Unknown" for t in _CONDITIONS)


def _no_execute(node: Obj) -> list[Obj]:
    return [t for t in (node.get("spec") or {}).get("taints") or []
            if t.get("effect") == "NoExecute"]
