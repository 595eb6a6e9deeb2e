"""A node agent's own Node: registration, Lease heartbeat, node status; and its pod workers.

`NodeAgent` is the kubelet of one node, minus the watch: whoever feeds it pods
and its Node object (`pod_updated`, `pod_deleted`, `node_updated`) decides how
they are watched — a standalone agent watches its own node's pods, simulated
nodes share one informer (see `fake_nodes`).

Heartbeats follow kubelet: the Lease `kube-node-lease/<node>` is renewed every
`lease_period` (10 s); the Node's status is written when it differs from what
the API holds (heartbeat times aside), or every `status_report_period`
(5 min) so `lastHeartbeatTime` stays meaningful. Timers are `loop.call_later`,
so an idle node costs no task. Setting annotation `pinnace.io/fake-heartbeat:
"stopped"` on the Node pauses both, which is how a node going silent is
simulated.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
import uuid

from pinnace.agent.pod_services import PodServices, SimulatedServices
from pinnace.agent.pod_worker import NodeContext, PodWorkers
from pinnace.agent.runtime.interface import Runtime
from pinnace.api import errors
from pinnace.api.conditions import new_condition
from pinnace.api.timestamps import format_micro_time, format_time
from pinnace.api.types import Obj
from pinnace.client.client import Client

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
HEARTBEAT = "pinnace.io/fake-heartbeat"
KUBELET_VERSION = "v1.32.0"
LEASE_DURATION_SECONDS = 40

# (type, status, reason, message) of a healthy node, in kubelet's words
_HEALTHY = [
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
]


def node_labels(name: str) -> dict[str, str]:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch}


def node_status(name: str, *, capacity: dict[str, str], host_ip: str, runtime: str,
                old: Obj | None, now: float, os_image: str = "pinnace simulated node",
                kubelet_port: int = 10250) -> Obj:
    """The status a healthy agent reports; transition times kept from `old`."""
    stamp = format_time(now)
    old_conds = {c.get("type"): c for c in (old or {}).get("conditions") or []}
    conditions = [new_condition(ctype, status, reason, message, now=stamp,
                                previous=old_conds.get(ctype),
                                extra_times=("lastHeartbeatTime",))
                  for ctype, status, reason, message in _HEALTHY]
    labels = node_labels(name)
    node_id = uuid.uuid5(uuid.NAMESPACE_DNS, name)
    return {
        "capacity": dict(capacity), "allocatable": dict(capacity),
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": host_ip},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": node_id.hex, "systemUUID": str(node_id), "bootID": str(node_id),
            "kernelVersion": platform.release(), "osImage": os_image,
            "containerRuntimeVersion": f"{runtime}://0.1.0",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux", "architecture": labels["kubernetes.io/arch"]},
    }


def _without_heartbeats(status: Obj) -> Obj:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                         for c in status.get("conditions") or []]
    return out


class NodeAgent:
    def __init__(self, client: Client, runtime: Runtime, *, node_name: str, host_ip: str,
                 pod_cidr: str, capacity: dict[str, str], lease_period: float = 10.0,
                 status_report_period: float = 300.0, backoff_base: float = 10.0,
                 services: PodServices | None = None, os_image: str = "pinnace simulated node",
                 kubelet_port: int = 10250) -> None:
        self.client = client
        self.name = node_name
        self.host_ip = host_ip
        self.pod_cidr = pod_cidr
        self.capacity = capacity
        self.lease_period = lease_period
        self.status_report_period = status_report_period
        self.node: Obj | None = None  # the latest Node from the API
        self.heartbeat_stopped = False
        self.os_image = os_image
        self.kubelet_port = kubelet_port
        self.workers = PodWorkers(NodeContext(client, runtime, node_name, host_ip,
                                              backoff_base=backoff_base,
                                              services=services or SimulatedServices(),
                                              allocatable=dict(capacity)))
        self._nodes = client.resource("v1", "Node")
        self._leases = client.resource("coordination.k8s.io/v1", "Lease")
        self._lease: Obj | None = None
        self._last_report = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    # -- inputs --------------------------------------------------------------------------

    def node_updated(self, node: Obj) -> None:
        self.node = node
        annotations = node["metadata"].get("annotations") or {}
        stopped = annotations.get(HEARTBEAT) == "stopped"
        resumed = self.heartbeat_stopped and not stopped
        self.heartbeat_stopped = stopped
        if resumed:
            self._schedule(0)

    def pod_updated(self, pod: Obj) -> None:
        self.workers.update(pod)

    def pod_deleted(self, pod: Obj) -> None:
        self.workers.remove(pod)

    # -- life ----------------------------------------------------------------------------

    def start(self, *, first_heartbeat: float = 0.0) -> None:
        """Begin heartbeats (the first after `first_heartbeat` s, to spread many nodes)."""
        self._schedule(first_heartbeat)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        self.workers.stop()

    def _schedule(self, delay: float) -> None:
        if self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._beat)

    def _beat(self) -> None:
        self._timer = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        try:
            if not self.heartbeat_stopped:
                await self.renew_lease()
                await self.report_status()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the API is away: try again next period
            log.debug("node %s heartbeat: %s", self.name, e)
        finally:
            self._task = None
            self._schedule(self.lease_period)

    # -- writes --------------------------------------------------------------------------

    async def renew_lease(self) -> None:
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": format_micro_time(time.time())}
        if self._lease is not None:
            lease = {**self._lease, "spec": {**self._lease.get("spec", {}), **spec}}
            try:
                self._lease = await self.client.update(self._leases, lease)
                return
            except errors.ApiError as e:
                if e.code not in (404, 409):
                    raise
                self._lease = None
        try:
            current = await self.client.get(self._leases, self.name, LEASE_NAMESPACE)
        except errors.ApiError as e:
            if e.code != 404:
                raise
            meta: Obj = {"name": self.name, "namespace": LEASE_NAMESPACE}
            if self.node is not None:  # owned by the Node: deleting it deletes the Lease
                meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node",
                                            "name": self.name,
                                            "uid": self.node["metadata"]["uid"]}]
            self._lease = await self.client.create(self._leases, {"metadata": meta,
                                                                  "spec": spec})
            return
        current["spec"] = {**current.get("spec", {}), **spec}
        self._lease = await self.client.update(self._leases, current)

    async def report_status(self) -> None:
        """Write the node's spec.podCIDR/labels if missing and its status if changed."""
        node = self.node
        if node is None:
            node = self.node = await self.client.get(self._nodes, self.name)
        meta, spec = node["metadata"], node.get("spec") or {}
        missing = {k: v for k, v in node_labels(self.name).items()
                   if k not in (meta.get("labels") or {})}
        if missing or spec.get("podCIDR") != self.pod_cidr:
            patch: Obj = {"metadata": {"labels": missing}} if missing else {}
            if not spec.get("podCIDR"):
                patch["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
            if patch:
                node = self.node = await self.client.patch(self._nodes, self.name, patch)
        wall = time.time()
        old = node.get("status") or {}
        status = node_status(self.name, capacity=self.capacity, host_ip=self.host_ip,
                             runtime=self.workers.ctx.runtime.name, old=old, now=wall,
                             os_image=self.os_image, kubelet_port=self.kubelet_port)
        current = {k: old.get(k) for k in status}
        due = wall - self._last_report >= self.status_report_period
        if not due and _without_heartbeats(status) == _without_heartbeats(current):
            return
        self.node = await self.client.patch(self._nodes, self.name, {"status": status},
                                            subresource="status")
        self._last_report = wall
