"""Namespace controller: empties a terminating namespace, then finalizes it.

Watches Namespaces; the key is the namespace's name. A namespace with a
deletionTimestamp whose `spec.finalizers` still hold `kubernetes` has its
content deleted, kind by kind (every namespaced kind the registry lists and
deletes, and every established namespaced custom resource, straight from the API as
Kubernetes' namespaced-resources deleter does, not from caches). Objects left behind
(graceful pods, finalizers) requeue the namespace after a pause; once nothing is left,
`kubernetes` is removed through `PUT /api/v1/namespaces/<name>/finalize`. The API
server removes the namespace when both its spec.finalizers and metadata.finalizers are empty.

Conditions written on the namespace, as Kubernetes does:
NamespaceContentRemaining and NamespaceFinalizersRemaining.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pinnace.api import crd, errors
from pinnace.api.conditions import new_condition
from pinnace.api.kinds import REGISTRY, ResourceType
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller, delete_if_same

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
REQUEUE_SECONDS = 1.0


def namespace_active(ns: Obj | None) -> bool:
    """The namespace exists and is not terminating: controllers that put objects in every
    namespace (the default ServiceAccount, the root CA ConfigMap) leave a going one alone."""
    return ns is not None and not ns["metadata"].get("deletionTimestamp") and \
        (ns.get("status") or {}).get("phase") != "Terminating"


@dataclass
class _Remaining:
    count: int
    finalizers: set[str]


def _deletable_kinds() -> list[ResourceType]:
    return [rt for rt in REGISTRY
            if rt.namespaced and "list" in rt.verbs and "delete" in rt.verbs]


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 requeue_seconds: float = REQUEUE_SECONDS) -> None:
        super().__init__(client, factory)
        self.ns_rt = client.resource("v1", "Namespace")
        self.crd_rt = client.resource(f"{crd.GROUP}/v1", "CustomResourceDefinition")
        self.namespaces = self.watch("v1", "Namespace")
        self.requeue_seconds = requeue_seconds

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        remaining = await self._delete_content(key)
        if remaining:
            await self._set_conditions(ns, remaining)
            self.queue.add_after(key, self.requeue_seconds)
            return
        await self._finalize(key)

    async def _delete_content(self, namespace: str) -> dict[str, _Remaining]:
        """Delete everything in the namespace; returns what is still there, by resource:
        objects held by finalizers or a grace period."""
        kinds = _deletable_kinds() + await self._custom_kinds()
        for rt in kinds:
            for obj in await self._list(rt, namespace):
                m = obj["metadata"]
                if m.get("deletionTimestamp"):
                    continue
                await delete_if_same(self.client, rt, obj, propagation_policy="Background")
        # a second look: most deletes are immediate, only the held objects remain
        remaining: dict[str, _Remaining] = {}
        for rt in kinds:
            items = await self._list(rt, namespace)
            if items:
                resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
                remaining[resource] = _Remaining(
                    len(items), {f for o in items for f in o["metadata"].get("finalizers") or []})
        return remaining

    async def _custom_kinds(self) -> list[ResourceType]:
        """The namespaced custom resources served now (one version of each: they share
        their objects), found from their definitions through the API."""
        out = []
        for definition in (await self.client.list(self.crd_rt)).get("items") or []:
            conditions = (definition.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in conditions):
                continue
            served = crd.resource_types(definition)
            if served and served[0].namespaced:
                out.append(served[0])
        return out

    async def _list(self, rt: ResourceType, namespace: str) -> list[Obj]:
        try:
            return (await self.client.list(rt, namespace)).get("items") or []
        except errors.ApiError as e:
            if e.code == 404 and rt.custom is not None:
                return []  # its definition went meanwhile, and its objects with it
            raise

    async def _set_conditions(self, ns: Obj, remaining: dict[str, _Remaining]
                              ) -> None:
        counts = ", ".join(f"{res} has {r.count} resource instances"
                           for res, r in sorted(remaining.items()))
        finalizers = sorted({f for r in remaining.values() for f in r.finalizers})
        wanted = [_condition("NamespaceContentRemaining", True, "SomeResourcesRemain",
                             f"Some resources are remaining: {counts}"),
                  _condition("NamespaceFinalizersRemaining", bool(finalizers),
                             "SomeFinalizersRemain",
                             f"Some content in the namespace has finalizers remaining: "
                             f"{', '.join(finalizers)}")]
        status = ns.get("status") or {}
        old = {c["type"]: c for c in status.get("conditions") or []}
        if all(old.get(c["type"], {}).get("message") == c["message"] and
               old.get(c["type"], {}).get("status") == c["status"] for c in wanted):
            return
        conditions = [c for t, c in old.items() if t not in {w["type"] for w in wanted}]
        new = {**ns, "status": {**status, "conditions": conditions + wanted}}
        try:
            await self.client.update_status(self.ns_rt, new)
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _finalize(self, name: str) -> None:
        try:
            ns = await self.client.get(self.ns_rt, name)
        except errors.ApiError as e:
            if e.code == 404:
                return
            raise
        finalizers = (ns.get("spec") or {}).get("finalizers") or []
        if FINALIZER not in finalizers:
            return
        ns.setdefault("spec", {})["finalizers"] = [f for f in finalizers if f != FINALIZER]
        try:
            await self.client.update(self.ns_rt, ns, subresource="finalize")
        except errors.ApiError as e:
            if e.code != 404:
                raise  # a conflict retries with the current namespace


# what a namespace condition says once its content (or finalizer) is gone
_CLEARED = {"NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
            "NamespaceFinalizersRemaining": ("ContentHasNoFinalizers",
                                             "All content-preserving finalizers finished")}


def _condition(ctype: str, present: bool, reason: str, message: str) -> Obj:
    if not present:
        return new_condition(ctype, "False", *_CLEARED[ctype])
    return new_condition(ctype, "True", reason, message)
