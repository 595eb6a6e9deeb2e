"""The EndpointSlice mirroring controller: the Endpoints users write for a Service
without a selector, copied into EndpointSlices (Kubernetes'
pkg/controller/endpointslicemirroring), so that everything reading slices — the
service proxy, DNS — serves them too.

Watches Endpoints, Services and EndpointSlices; the key is `namespace/name` of the
Endpoints (= of its Service). Mirrored slices carry the labels
`kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
endpointslicemirroring-controller.k8s.io` and the Endpoints as their controller owner
(the garbage collector removes them with it).

`reconcile(key)`:
1. An Endpoints is mirrored when it exists, its Service exists and has no selector (a
   Service with one has the EndpointSlice controller's slices), and it is not marked
   `endpointslice.kubernetes.io/skip-mirror: "true"` (what the Endpoints controller
   and the API server put on theirs) nor a leader-election record. Otherwise its
   mirrored slices are deleted.
2. `desired_slices` (pure): every subset becomes endpoints of its address type with
   the subset's ports — `addresses` ready, `notReadyAddresses` not, hostname, nodeName
   and targetRef kept; at most 1000 addresses per subset (ready ones first, as
   Kubernetes mirrors), at most 100 endpoints per slice. The labels and annotations
   are the Endpoints' (but `kubectl apply`'s record and the trigger time).
3. Existing slices with the same address type and ports are updated in place, in name
   order; surplus ones are deleted, missing ones created. Unchanged slices are not
   written. Creations and deletions are expected until the informer shows them
   (`Expectations`), so a lagging cache never creates a slice twice.
"""

from __future__ import annotations

import copy
import ipaddress
import logging

from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers._expectations import Expectations
from pinnace.controllers.base import Controller, delete_if_same
from pinnace.controllers.endpoints import LEADER_ANNOTATION, SKIP_MIRROR_LABEL
from pinnace.controllers.endpointslice import (
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    PortsKey,
    ports_key,
    ports_of,
)
from pinnace.controllers.pod_template import controller_ref

log = logging.getLogger(__name__)

MIRRORED_BY = "endpointslicemirroring-controller.k8s.io"
MAX_PER_SUBSET = 1000  # --mirroring-max-endpoints-per-subset
MAX_PER_SLICE = 100
# the slice informer's index: `namespace/service` of the slices this controller mirrors
MIRROR_INDEX = "endpointslicemirroring-controller/endpoints"
_NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration",
               "endpoints.kubernetes.io/last-change-trigger-time")

SliceKey = tuple[str, PortsKey]  # (addressType, ports)


def should_mirror(endpoints: Obj | None, service: Obj | None) -> bool:
    if endpoints is None or service is None:
        return False
    if endpoints["metadata"].get("deletionTimestamp"):
        return False
    if (service.get("spec") or {}).get("selector"):
        return False
    labels = endpoints["metadata"].get("labels") or {}
    annotations = endpoints["metadata"].get("annotations") or {}
    return labels.get(SKIP_MIRROR_LABEL) != "true" and LEADER_ANNOTATION not in annotations


def _address_type(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None  # validation refuses these; a stored one is skipped, not mirrored


def _endpoint(address: Obj, ready: bool) -> Obj:
    ep: Obj = {"addresses": [address["ip"]], "conditions": {"ready": ready}}
    for key in ("hostname", "nodeName", "targetRef"):
        if address.get(key):
            ep[key] = address[key]
    return ep


def desired_endpoints(endpoints: Obj) -> dict[SliceKey, list[Obj]]:
    """The endpoints to mirror, grouped by address type and ports."""
    groups: dict[SliceKey, list[Obj]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = [{"name": p.get("name") or "", "protocol": p.get("protocol") or "TCP",
                  "port": p.get("port"), **({"appProtocol": p["appProtocol"]}
                                            if p.get("appProtocol") else {})}
                 for p in subset.get("ports") or []]
        key = ports_key(ports)
        room = MAX_PER_SUBSET
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in (subset.get(field) or [])[:room]:
                family = _address_type(address.get("ip") or "")
                if family is not None:
                    groups.setdefault((family, key), []).append(_endpoint(address, ready))
            room = max(room - len(subset.get(field) or []), 0)
    return groups


def slice_meta(endpoints: Obj) -> tuple[dict[str, str], dict[str, str]]:
    """A mirrored slice's labels and annotations."""
    m = endpoints["metadata"]
    labels = {k: v for k, v in (m.get("labels") or {}).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    labels[SERVICE_NAME_LABEL] = m["name"]
    labels[MANAGED_BY_LABEL] = MIRRORED_BY
    annotations = {k: v for k, v in (m.get("annotations") or {}).items() if k not in _NOT_COPIED}
    return labels, annotations


def desired_slices(endpoints: Obj) -> list[tuple[SliceKey, list[Obj]]]:
    """Each slice to have: its (address type, ports) and its endpoints."""
    out: list[tuple[SliceKey, list[Obj]]] = []
    for key, eps in sorted(desired_endpoints(endpoints).items()):
        for i in range(0, len(eps), MAX_PER_SLICE):
            out.append((key, eps[i:i + MAX_PER_SLICE]))
    return out


def _slice_key(s: Obj) -> SliceKey:
    return (s.get("addressType") or "", ports_key(s.get("ports") or []))


def plan(endpoints: Obj, existing: list[Obj]) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """(create, update, delete) to make `existing` the mirror of `endpoints`."""
    labels, annotations = slice_meta(endpoints)
    owner = [controller_ref(endpoints)]
    free: dict[SliceKey, list[Obj]] = {}
    for s in sorted(existing, key=lambda s: s["metadata"]["name"]):
        free.setdefault(_slice_key(s), []).append(s)
    create: list[Obj] = []
    update: list[Obj] = []
    for (family, ports), eps in desired_slices(endpoints):
        old = free.get((family, ports), []).pop(0) if free.get((family, ports)) else None
        new = copy.deepcopy(old) if old is not None else {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{endpoints['metadata']['name']}-",
                         "namespace": endpoints["metadata"]["namespace"]},
            "addressType": family}
        new["metadata"]["labels"] = labels
        if annotations:
            new["metadata"]["annotations"] = annotations
        else:
            new["metadata"].pop("annotations", None)
        new["metadata"]["ownerReferences"] = owner
        new["ports"] = ports_of(ports)
        new["endpoints"] = eps
        if old is None:
            create.append(new)
        elif new != old:
            update.append(new)
    delete = [s for rest in free.values() for s in rest]
    return create, update, delete


def mirrored_key(s: Obj) -> list[str]:
    labels = s["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MIRRORED_BY or not labels.get(SERVICE_NAME_LABEL):
        return []
    return [f"{s['metadata'].get('namespace')}/{labels[SERVICE_NAME_LABEL]}"]


class EndpointSliceMirroringController(Controller):
    name = "endpointslicemirroring"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.endpoints = self.watch("v1", "Endpoints", on_delete=self.enqueue)
        self.services = factory.informer("v1", "Service")
        self.services.add_handler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n),
                                  on_delete=self.enqueue)
        self.slices = factory.informer("discovery.k8s.io/v1", "EndpointSlice")
        self.slices.add_index(MIRROR_INDEX, mirrored_key)
        self.slices.add_handler(on_add=self._slice_added,
                                on_update=lambda _o, n: self._slice_changed(n),
                                on_delete=self._slice_deleted)
        self.slice_rt = client.resource("discovery.k8s.io/v1", "EndpointSlice")
        self.expectations = Expectations()

    def _slice_added(self, s: Obj) -> None:
        for key in mirrored_key(s):
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _slice_changed(self, s: Obj) -> None:
        for key in mirrored_key(s):
            if s["metadata"].get("deletionTimestamp"):
                self.expectations.deletion_observed(key, s["metadata"]["uid"])
            self.queue.add(key)

    def _slice_deleted(self, s: Obj) -> None:
        for key in mirrored_key(s):
            self.expectations.deletion_observed(key, s["metadata"]["uid"])
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        if not self.expectations.satisfied(key):
            return  # the informer's events for our writes bring the key back
        endpoints, service = self.endpoints.get(key), self.services.get(key)
        existing = [s for s in self.slices.by_index(MIRROR_INDEX, key)
                    if not s["metadata"].get("deletionTimestamp")]
        if should_mirror(endpoints, service):
            assert endpoints is not None
            create, update, delete = plan(endpoints, existing)
        else:
            create, update, delete = [], [], existing
        ns = key.partition("/")[0]
        self.expectations.expect_creations(key, len(create))
        for i, s in enumerate(create):
            try:
                await self.client.create(self.slice_rt, s, ns)
            except ApiError as e:
                self.expectations.creation_observed(key, len(create) - i)
                if e.code == 403 and "terminat" in str(e).lower():
                    return  # the namespace is going
                raise
        for s in update:
            try:
                await self.client.update(self.slice_rt, s)
            except ApiError as e:
                if e.code != 404:
                    raise  # a conflict: the cache lagged; retried
        self.expectations.expect_deletions(key, [s["metadata"]["uid"] for s in delete])
        for s in delete:
            try:
                gone = await delete_if_same(self.client, self.slice_rt, s)
            except ApiError:
                self.expectations.deletion_observed(key, s["metadata"]["uid"])
                raise
            if not gone:
                self.expectations.deletion_observed(key, s["metadata"]["uid"])
