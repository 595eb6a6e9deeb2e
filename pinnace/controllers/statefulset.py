"""The StatefulSet controller: pods with stable names, stable storage and an order
(Kubernetes 1.32 `pkg/controller/statefulset`).

Watches StatefulSets, Pods (by controller ownerReference), PersistentVolumeClaims (by
the set's selector) and ControllerRevisions; the key is the set's `namespace/name`.

reconcile:
1. The pods: the set's members (`<set>-<n>`) its selector matches; matching orphans
   are adopted, owned pods that stopped matching released (`base.claim`).
2. Revisions (`_history`): the template's ControllerRevision is the update revision;
   the one `status.currentRevision` names is the current one (the update revision
   when there is none yet).
3. Claims: each member's claims get the owner references the retention policy wants
   (condemned pods' claims before those pods are deleted); a Pending pod whose claim
   is missing gets it again; a pod missing its identity labels (adopted) gets them.
4. `statefulset_plan.plan` says what to create and delete this round; a pod is created
   only after its missing claims (`<template>-<set>-<n>`), never while one of them is
   being deleted.
5. Status (`calculate_status`), written when it changed; history beyond
   `revisionHistoryLimit` trimmed.

Names are stable, so no expectations are needed (as in Kubernetes): a creation the
cache has not shown yet fails with AlreadyExists and is skipped, a second delete of a
pod hits the uid precondition or a pod already terminating.
"""

from __future__ import annotations

import asyncio
import logging

from pinnace.api.conditions import same_status
from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.controllers import _history as history
from pinnace.controllers.base import Controller, claim, delete_if_same, owner_key, selector_of
from pinnace.controllers.pod_template import controller_of, controller_uid
from pinnace.controllers.statefulset_plan import Plan, calculate_status, min_ready_seconds, plan
from pinnace.controllers.statefulset_pods import (
    claim_owner_refs,
    claims_for,
    is_member,
    is_stale,
    is_terminating,
    missing_identity,
    new_pod,
    ordinal_of,
    phase,
    pod_name,
    revision_of,
    same_refs,
    uses_update_revision,
)

log = logging.getLogger(__name__)

COMPONENT = "statefulset-controller"
_OWNER_INDEX = "statefulset-owner"


def _owner_uid(obj: Obj) -> list[str]:
    uid = controller_uid(obj, "StatefulSet")
    return [uid] if uid else []


class StatefulSetController(Controller):
    name = "statefulset"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.sts_rt = client.resource("apps/v1", "StatefulSet")
        self.pod_rt = client.resource("v1", "Pod")
        self.pvc_rt = client.resource("v1", "PersistentVolumeClaim")
        self.cr_rt = client.resource("apps/v1", "ControllerRevision")
        self.sets = self.watch("apps/v1", "StatefulSet")
        self.pods = factory.informer("v1", "Pod")
        self.claims = factory.informer("v1", "PersistentVolumeClaim")
        self.revisions = factory.informer("apps/v1", "ControllerRevision")
        self.revisions.add_index(_OWNER_INDEX, _owner_uid)
        self.pods.add_handler(on_add=self._on_pod, on_update=self._on_pod_updated,
                              on_delete=self._on_pod)
        self.claims.add_handler(on_add=self._on_claim,
                                on_update=lambda _old, new: self._on_claim(new),
                                on_delete=self._on_claim)

    # -- event handlers: they only queue keys ---------------------------------------------

    def _on_pod(self, pod: Obj) -> None:
        key = owner_key(pod, "StatefulSet")
        if key is not None:
            self.queue.add(key)
        elif controller_of(pod) is None:
            self.enqueue_selecting(self.sets, pod)

    def _on_pod_updated(self, old: Obj, new: Obj) -> None:
        old_key = owner_key(old, "StatefulSet")
        if old_key is not None and old_key != owner_key(new, "StatefulSet"):
            self.queue.add(old_key)
        self._on_pod(new)

    def _on_claim(self, claim_obj: Obj) -> None:
        self.enqueue_selecting(self.sets, claim_obj)

    # -- reconcile --------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None:
            return
        pods = await self._claim_pods(sts)
        current, update, collision_count = await self._sync_revisions(sts)
        deleting = bool(sts["metadata"].get("deletionTimestamp"))
        todo = plan(sts, pods, update["metadata"]["name"])
        if not deleting:
            await self._update_claim_owners(sts, pods)
            for pod in pods:
                if is_terminating(pod):
                    continue
                if phase(pod) == "Pending":  # a claim deleted under it is made again
                    await self._create_claims(sts, ordinal_of(pod))
                if missing_identity(pod):
                    await self._restore_identity(pod)
            await self._act(sts, todo, current, update)
        status = calculate_status(sts, pods, current_revision=current["metadata"]["name"],
                                  update_revision=update["metadata"]["name"],
                                  collision_count=collision_count)
        await self._write_status(sts, status)
        await self._trim_history(sts, pods, status)
        if todo.wait_for_availability or (
                min_ready_seconds(sts) and status["readyReplicas"] != status["availableReplicas"]):
            self.queue.add_after(key, float(min_ready_seconds(sts)))

    async def _claim_pods(self, sts: Obj) -> list[Obj]:
        uid = sts["metadata"]["uid"]
        candidates = [p for p in self.pods.list(sts["metadata"]["namespace"])
                      if is_member(sts, p) or controller_uid(p, "StatefulSet") == uid]
        # terminating pods still count (their names are taken) but are not adopted
        owned = await claim(self.client, self.pod_rt, sts,
                            [p for p in candidates if not p["metadata"].get("deletionTimestamp")
                             or controller_uid(p, "StatefulSet") == uid], selector_of(sts))
        return [p for p in owned if is_member(sts, p)]

    # -- revisions ----------------------------------------------------------------------------

    async def _sync_revisions(self, sts: Obj) -> tuple[Obj, Obj, int]:
        """(current revision, update revision, collisionCount)."""
        status = sts.get("status") or {}
        collision_count = int(status.get("collisionCount") or 0)
        revisions = self.revisions.by_index(_OWNER_INDEX, sts["metadata"]["uid"])
        synced = await history.sync_revision(
            self.client, self.cr_rt, sts, history.revision_data(sts["spec"].get("template")),
            revisions, collision_count=collision_count,
            annotations=sts["metadata"].get("annotations"))
        update = synced.revision
        current = next((r for r in synced.revisions
                        if r["metadata"]["name"] == status.get("currentRevision")), update)
        return current, update, synced.collision_count

    async def _trim_history(self, sts: Obj, pods: list[Obj], status: Obj) -> None:
        revisions = self.revisions.by_index(_OWNER_INDEX, sts["metadata"]["uid"])
        live = {revision_of(p) for p in pods} | {status["currentRevision"],
                                                 status["updateRevision"]}
        limit = sts["spec"].get("revisionHistoryLimit")
        for r in history.revisions_to_delete(revisions, live, 10 if limit is None else limit):
            try:
                await delete_if_same(self.client, self.cr_rt, r)
            except ApiError as e:
                log.info("statefulset %s: could not delete revision %s: %s",
                         key_of(sts), r["metadata"]["name"], e)

    # -- claims -------------------------------------------------------------------------------

    async def _update_claim_owners(self, sts: Obj, pods: list[Obj]) -> None:
        ns = sts["metadata"]["namespace"]
        for pod in pods:
            for wanted in claims_for(sts, ordinal_of(pod)).values():
                found = self.claims.get(f"{ns}/{wanted['metadata']['name']}")
                if found is None or found["metadata"].get("deletionTimestamp"):
                    continue
                refs = claim_owner_refs(found, sts, pod, ordinal_of(pod))
                if same_refs(refs, found["metadata"].get("ownerReferences") or []):
                    continue
                patch = {"metadata": {"ownerReferences": refs,
                                      "resourceVersion": found["metadata"]["resourceVersion"]}}
                try:
                    await self.client.patch(self.pvc_rt, found["metadata"]["name"], patch,
                                            namespace=ns, patch_type="merge")
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise

    async def _create_claims(self, sts: Obj, ordinal: int) -> bool:
        """Create the pod's missing claims; False while one of them is being deleted, or
        is owned by an earlier pod of this name (whenScaled=Delete: the garbage collector
        is about to delete it): the pod waits for a fresh claim rather than mount the old
        one's volume (Kubernetes' PodClaimIsStale)."""
        ns = sts["metadata"]["namespace"]
        name = pod_name(sts, ordinal)
        ready = True
        for wanted in claims_for(sts, ordinal).values():
            cname = wanted["metadata"]["name"]
            found = self.claims.get(f"{ns}/{cname}")
            if found is not None:
                if found["metadata"].get("deletionTimestamp") or is_stale(found, name):
                    ready = False
                continue
            refs = claim_owner_refs(wanted, sts, None, ordinal)
            if refs:
                wanted["metadata"]["ownerReferences"] = refs
            try:
                await self.client.create(self.pvc_rt, wanted, ns)
            except ApiError as e:
                if e.code == 409:
                    continue  # created meanwhile: the cache will show it
                await self._event(sts, "Warning", "FailedCreate",
                                  f"create Claim {cname} for Pod {name} in StatefulSet "
                                  f"{sts['metadata']['name']} failed error: {e.message}")
                raise
            await self._event(sts, "Normal", "SuccessfulCreate",
                              f"create Claim {cname} Pod {name} in StatefulSet "
                              f"{sts['metadata']['name']} success")
        return ready

    # -- pods ---------------------------------------------------------------------------------

    async def _act(self, sts: Obj, todo: Plan, current: Obj, update: Obj) -> None:
        await asyncio.gather(*(self._delete_pod(sts, p) for p in todo.delete))
        for ordinal in todo.create:
            revision = update if uses_update_revision(sts, ordinal) else current
            await self._create_pod(sts, ordinal, revision)

    async def _create_pod(self, sts: Obj, ordinal: int, revision: Obj) -> None:
        if not await self._create_claims(sts, ordinal):
            return  # a claim is going away: its delete event brings us back
        pod = new_pod(sts, history.template_of(revision), ordinal, revision["metadata"]["name"])
        set_name, name = sts["metadata"]["name"], pod["metadata"]["name"]
        try:
            await self.client.create(self.pod_rt, pod, sts["metadata"]["namespace"])
        except ApiError as e:
            if e.code == 409:
                return  # the cache is behind our own create
            await self._event(sts, "Warning", "FailedCreate",
                              f"create Pod {name} in StatefulSet {set_name} failed error: "
                              f"{e.message}")
            raise
        await self._event(sts, "Normal", "SuccessfulCreate",
                          f"create Pod {name} in StatefulSet {set_name} successful")

    async def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        set_name, name = sts["metadata"]["name"], pod["metadata"]["name"]
        try:
            deleted = await delete_if_same(self.client, self.pod_rt, pod)
        except ApiError as e:
            await self._event(sts, "Warning", "FailedDelete",
                              f"delete Pod {name} in StatefulSet {set_name} failed error: "
                              f"{e.message}")
            raise
        if deleted:
            await self._event(sts, "Normal", "SuccessfulDelete",
                              f"delete Pod {name} in StatefulSet {set_name} successful")

    async def _restore_identity(self, pod: Obj) -> None:
        m = pod["metadata"]
        patch = {"metadata": {"labels": missing_identity(pod), "uid": m["uid"]}}
        try:
            await self.client.patch(self.pod_rt, m["name"], patch, namespace=m["namespace"],
                                    patch_type="strategic")
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _event(self, sts: Obj, type_: str, reason: str, message: str) -> None:
        await record_event(self.client, sts, component=COMPONENT, type_=type_, reason=reason,
                           message=message)

    # -- status -------------------------------------------------------------------------------

    async def _write_status(self, sts: Obj, status: Obj) -> None:
        old = sts.get("status") or {}
        if same_status(status, old) and status["collisionCount"] == old.get("collisionCount"):
            return
        try:
            await self.client.update_status(self.sts_rt, {**sts, "status": status})
        except ApiError as e:
            if e.code == 404:
                return
            if e.code != 409:
                raise
            self.enqueue(sts)  # changed meanwhile: the next round writes it again
