"""The Endpoints controller: the legacy core/v1 Endpoints of every Service with a
selector (Kubernetes' pkg/controller/endpoint) — what `kubectl describe svc` prints
under "Endpoints:" and what older clients still read.

Watches Services and Pods (and Endpoints deletions, to write them again).

`reconcile(namespace/name)` of a Service:
- the Service is gone: its Endpoints (same name) is deleted. Endpoints carry no
  ownerReference in Kubernetes, so the garbage collector would never collect them:
  this controller does. Once started it also looks at every Endpoints object once
  and deletes those left without a Service (Kubernetes' checkLeftoverEndpoints;
  leader-election records are spared).
- ExternalName, or no selector: the Endpoints are the user's; left alone.
- otherwise `desired_subsets` (pure): one address per selected pod with an IP, not
  terminal and — unless `publishNotReadyAddresses` — not terminating; under
  `addresses` when the pod is Ready (or publishNotReadyAddresses), else under
  `notReadyAddresses`; addresses with the same resolved ports share a subset. More
  than 1000 addresses are truncated, ready ones kept first, and the object says so
  (annotation `endpoints.kubernetes.io/over-capacity: truncated`).
- labels: the Service's, plus `endpointslice.kubernetes.io/skip-mirror: "true"` (the
  EndpointSlice controller writes this Service's slices; nothing is to mirror them)
  and `service.kubernetes.io/headless` for a headless Service. Written only when the
  subsets, labels or annotation changed.
"""

from __future__ import annotations

import copy
import logging

from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.controllers.base import Controller, delete_if_same
from pinnace.controllers.endpointslice import (
    HEADLESS_LABEL,
    endpoint_ports,
    enqueue_services_selecting,
    is_pod_endpoint,
    pod_fields,
    ports_key,
    service_selector,
)
from pinnace.controllers.pod_template import is_pod_ready

log = logging.getLogger(__name__)

COMPONENT = "endpoint-controller"
MAX_CAPACITY = 1000  # addresses in one Endpoints object, as Kubernetes
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


# -- the desired state (pure) ------------------------------------------------------------

def desired_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    """The Endpoints subsets of the Service's selected pods (Kubernetes' repacked form:
    one subset per distinct set of ports, addresses sorted by IP)."""
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    headless = spec.get("clusterIP") == "None"
    groups: dict[tuple, Obj] = {}
    for pod in pods:
        if not is_pod_endpoint(pod, include_terminating=publish):
            continue
        ports = endpoint_ports(service, pod)
        if not ports and not (headless and not spec.get("ports")):
            continue  # none of the Service's ports resolves for this pod
        address: Obj = {"ip": pod["status"]["podIP"], **pod_fields(service, pod)}
        key = ports_key(ports)
        subset = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [],
                                         "ports": sorted(ports, key=_port_order)})
        ready = publish or is_pod_ready(pod)
        subset["addresses" if ready else "notReadyAddresses"].append(address)
    subsets = []
    for key in sorted(groups):
        subset = groups[key]
        for field in ("addresses", "notReadyAddresses"):
            subset[field].sort(key=lambda a: (a["ip"], a["targetRef"]["uid"]))
            if not subset[field]:
                del subset[field]
        if not subset["ports"]:
            del subset["ports"]
        subsets.append(subset)
    return subsets


def _port_order(port: Obj) -> tuple:
    return (port.get("name") or "", port.get("protocol") or "", port.get("port") or 0)


def truncate(subsets: list[Obj], capacity: int = MAX_CAPACITY) -> bool:
    """Keep at most `capacity` addresses, ready ones first (in place); True if any went."""
    total = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or [])
                for s in subsets)
    if total <= capacity:
        return False
    room = capacity
    for field in ("addresses", "notReadyAddresses"):
        for s in subsets:
            kept = (s.get(field) or [])[:room]
            room -= len(kept)
            if kept:
                s[field] = kept
            else:
                s.pop(field, None)
    subsets[:] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


def endpoints_labels(service: Obj) -> dict[str, str]:
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items()
              if k != HEADLESS_LABEL}
    labels[SKIP_MIRROR_LABEL] = "true"
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def endpoints_object(service: Obj, pods: list[Obj], current: Obj | None) -> Obj | None:
    """The Endpoints object to write for the Service (`current` updated, or a new one),
    or None when `current` is already right."""
    subsets = desired_subsets(service, pods)
    truncated = truncate(subsets)
    labels = endpoints_labels(service)
    new = copy.deepcopy(current) if current is not None else {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": service["metadata"]["name"],
                     "namespace": service["metadata"]["namespace"]}}
    annotations = dict(new["metadata"].get("annotations") or {})
    if truncated:
        annotations[OVER_CAPACITY] = "truncated"
    else:
        annotations.pop(OVER_CAPACITY, None)
    if current is not None and (current.get("subsets") or []) == subsets and \
            (current["metadata"].get("labels") or {}) == labels and \
            (current["metadata"].get("annotations") or {}) == annotations:
        return None
    new["metadata"]["labels"] = labels
    if annotations:
        new["metadata"]["annotations"] = annotations
    else:
        new["metadata"].pop("annotations", None)
    new["subsets"] = subsets
    return new


# -- the controller ----------------------------------------------------------------------

class EndpointsController(Controller):
    name = "endpoints"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.services = self.watch("v1", "Service")
        self.pods = factory.informer("v1", "Pod")
        self.endpoints = factory.informer("v1", "Endpoints")
        self.endpoints_rt = client.resource("v1", "Endpoints")
        self.pods.add_handler(on_add=lambda p: self._pods_changed(p),
                              on_update=self._pods_changed,
                              on_delete=lambda p: self._pods_changed(p))
        self.endpoints.add_handler(on_delete=self.enqueue)
        self.add_loop(self._check_leftover_endpoints)

    def _pods_changed(self, *pods: Obj) -> None:
        enqueue_services_selecting(self.queue.add, self.services, pods)

    async def _check_leftover_endpoints(self) -> None:
        """Once, at start: Endpoints whose Service went while no controller ran."""
        for ep in self.endpoints.list():
            if LEADER_ANNOTATION not in (ep["metadata"].get("annotations") or {}):
                self.enqueue(ep)

    async def reconcile(self, key: str) -> None:
        current = self.endpoints.get(key)
        service = self.services.get(key)
        if service is None:
            if current is not None and \
                    LEADER_ANNOTATION not in (current["metadata"].get("annotations") or {}):
                await delete_if_same(self.client, self.endpoints_rt, current)
            return
        selector = service_selector(service)
        if selector is None:
            return
        pods = [p for p in self.pods.list(service["metadata"]["namespace"])
                if selector.matches(p["metadata"].get("labels") or {})]
        new = endpoints_object(service, pods, current)
        if new is None:
            return
        try:
            if current is None:
                await self.client.create(self.endpoints_rt, new, service["metadata"]["namespace"])
            else:
                await self.client.update(self.endpoints_rt, new)
        except ApiError as e:
            if e.code == 403 and current is None and "terminat" in str(e).lower():
                return  # the namespace is going: creations will keep failing
            if e.code == 409 and current is None:
                self.queue.add_after(key_of(new), 0.2)  # the cache has not seen it yet
                return
            if e.code != 409:  # a conflict is our cache lagging, not news for the user
                verb = "create" if current is None else "update"
                await record_event(self.client, service, component=COMPONENT, type_="Warning",
                                   reason=f"FailedTo{verb.capitalize()}Endpoint",
                                   message=f"Failed to {verb} endpoint {key}: {e}")
            raise  # retried with backoff
