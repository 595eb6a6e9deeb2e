"""What every controller shares: informers feeding work queues, workers, owner lookups.

A controller subclasses `Controller`, declares its informers in `__init__`
(through `self.factory`), turns events into keys with `self.enqueue`, and
implements `reconcile(key)`: read the current state from the informer caches,
write through `self.client`, raise to retry with backoff. `run()` waits for
the caches to sync, then runs the workers until cancelled.

One queue carries one kind of key. A controller that reconciles two kinds of
thing (the Job controller's Jobs and orphaned pods, the node lifecycle
controller's nodes and pods, as in Kubernetes) adds a second queue with its own
reconcile (`add_queue`); periodic sweeps run beside the workers (`add_loop`).
Both stop with the controller.

The ownership helpers are Kubernetes' ControllerRefManager: `owner_key` maps a
dependent to its controller's key, `claim` adopts matching orphans and releases
owned objects that stopped matching. Deletions carry a uid precondition, so an
object recreated under the same name is never deleted by mistake
(`delete_if_same`); workload controllers delete their pods under expectations
(`delete_expected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pinnace.api.errors import ApiError
from pinnace.api.kinds import ResourceType
from pinnace.api.selectors import LabelSelector
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import Informer, key_of
from pinnace.client.workqueue import Reconcile, WorkQueue, run_workers
from pinnace.controllers._expectations import Expectations
from pinnace.controllers.pod_template import controller_of, controller_ref

log = logging.getLogger(__name__)

# the pod informer's index by spec.nodeName, shared by every controller that asks


def owner_key(obj: Obj, kind: str) -> str | None:
    """`namespace/name` of obj's controller owner of the given kind, if any."""
    ref = controller_of(obj, kind)
    if ref is None:
        return None
    ns = obj["metadata"].get("namespace")
    return f"{ns}/{ref['name']}" if ns else ref["name"]


def selector_of(owner: Obj) -> LabelSelector:
    """The owner's `spec.selector`; an invalid one selects nothing (validation refuses
    them, but a stored object from an older writer must not stop the controller)."""
    try:
        return LabelSelector.from_dict((owner.get("spec") or {}).get("selector"))
    except ApiError:
        return LabelSelector.select_nothing()


class Controller:
    name = "controller"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        self.client = client
        self.factory = factory
        self.queue = WorkQueue()
        self._queues: list[tuple[str, WorkQueue, Reconcile, int]] = []
        self._loops: list[Callable[[], Awaitable[None]]] = []

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def watch(self, api_version: str, kind: str, *,
              on_delete: Callable[[Obj], None] | None = None) -> Informer:
        """The informer of the kind this controller reconciles: every add and update
        queues the object's key; `on_delete` is for bookkeeping (forget expectations)."""
        informer = self.factory.informer(api_version, kind)
        informer.add_handler(on_add=self.enqueue, on_update=lambda _old, new: self.enqueue(new),
                             on_delete=on_delete)
        return informer

    def enqueue_selecting(self, owners: Informer, obj: Obj) -> None:
        """An orphan appeared: wake every owner in its namespace whose selector matches
        its labels, one of them may adopt it."""
        labels = obj["metadata"].get("labels") or {}
        for owner in owners.list(obj["metadata"].get("namespace")):
            if selector_of(owner).matches(labels):
                self.enqueue(owner)

    def add_queue(self, name: str, reconcile: Reconcile, *, workers: int = 1) -> WorkQueue:
        """A second queue, for a second kind of key, with its own reconcile."""
        queue = WorkQueue()
        self._queues.append((f"{self.name}/{name}", queue, reconcile, workers))
        return queue

    def add_loop(self, loop: Callable[[], Awaitable[None]]) -> None:
        """A coroutine run beside the workers once the caches are synced (a periodic
        sweep); it is cancelled with the controller."""
        self._loops.append(loop)

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        await self.factory.wait_synced()
        log.info("%s controller started", self.name)
        queues = [(self.name, self.queue, self.reconcile, self.workers), *self._queues]
        tasks = [asyncio.create_task(run_workers(q, r, workers=n, name=name), name=name)
                 for name, q, r, n in queues]
        tasks += [asyncio.create_task(loop(), name=f"{self.name} loop") for loop in self._loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            for _, q, _, _ in queues:
                q.shutdown()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def delete_if_same(client: Client, rt: ResourceType, obj: Obj, *,
                         propagation_policy: str | None = None,
                         grace_period_seconds: int | None = None) -> bool:
    """Delete obj (a uid precondition, so a namesake created meanwhile survives); False
    when it was gone already or replaced. Other errors raise."""
    m = obj["metadata"]
    try:
        await client.delete(rt, m["name"], m.get("namespace"),
                            propagation_policy=propagation_policy,
                            grace_period_seconds=grace_period_seconds,
                            preconditions={"uid": m["uid"]})
    except ApiError as e:
        if e.code in (404, 409):
            return False
        raise
    return True


async def delete_expected(client: Client, rt: ResourceType, expectations: Expectations,
                          key: str, pods: list[Obj]) -> list[Obj]:
    """Delete the owner `key`'s pods, expecting each deletion until the informer shows
    it; returns the pods deleted. A delete that did not happen lowers its expectation
    at once (the informer will never show it)."""
    expectations.expect_deletions(key, [p["metadata"]["uid"] for p in pods])
    deleted: list[Obj] = []
    for pod in pods:
        try:
            gone = await delete_if_same(client, rt, pod)
        except ApiError:
            expectations.deletion_observed(key, pod["metadata"]["uid"])
            raise
        if gone:
            deleted.append(pod)
        else:
            expectations.deletion_observed(key, pod["metadata"]["uid"])
    return deleted


async def claim(client: Client, rt: ResourceType, owner: Obj, candidates: list[Obj],
                selector: LabelSelector) -> list[Obj]:
    """The candidates `owner` controls, after adopting matching orphans and releasing
    owned ones whose labels stopped matching (Kubernetes' ClaimObject). An owner being
    deleted adopts and releases nothing. Adoption and release are strategic-merge
    patches with the object's uid, so a namesake created meanwhile is left alone."""
    uid = owner["metadata"]["uid"]
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    claimed: list[Obj] = []
    for obj in candidates:
        labels = obj["metadata"].get("labels") or {}
        ref = controller_of(obj)
        if ref is not None and ref.get("uid") == uid:
            if selector.matches(labels):
                claimed.append(obj)
            elif not deleting:
                await _patch_owner(client, rt, obj, [{"$patch": "delete", "uid": uid}])
        elif ref is None and not deleting and selector.matches(labels):
            adopted = await _patch_owner(client, rt, obj, [controller_ref(owner)])
            if adopted is not None:
                claimed.append(adopted)
    return claimed


async def _patch_owner(client: Client, rt: ResourceType, obj: Obj, refs: list[Obj]
                       ) -> Obj | None:
    m = obj["metadata"]
    patch = {"metadata": {"ownerReferences": refs, "uid": m["uid"]}}
    try:
        return await client.patch(rt, m["name"], patch, namespace=m.get("namespace"),
                                  patch_type="strategic")
    except ApiError as e:
        if e.code in (404, 409, 422):
            return None  # gone, or changed under us: the next event brings it back
        raise
