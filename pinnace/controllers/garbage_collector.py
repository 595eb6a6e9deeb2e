"""Garbage collector: cascading deletion through ownerReferences.

Watches every kind the registry lists and watches (events excepted, as in
Kubernetes), and keeps a graph: uid -> node (the object's cache entry, its
owners' uids, its dependents' uids). The work queue holds uids.

For an object that is not being deleted (Kubernetes' attemptToDeleteItem):
owners are classified as solid (exist), dangling (gone: checked with a live
GET when the graph has not seen them, so a lagging cache never deletes
anything) or waiting (being deleted in the foreground). With a solid owner,
the dangling and waiting references are removed; with none, the object is
deleted — in the foreground when an owner waits on it and it has dependents
of its own, in the background otherwise.

For an object being deleted:
- finalizer `orphan`: its ownerReference is removed from every dependent, then
  the finalizer.
- finalizer `foregroundDeletion`: dependents that block it (blockOwnerDeletion)
  are deleted first (in the foreground, recursively); when none is left the
  finalizer is removed and the API server completes the deletion.

Triggers: an object's change queues itself; its deletion (or its starting to
be deleted) queues its dependents and owners.

Custom resources: the built-in kinds are watched through the shared informers; the
kinds the server serves beyond them (CustomResourceDefinitions) are learnt from
discovery (`client/discovery.py`) every few seconds, and at once when an owner
reference names a kind not known yet, and each gets an informer of the collector's
own, stopped when its kind is no longer served. So a custom object owns, and is owned,
like any other: deleting it cascades to its dependents in the background or the
foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from pinnace.api import errors
from pinnace.api.kinds import REGISTRY, ResourceType
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.discovery import discover_kinds
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import Informer
from pinnace.controllers.base import Controller, delete_if_same

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
_IGNORED = {("", "Event"), ("events.k8s.io", "Event")}
# how often the served kinds are read again (Kubernetes' collector: 30 s); an owner of
# an unknown kind makes it read them at once
_DISCOVERY_PERIOD = 5.0


@dataclass
class _Node:
    uid: str
    rt: ResourceType
    obj: Obj
    owners: set[str] = field(default_factory=set)


def _followed(rt: ResourceType) -> bool:
    return "list" in rt.verbs and "watch" in rt.verbs and "delete" in rt.verbs \
        and "patch" in rt.verbs and (rt.group, rt.kind) not in _IGNORED


def watched_kinds() -> list[ResourceType]:
    """The built-in kinds the collector follows: everything listable and watchable, but
    events."""
    return [rt for rt in REGISTRY if _followed(rt)]


class GarbageCollector(Controller):
    name = "garbage-collector"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.nodes: dict[str, _Node] = {}
        # owner uid -> dependent uids; kept apart from nodes: owners may be unseen yet
        self.dependents: dict[str, set[str]] = {}
        for rt in watched_kinds():
            self._handle(factory.informer(rt.api_version, rt.kind), rt)
        # served kinds beyond the built-in ones: (apiVersion, kind) -> type, informer task
        self.custom: dict[tuple[str, str], tuple[ResourceType, asyncio.Task[None]]] = {}
        self._discovery_lock = asyncio.Lock()
        self.add_loop(self._follow_discovery)

    def _handle(self, inf: Informer, rt: ResourceType) -> None:
        inf.add_handler(on_add=lambda o: self._observe(rt, o),
                        on_update=lambda _old, new: self._observe(rt, new),
                        on_delete=lambda o: self._forget(o))

    # -- kinds learnt from discovery --------------------------------------------------------

    async def _follow_discovery(self) -> None:
        try:
            while True:
                try:
                    await self.discover()
                except Exception as e:  # the server away for a moment: look again later
                    log.warning("garbage-collector: discovery failed: %s", e)
                await asyncio.sleep(_DISCOVERY_PERIOD)
        finally:
            for _, task in self.custom.values():
                task.cancel()
            for _, task in self.custom.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.custom.clear()

    async def discover(self) -> None:
        """Follow the kinds the server serves now beyond the built-in ones."""
        async with self._discovery_lock:
            served = {(rt.api_version, rt.kind): rt for rt in await discover_kinds(self.client)
                      if _followed(rt)}
            for key in [k for k in self.custom if k not in served]:
                _, task = self.custom.pop(key)
                task.cancel()  # its objects were deleted with their definition
            for key, rt in served.items():
                if key not in self.custom:
                    inf = Informer(self.client, rt)
                    self._handle(inf, rt)
                    self.custom[key] = (rt, asyncio.create_task(
                        inf.run(), name=f"garbage-collector informer {rt.plural}.{rt.group}"))

    # -- the graph ------------------------------------------------------------------------

    def _observe(self, rt: ResourceType, obj: Obj) -> None:
        m = obj["metadata"]
        uid = m["uid"]
        node = self.nodes.get(uid)
        was_deleting = bool(node and node.obj["metadata"].get("deletionTimestamp"))
        owners = {r["uid"] for r in m.get("ownerReferences") or [] if r.get("uid")}
        if node is None:
            node = self.nodes[uid] = _Node(uid, rt, obj)
        node.obj = obj
        for gone in node.owners - owners:
            self.dependents.get(gone, set()).discard(uid)
        for owner in owners:
            self.dependents.setdefault(owner, set()).add(uid)
        node.owners = owners
        deleting = bool(m.get("deletionTimestamp"))
        if owners or (deleting and {ORPHAN, FOREGROUND} & set(m.get("finalizers") or [])):
            self.queue.add(uid)
        if deleting and not was_deleting:
            for dep in self.dependents.get(uid, ()):
                self.queue.add(dep)

    def _forget(self, obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        node = self.nodes.pop(uid, None)
        if node is None:
            return
        for owner in node.owners:
            deps = self.dependents.get(owner)
            if deps is not None:
                deps.discard(uid)
                if not deps and owner not in self.nodes:
                    del self.dependents[owner]
            self.queue.add(owner)  # a foreground owner may be waiting for this one
        for dep in self.dependents.get(uid, ()):
            self.queue.add(dep)
        if not self.dependents.get(uid):
            self.dependents.pop(uid, None)

    def _dependents_of(self, uid: str) -> list[_Node]:
        return [self.nodes[d] for d in self.dependents.get(uid, ()) if d in self.nodes]

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        m = node.obj["metadata"]
        if m.get("deletionTimestamp"):
            finalizers = m.get("finalizers") or []
            if ORPHAN in finalizers:
                await self._orphan_dependents(node)
            elif FOREGROUND in finalizers:
                await self._delete_dependents_first(node)
            return
        if m.get("ownerReferences"):
            await self._check_owners(node)

    async def _check_owners(self, node: _Node) -> None:
        m = node.obj["metadata"]
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        for ref in m.get("ownerReferences") or []:
            state = await self._owner_state(ref, m.get("namespace"))
            {"solid": solid, "dangling": dangling, "waiting": waiting}[state].append(ref)
        if solid:
            if dangling or waiting:
                drop = {r["uid"] for r in dangling + waiting}
                await self._patch_owner_refs(node, [r for r in m["ownerReferences"]
                                                    if r["uid"] not in drop])
            return
        policy = "Foreground" if waiting and self._dependents_of(node.uid) else "Background"
        log.info("garbage-collector: deleting %s %s/%s (%s)", node.rt.kind,
                 m.get("namespace", ""), m["name"], policy)
        await self._delete(node, policy)

    async def _owner_state(self, ref: Obj, namespace: str | None) -> str:
        owner = self.nodes.get(ref.get("uid", ""))
        if owner is None:
            owner_obj = await self._live_owner(ref, namespace)
            if owner_obj is None:
                return "dangling"
            om = owner_obj["metadata"]
        else:
            om = owner.obj["metadata"]
        if om.get("deletionTimestamp") and FOREGROUND in (om.get("finalizers") or []):
            return "waiting"
        return "solid"

    async def _live_owner(self, ref: Obj, namespace: str | None
                          ) -> Obj | None:
        rt = await self._kind_of(ref)
        if rt is None:
            # an owner of a kind this server does not serve cannot be checked: keep it
            return {"metadata": {"uid": ref.get("uid")}}
        if rt.namespaced and not namespace:
            return None  # a cluster-scoped dependent cannot have a namespaced owner
        try:
            obj = await self.client.get(rt, ref["name"], namespace if rt.namespaced else None)
        except errors.ApiError as e:
            if e.code == 404:
                return None
            raise
        return obj if obj["metadata"].get("uid") == ref.get("uid") else None

    async def _kind_of(self, ref: Obj) -> ResourceType | None:
        key = (ref.get("apiVersion", ""), ref.get("kind", ""))
        rt = REGISTRY.by_api_version(*key)
        if rt is None and key not in self.custom:
            await self.discover()  # a kind defined since the last look?
        if rt is None and key in self.custom:
            rt = self.custom[key][0]
        return rt

    async def _orphan_dependents(self, owner: _Node) -> None:
        for dep in self._dependents_of(owner.uid):
            refs = dep.obj["metadata"].get("ownerReferences") or []
            await self._patch_owner_refs(dep, [r for r in refs if r.get("uid") != owner.uid])
        await self._remove_finalizer(owner, ORPHAN)

    async def _delete_dependents_first(self, owner: _Node) -> None:
        blocking = []
        for dep in self._dependents_of(owner.uid):
            ref = next((r for r in dep.obj["metadata"].get("ownerReferences") or []
                        if r.get("uid") == owner.uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking.append(dep)
            elif not dep.obj["metadata"].get("deletionTimestamp"):
                self.queue.add(dep.uid)  # non-blocking ones go in the background
        if not blocking:
            await self._remove_finalizer(owner, FOREGROUND)
            return
        for dep in blocking:
            if not dep.obj["metadata"].get("deletionTimestamp"):
                await self._delete(dep, "Foreground")
        # the owner is queued again as each dependent disappears

    # -- writes ---------------------------------------------------------------------------

    async def _delete(self, node: _Node, policy: str) -> None:
        await delete_if_same(self.client, node.rt, node.obj, propagation_policy=policy)

    async def _patch_owner_refs(self, node: _Node, refs: list[Obj]) -> None:
        m = node.obj["metadata"]
        # resourceVersion makes it a compare-and-swap: a conflict retries from the cache
        await self._patch(node, {"metadata": {"ownerReferences": refs or None,
                                              "resourceVersion": m["resourceVersion"]}})

    async def _remove_finalizer(self, node: _Node, finalizer: str) -> None:
        m = node.obj["metadata"]
        rest = [f for f in m.get("finalizers") or [] if f != finalizer]
        await self._patch(node, {"metadata": {"finalizers": rest or None,
                                              "resourceVersion": m["resourceVersion"]}})

    async def _patch(self, node: _Node, patch: Obj) -> None:
        m = node.obj["metadata"]
        try:
            await self.client.patch(node.rt, m["name"], patch, namespace=m.get("namespace"))
        except errors.ApiError as e:
            if e.code == 404:
                return
            raise
