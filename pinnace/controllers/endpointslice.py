"""The EndpointSlice controller: the pods behind every Service with a selector, as
discovery.k8s.io/v1 EndpointSlices (Kubernetes' pkg/controller/endpointslice).

Watches Services, Pods and EndpointSlices; owns EndpointSlices (ownerReference to
the Service, controller: true; the garbage collector deletes them with it).

`reconcile(namespace/name)` of a Service:
1. no Service, an ExternalName one, or one without a selector: nothing to do (a
   selector-less Service's slices are the user's; Kubernetes' mirroring controller,
   which copies its Endpoints into slices, is not part of pinnace yet).
2. the endpoints: one per pod its selector matches that has an IP and is not
   terminal (Succeeded/Failed), conditions `ready` (Ready and not terminating, or
   `publishNotReadyAddresses`), `serving` (Ready, even while terminating; or
   `publishNotReadyAddresses`, as in Kubernetes),
   `terminating` (deletionTimestamp), with nodeName, targetRef and hostname (when
   the pod's spec.subdomain is the Service's name).
3. the ports of an endpoint: the Service's ports with targetPort resolved for that
   pod (a named targetPort from its containers' ports); pods whose ports resolve
   alike share slices, pods resolving differently go to different slices.
4. `plan_slices` (pure) compares the desired endpoints with the existing slices:
   endpoints stay in the slice they are in (updated in place when they changed),
   gone ones are removed, new ones fill slices with room (at most 100 endpoints
   each) before new slices are created; slices left empty are deleted, but a
   Service without endpoints keeps one empty slice (Kubernetes' placeholder).
   Unchanged slices are not written.

Every write is tracked until the informer shows it (Kubernetes' EndpointSliceTracker):
a reconcile running on a cache that has not seen our last create, update or delete
waits for it, rather than creating a slice again or placing an endpoint twice.
resourceVersions are the store's one global revision, so "seen" is a comparison.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pinnace.api.errors import ApiError
from pinnace.api.selectors import LabelSelector
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import Informer, key_of
from pinnace.controllers.base import Controller, delete_if_same
from pinnace.controllers.pod_template import (
    controller_of,
    controller_ref,
    is_pod_ready,
    is_pod_terminal,
)

log = logging.getLogger(__name__)

MAX_ENDPOINTS_PER_SLICE = 100  # --max-endpoints-per-slice, Kubernetes' default
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ADDRESS_TYPE = "IPv4"

COMPONENT = "endpointslice-controller"
STALE_CACHE_PATIENCE = 30.0  # seconds to wait for the informer to show our writes
# the slice informer's index: `namespace/service` of the slices this controller manages
SERVICE_INDEX = "endpointslice-controller/service"

PortsKey = tuple[tuple[str, str, int, str], ...]  # (name, protocol, port, appProtocol)


# -- what the Endpoints controller shares -----------------------------------------------

def service_selector(service: Obj) -> LabelSelector | None:
    """The Service's selector, or None when the controllers leave it alone (no selector,
    or ExternalName): its endpoints are the user's."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName" or not spec.get("selector"):
        return None
    try:
        return LabelSelector.from_dict({"matchLabels": spec["selector"]})
    except ApiError:
        return LabelSelector.select_nothing()


def is_pod_endpoint(pod: Obj, *, include_terminating: bool = True) -> bool:
    """Kubernetes' ShouldPodBeInEndpoints: the pod has an IP and is not finished."""
    if not (pod.get("status") or {}).get("podIP") or is_pod_terminal(pod):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The pod's port for a Service port (Kubernetes' FindPort): a number as is, a name
    looked up among the ports of its containers (and sidecars) with the same protocol."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or []), *sidecars]:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    """The Service's ports as this pod serves them; a port the pod cannot resolve is left out."""
    ports: list[Obj] = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "protocol": sp.get("protocol") or "TCP",
                     "port": number}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def pod_hostname(service: Obj, pod: Obj) -> str | None:
    """Kubernetes' ShouldSetHostname: a pod with spec.hostname in the Service's subdomain."""
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        return spec["hostname"]
    return None


def target_ref(pod: Obj) -> Obj:
    m = pod["metadata"]
    return {"kind": "Pod", "namespace": m.get("namespace"), "name": m["name"], "uid": m["uid"]}


def pod_fields(service: Obj, pod: Obj) -> Obj:
    """What an endpoint (EndpointSlice) and an address (Endpoints) both say of their pod:
    hostname (when set for this Service), nodeName, targetRef."""
    fields: Obj = {}
    hostname = pod_hostname(service, pod)
    if hostname:
        fields["hostname"] = hostname
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        fields["nodeName"] = node
    fields["targetRef"] = target_ref(pod)
    return fields


def enqueue_services_selecting(add: Callable[[str], None], services: Informer,
                               pods: Iterable[Obj]) -> None:
    """Queue every Service (with a selector) of the pods' namespaces selecting one of them."""
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        for service in services.list(pod["metadata"].get("namespace")):
            selector = service_selector(service)
            if selector is not None and selector.matches(labels):
                add(key_of(service))


# -- the desired state (pure) ------------------------------------------------------------

def desired_endpoints(service: Obj, pods: list[Obj]) -> dict[PortsKey, list[Obj]]:
    """The endpoints of the Service's selected pods, grouped by their resolved ports."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[PortsKey, list[Obj]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if not is_pod_endpoint(pod):
            continue
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        ready = is_pod_ready(pod)
        endpoint: Obj = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {"ready": publish or (ready and not terminating),
                           "serving": publish or ready, "terminating": terminating},
            **pod_fields(service, pod),
        }
        groups.setdefault(ports_key(endpoint_ports(service, pod)), []).append(endpoint)
    return groups


def ports_key(ports: list[Obj]) -> PortsKey:
    return tuple(sorted((p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0),
                         p.get("appProtocol") or "") for p in ports))


def ports_of(key: PortsKey) -> list[Obj]:
    ports: list[Obj] = []
    for name, protocol, number, app in key:
        port: Obj = {"name": name, "protocol": protocol, "port": number}
        if app:
            port["appProtocol"] = app
        ports.append(port)
    return ports


def slice_labels(service: Obj) -> dict[str, str]:
    """A slice's labels, all of them: the Service's (but the reserved ones), the service
    name, the manager, and the headless mark of a Service without a ClusterIP."""
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)}
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def new_slice(service: Obj, key: PortsKey, endpoints: list[Obj]) -> Obj:
    name = service["metadata"]["name"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{name}-", "namespace": service["metadata"]["namespace"],
                         "labels": slice_labels(service),
                         "ownerReferences": [controller_ref(service)]},
            "addressType": ADDRESS_TYPE, "ports": ports_of(key), "endpoints": endpoints}


def _endpoint_id(endpoint: Obj) -> str:
    ref = endpoint.get("targetRef") or {}
    return ref.get("uid") or ",".join(endpoint.get("addresses") or [])


@dataclass
class SlicePlan:
    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def plan_slices(service: Obj, pods: list[Obj], existing: list[Obj], *,
                max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> SlicePlan:
    """What to create, update (in place) and delete so that the Service's slices hold the
    endpoints of `pods`; `existing` are the slices labelled as this controller's for it
    (one owned by another object, say an earlier Service of that name, is deleted)."""
    plan = SlicePlan()
    desired = desired_endpoints(service, pods)
    labels = slice_labels(service)
    owner = [controller_ref(service)]
    uid = service["metadata"]["uid"]
    by_key: dict[PortsKey, list[Obj]] = {}
    for s in sorted(existing, key=lambda s: s["metadata"].get("name", "")):
        ref = controller_of(s, "Service")
        if ref is None or ref.get("uid") != uid or s.get("addressType") != ADDRESS_TYPE or \
                ports_key(s.get("ports") or []) not in desired:
            plan.delete.append(s)
        else:
            by_key.setdefault(ports_key(s.get("ports") or []), []).append(s)
    for key, endpoints in desired.items():
        wanted = {_endpoint_id(e): e for e in endpoints}
        slices = []
        for s in by_key.get(key, []):
            new = copy.deepcopy(s)
            new["endpoints"] = [wanted.pop(_endpoint_id(e)) for e in s.get("endpoints") or []
                                if _endpoint_id(e) in wanted]
            slices.append((s, new))
        # new endpoints fill the slices already changing first, then any with room
        slices.sort(key=lambda pair: pair[0].get("endpoints") == pair[1]["endpoints"])
        rest = list(wanted.values())
        for _, new in slices:
            room = max_per_slice - len(new["endpoints"])
            if room > 0 and rest:
                new["endpoints"] += rest[:room]
                rest = rest[room:]
        for i in range(0, len(rest), max_per_slice):
            plan.create.append(new_slice(service, key, rest[i:i + max_per_slice]))
        for old, new in slices:
            if not new["endpoints"]:
                plan.delete.append(old)
            else:
                new["metadata"]["labels"] = labels
                new["metadata"]["ownerReferences"] = owner
                if _changed(old, new):
                    plan.update.append(new)
    if not desired:
        plan.create.append(new_slice(service, (), []))  # the placeholder
    _reuse_deleted(plan, uid)
    return plan


def _reuse_deleted(plan: SlicePlan, uid: str) -> None:
    """A slice to create and one of the Service's own to delete make one update in place
    (the placeholder kept, a Service's new ports written over the old slice) rather
    than churn."""
    reusable = [s for s in plan.delete if s.get("addressType") == ADDRESS_TYPE and
                (controller_of(s, "Service") or {}).get("uid") == uid]
    while plan.create and reusable:
        want, old = plan.create.pop(), reusable.pop(0)
        plan.delete.remove(old)
        new = copy.deepcopy(old)
        new["ports"], new["endpoints"] = want["ports"], want["endpoints"]
        new["metadata"]["labels"] = want["metadata"]["labels"]
        new["metadata"]["ownerReferences"] = want["metadata"]["ownerReferences"]
        if _changed(old, new):
            plan.update.append(new)


def _changed(old: Obj, new: Obj) -> bool:
    return ((old.get("endpoints") or []) != new["endpoints"]
            or (old.get("ports") or []) != (new.get("ports") or [])
            or (old["metadata"].get("labels") or {}) != new["metadata"]["labels"]
            or (old["metadata"].get("ownerReferences") or []) != new["metadata"]["ownerReferences"])


# -- the controller ----------------------------------------------------------------------

def managed_service_key(s: Obj) -> list[str]:
    """`namespace/service` of a slice this controller manages, for the informer index."""
    labels = s["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not labels.get(SERVICE_NAME_LABEL):
        return []
    return [f"{s['metadata'].get('namespace')}/{labels[SERVICE_NAME_LABEL]}"]


class EndpointSliceController(Controller):
    name = "endpointslice"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.services = self.watch("v1", "Service", on_delete=self._service_deleted)
        self.pods = factory.informer("v1", "Pod")
        self.slices = factory.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.slices.add_index(SERVICE_INDEX, managed_service_key)
        self.slice_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
        # service key -> {slice name: resourceVersion written, or None when deleted}
        # for the writes the informer has not shown yet
        self._unseen: dict[str, dict[str, int | None]] = {}
        self._waiting_since: dict[str, float] = {}  # service key -> when it began to wait
        self.pods.add_handler(on_add=lambda p: self._pods_changed(p),
                              on_update=self._pods_changed,
                              on_delete=lambda p: self._pods_changed(p))
        self.slices.add_handler(on_add=self._slice_changed, on_update=self._slice_changed,
                                on_delete=self._slice_deleted)

    # -- event handlers: they only queue keys ----------------------------------------------

    def _service_deleted(self, service: Obj) -> None:
        self._forget(key_of(service))

    def _pods_changed(self, *pods: Obj) -> None:
        enqueue_services_selecting(self.queue.add, self.services, pods)

    def _slice_changed(self, *slices: Obj) -> None:
        """A slice appeared, changed (its service-name label too: old and new are
        queued) or went: its Service is looked at again."""
        for s in slices:
            for key in managed_service_key(s):
                self._observed(key, s)
                self.queue.add(key)

    def _slice_deleted(self, s: Obj) -> None:
        for key in managed_service_key(s):
            self._observed(key, None, s["metadata"]["name"])
            self.queue.add(key)

    def _observed(self, key: str, s: Obj | None, name: str = "") -> None:
        """The informer shows slice `name` as `s` (None: gone): a write of ours it has
        caught up with is no longer waited for."""
        unseen = self._unseen.get(key)
        name = name or (s or {}).get("metadata", {}).get("name", "")
        if not unseen or name not in unseen:
            return
        expected = unseen[name]
        if s is None:
            caught_up = True  # gone: whatever we wrote, the cache is past it
        elif expected is None:
            caught_up = bool(s["metadata"].get("deletionTimestamp"))
        else:
            caught_up = _revision(s) >= expected
        if caught_up:
            del unseen[name]
            if not unseen:
                self._forget(key)

    def _forget(self, key: str) -> None:
        self._unseen.pop(key, None)
        self._waiting_since.pop(key, None)

    def _written(self, key: str, ns: str, name: str, revision: int | None) -> None:
        """We wrote slice `name` (revision None: deleted it): wait for the informer to
        show it, unless it does already (its event may come before our response)."""
        cached = self.slices.get(f"{ns}/{name}")
        if cached is None and revision is None:
            return  # deleted, and gone from the cache
        self._unseen.setdefault(key, {})[name] = revision
        self._waiting_since.setdefault(key, time.monotonic())
        if cached is not None:
            self._observed(key, cached, name)

    # -- reconcile -------------------------------------------------------------------------

    def managed_slices(self, service: Obj) -> list[Obj]:
        """The slices labelled as this controller's for the Service, but those already
        being deleted (a finalizer holding one must not stall the Service)."""
        return [s for s in self.slices.by_index(SERVICE_INDEX, key_of(service))
                if not s["metadata"].get("deletionTimestamp")]

    async def reconcile(self, key: str) -> None:
        service = self.services.get(key)
        if service is None:
            self._forget(key)
            return  # its slices go with it: the garbage collector follows the ownerReference
        selector = service_selector(service)
        if selector is None or service["metadata"].get("deletionTimestamp"):
            return
        if self._unseen.get(key):  # the cache has not seen all our writes yet
            if time.monotonic() - self._waiting_since.get(key, 0.0) < STALE_CACHE_PATIENCE:
                self.queue.add_after(key, 0.5)  # the slice's event will bring us back sooner
                return
            log.warning("endpointslice: the cache never showed our writes for %s: %s",
                        key, sorted(self._unseen[key]))
            self._forget(key)
        pods = [p for p in self.pods.list(service["metadata"]["namespace"])
                if selector.matches(p["metadata"].get("labels") or {})]
        plan = plan_slices(service, pods, self.managed_slices(service))
        if plan.empty():
            return
        try:
            await self._write(key, service, plan)
        except ApiError as e:
            if e.code != 409:  # a conflict is our cache lagging, not news for the user
                await record_event(self.client, service, component=COMPONENT, type_="Warning",
                                   reason="FailedToUpdateEndpointSlices",
                                   message=f"Error updating Endpoint Slices for Service "
                                           f"{key}: {e}")
            raise  # retried with backoff

    async def _write(self, key: str, service: Obj, plan: SlicePlan) -> None:
        # creations first, deletions last: the Service is never without its endpoints
        ns = service["metadata"]["namespace"]
        for s in plan.create:
            try:
                created = await self.client.create(self.slice_rt, s, ns)
            except ApiError as e:
                if e.code == 403 and "terminat" in str(e).lower():
                    return  # the namespace is going: nothing more will be created in it
                raise
            self._written(key, ns, created["metadata"]["name"], _revision(created))
        for s in plan.update:
            try:
                updated = await self.client.update(self.slice_rt, s)
            except ApiError as e:
                if e.code != 404:
                    raise
                continue
            self._written(key, ns, s["metadata"]["name"], _revision(updated))
        for s in plan.delete:
            await delete_if_same(self.client, self.slice_rt, s)
            self._written(key, ns, s["metadata"]["name"], None)


def _revision(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0
