"""The ReplicaSet controller: keep `spec.replicas` pods of a template running.

Watches ReplicaSets and Pods; owns Pods (ownerReference, controller: true).

`reconcile(namespace/name)`:
1. claim pods: the RS's pods are the active pods of its namespace that it
   controls and its selector matches; matching orphans are adopted, owned pods
   that stopped matching are released (both by strategic-merge patch).
2. unless earlier creations/deletions are still unseen by the informer
   (expectations), create the missing pods in slow-start batches (1, 2, 4, …,
   stopping at the first failure) or delete the surplus, the pods least worth
   keeping first (unscheduled, pending, not ready, ready for less time, more
   restarts, newer — Kubernetes' ranking).
3. write the status (`replicas`, `fullyLabeledReplicas`, `readyReplicas`,
   `availableReplicas`, `observedGeneration`, condition ReplicaFailure while
   creating or deleting fails) when it changed. A failed creation is retried
   with backoff after the status is written.

Pods being deleted (deletionTimestamp) or finished no longer count: they are going.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pinnace.api.conditions import find, new_condition, same_status
from pinnace.api.errors import ApiError
from pinnace.api.selectors import LabelSelector
from pinnace.api.timestamps import format_time, to_epoch
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.controllers._expectations import Expectations
from pinnace.controllers.base import Controller, claim, delete_if_same, selector_of
from pinnace.controllers.pod_template import (
    controller_of,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    pod_from_template,
    ready_since,
)

log = logging.getLogger(__name__)

COMPONENT = "replicaset-controller"
BURST_REPLICAS = 500  # most pods created or deleted in one reconcile, as Kubernetes
# A pod change that only moves its status (scheduled, running, ready), or a pod created
# while more of its batch are still expected, queues its ReplicaSet this much later:
# thousands of such changes then cost a few reconciles (each one a pass over every pod)
# instead of one each.
STATUS_BATCH = 0.25
# ... and at least this many times as long as its last passes over its pods took, so
# that they (tens of ms each at 10,000 pods) never take more than a third of the loop
STATUS_BATCH_COST_FACTOR = 2.0
# what of a ReplicaSet's metadata its reconcile acts on (spec changes move generation)
_SPEC_AND_OWNERSHIP = ("generation", "labels", "ownerReferences", "deletionTimestamp",
                       "finalizers", "uid")


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.replicasets = factory.informer("apps/v1", "ReplicaSet")
        self.replicasets.add_handler(on_add=self.enqueue, on_update=self._rs_updated,
                                     on_delete=self._rs_deleted)
        self.pods = factory.informer("v1", "Pod")
        self.pod_rt = client.resource("v1", "Pod")
        self.rs_rt = client.resource("apps/v1", "ReplicaSet")
        self.expectations = Expectations()
        self._cost: dict[str, float] = {}  # key -> seconds its last reconcile took
        self._facts: dict[str, _PodFacts] = {}  # pod uid -> what reconcile asks of it
        self._keys: dict[str, _LabelsKey] = {}
        self.pods.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                              on_delete=self._pod_deleted)

    # -- event handlers: they only queue keys (and count expectations down) ----------------

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        om, nm = old["metadata"], new["metadata"]
        if all(om.get(f) == nm.get(f) for f in _SPEC_AND_OWNERSHIP):
            # only the status moved, most often by our own write: while pods keep getting
            # ready, reconciling at once would loop write -> event -> reconcile -> write
            self.queue.add_after(key_of(new), self._batch_delay(key_of(new)))
        else:
            self.enqueue(new)

    def _rs_deleted(self, rs: Obj) -> None:
        self.expectations.forget(key_of(rs))
        self.enqueue(rs)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_of(pod, "ReplicaSet")
        if ref is None or not ref.get("apiVersion", "").startswith("apps/"):
            return None
        return f"{pod['metadata'].get('namespace')}/{ref['name']}"

    def _pod_added(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)  # seen for the first time on its way out
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            if self.expectations.satisfied(key):
                self.queue.add(key)  # the last of a batch: create the next one now
            else:  # more of this batch to come: one pass over the pods for many of them
                self.queue.add_after(key, self._batch_delay(key))
        elif controller_of(pod) is None:
            self.enqueue_selecting(self.replicasets, pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        old_key = self._owner_key(old)
        if new["metadata"].get("deletionTimestamp") and \
                not old["metadata"].get("deletionTimestamp") and key is not None:
            self.expectations.deletion_observed(key, new["metadata"]["uid"])
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is not None and old_key == key and not new["metadata"].get(
                "deletionTimestamp") and old["metadata"].get("labels") == \
                new["metadata"].get("labels"):
            self.queue.add_after(key, self._batch_delay(key))
        elif key is not None:
            self.queue.add(key)
        elif controller_of(new) is None:
            self.enqueue_selecting(self.replicasets, new)

    def _pod_deleted(self, pod: Obj) -> None:
        self._facts.pop(pod["metadata"].get("uid", ""), None)
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, pod["metadata"]["uid"])
            self.queue.add(key)

    # -- reconcile -------------------------------------------------------------------------

    def _batch_delay(self, key: str) -> float:
        return max(STATUS_BATCH, STATUS_BATCH_COST_FACTOR * self._cost.get(key, 0.0))

    async def reconcile(self, key: str) -> None:
        cached = self.replicasets.get(key)
        if cached is None:
            self.expectations.forget(key)
            self._cost.pop(key, None)
            return
        rs = copy.deepcopy(cached)
        started = time.monotonic()
        pods = await self._claim_pods(rs)
        pass_cost = time.monotonic() - started
        satisfied = self.expectations.satisfied(key)
        error: tuple[str, str] | None = None
        if satisfied and not rs["metadata"].get("deletionTimestamp"):
            error = await self._manage_replicas(key, rs, pods)
        started = time.monotonic()
        labels_key = self._labels_key(rs)
        facts = [self._facts_of(p) for p in pods]
        status = calculate_status(rs, pods, error, ready=[f.pod for f in facts if f.ready],
                                  fully_labeled=sum(1 for f in facts if f.labels(labels_key)[1]))
        # the passes over the pods (no API call in them but a rare adoption)
        self._cost[key] = pass_cost + time.monotonic() - started
        await self._write_status(rs, status)
        if error is not None:
            raise RuntimeError(error[1])  # retried with backoff, as Kubernetes does
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        if min_ready and status["readyReplicas"] != status["availableReplicas"]:
            # availability is a matter of time: look again once it may have changed
            self.queue.add_after(key, float(min_ready))

    async def _claim_pods(self, rs: Obj) -> list[Obj]:
        """`claim` over the namespace's active pods; the pods this ReplicaSet already
        controls and still selects are taken from `_facts` without asking `claim`."""
        uid, labels_key = rs["metadata"]["uid"], self._labels_key(rs)
        selector = labels_key[0]
        kept: list[Obj] = []
        rest: list[Obj] = []
        for pod in self.pods.list(rs["metadata"]["namespace"]):
            f = self._facts_of(pod)
            if not f.active:
                continue
            if f.controller_uid == uid and f.labels(labels_key)[0]:
                kept.append(pod)
            elif f.controller_uid is None or f.controller_uid == uid:
                rest.append(pod)  # an orphan to adopt, or ours to release: claim's part
        return kept + await claim(self.client, self.pod_rt, rs, rest, selector)

    def _labels_key(self, rs: Obj) -> _LabelsKey:
        """(selector, template labels) of rs: one object per distinct value, so that a
        pod's facts recognise it by identity."""
        template = ((rs["spec"].get("template") or {}).get("metadata") or {}).get(
            "labels") or {}
        text = json.dumps([rs["spec"].get("selector"), template], sort_keys=True)
        key = self._keys.get(text)
        if key is None:
            if len(self._keys) > 1000:  # bounded: selectors and templates rarely change
                self._keys.clear()
            key = self._keys[text] = (selector_of(rs), tuple(sorted(template.items())))
        return key

    def _facts_of(self, pod: Obj) -> _PodFacts:
        uid = pod["metadata"].get("uid", "")
        f = self._facts.get(uid)
        if f is None or f.pod is not pod:  # informer objects are replaced, never changed
            f = self._facts[uid] = _PodFacts.of(pod)
        return f

    async def _manage_replicas(self, key: str, rs: Obj, pods: list[Obj]
                               ) -> tuple[str, str] | None:
        """Create or delete pods; returns (reason, message) of a failure, else None."""
        diff = len(pods) - int(rs["spec"].get("replicas", 1))
        if diff < 0:
            return await self._create_pods(key, rs, min(-diff, BURST_REPLICAS))
        if diff > 0:
            return await self._delete_pods(key, rs, pods_to_delete(pods,
                                                                   min(diff, BURST_REPLICAS)))
        return None

    async def _create_pods(self, key: str, rs: Obj, count: int) -> tuple[str, str] | None:
        self.expectations.expect_creations(key, count)
        ns = rs["metadata"]["namespace"]
        remaining, batch = count, 1
        while remaining > 0:
            size = min(batch, remaining)
            results = await asyncio.gather(
                *(self.client.create(self.pod_rt, pod_from_template(rs["spec"]["template"],
                                                                    owner=rs), ns)
                  for _ in range(size)), return_exceptions=True)
            remaining -= size
            failures = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if isinstance(r, BaseException):
                    self.expectations.creation_observed(key)  # will never be seen
                else:
                    await record_event(self.client, rs, component=COMPONENT, type_="Normal",
                                       reason="SuccessfulCreate",
                                       message=f"Created pod: {r['metadata']['name']}")
            if failures:
                # slow start: stop at the first failure, and stop expecting the rest
                self.expectations.creation_observed(key, remaining)
                message = str(failures[0])
                await record_event(self.client, rs, component=COMPONENT, type_="Warning",
                                   reason="FailedCreate", message=f"Error creating: {message}")
                return "FailedCreate", message
            batch *= 2
        return None

    async def _delete_pods(self, key: str, rs: Obj, victims: list[Obj]
                           ) -> tuple[str, str] | None:
        self.expectations.expect_deletions(key, [p["metadata"]["uid"] for p in victims])

        async def delete(pod: Obj) -> str | None:
            m = pod["metadata"]
            try:
                deleted = await delete_if_same(self.client, self.pod_rt, pod)
            except ApiError as e:
                self.expectations.deletion_observed(key, m["uid"])
                await record_event(self.client, rs, component=COMPONENT, type_="Warning",
                                   reason="FailedDelete", message=f"Error deleting: {e}")
                return str(e)
            if not deleted:  # already gone, or a different pod by that name now
                self.expectations.deletion_observed(key, m["uid"])
                return None
            await record_event(self.client, rs, component=COMPONENT, type_="Normal",
                               reason="SuccessfulDelete", message=f"Deleted pod: {m['name']}")
            return None

        errors = [e for e in await asyncio.gather(*(delete(p) for p in victims)) if e]
        return ("FailedDelete", errors[0]) if errors else None

    async def _write_status(self, rs: Obj, status: Obj) -> None:
        if same_status(status, rs.get("status") or {}):
            return
        rs["status"] = status
        try:
            await self.client.update_status(self.rs_rt, rs)
        except ApiError as e:
            if e.code == 404:
                return
            if e.code != 409:
                raise
            fresh = await self.client.get(self.rs_rt, rs["metadata"]["name"],
                                          rs["metadata"]["namespace"])
            status["observedGeneration"] = min(status["observedGeneration"],
                                               fresh["metadata"].get("generation", 0))
            fresh["status"] = status
            await self.client.update_status(self.rs_rt, fresh)
            self.enqueue(fresh)  # the spec may have moved on: look again


_LabelsKey = tuple[LabelSelector, tuple[tuple[str, str], ...]]


class _PodFacts:
    """What a reconcile asks of one version of a pod, computed once per version: at
    10,000 pods the passes over them cost tens of ms each when asked afresh."""

    __slots__ = ("_labels", "_labels_key", "active", "controller_uid", "pod", "ready")

    def __init__(self, pod: Obj, active: bool, controller_uid: str | None,
                 ready: bool) -> None:
        self.pod, self.active, self.ready = pod, active, ready
        self.controller_uid = controller_uid  # None: no controller; "": one without uid
        self._labels_key: object = None
        self._labels = (False, False)

    @classmethod
    def of(cls, pod: Obj) -> _PodFacts:
        ref = controller_of(pod)
        return cls(pod, is_pod_active(pod), None if ref is None else ref.get("uid") or "",
                   is_pod_ready(pod))

    def labels(self, key: _LabelsKey) -> tuple[bool, bool]:
        """(selected by the selector, carries the template's labels) for `key` (see
        `_labels_key`; the answer for the last key is kept)."""
        if key is not self._labels_key:
            labels = self.pod["metadata"].get("labels") or {}
            self._labels = (key[0].matches(labels),
                            all(labels.get(k) == v for k, v in key[1]))
            self._labels_key = key
        return self._labels


# -- pure functions ------------------------------------------------------------------------

def _deletion_rank(pod: Obj) -> tuple[Any, ...]:
    """Sort key: the pod to delete first sorts first."""
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    since = ready_since(pod)
    restarts = max((c.get("restartCount", 0) for c in status.get("containerStatuses") or []),
                   default=0)
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        phase_rank,
        1 if since is not None else 0,
        -(since.timestamp() if since is not None else 0.0),
        -restarts,
        -(to_epoch(pod["metadata"].get("creationTimestamp")) or 0.0),
        pod["metadata"].get("name", ""),
    )


def pods_to_delete(pods: list[Obj], count: int) -> list[Obj]:
    """The `count` pods least worth keeping, in Kubernetes' order."""
    return sorted(pods, key=_deletion_rank)[:count]


def calculate_status(rs: Obj, pods: list[Obj], error: tuple[str, str] | None,
                     now: datetime | None = None, *, ready: list[Obj] | None = None,
                     fully_labeled: int | None = None) -> Obj:
    """The ReplicaSet status for the pods it controls (active ones only). `ready` (the
    ready ones among pods) and `fully_labeled` (how many carry the template's labels)
    are computed here unless the caller knows them already."""
    now = now or datetime.now(UTC)
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get(
        "labels") or {}
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    if fully_labeled is None:
        wanted = template_labels.items()
        fully_labeled = sum(1 for p in pods if wanted <= (
            p["metadata"].get("labels") or {}).items())
    old = rs.get("status") or {}
    conditions = [c for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    failure = find(old.get("conditions"), "ReplicaFailure")
    if error is not None:
        reason, message = error
        if failure is None or failure.get("reason") != reason or \
                failure.get("message") != message:
            # a new failure starts a new transition, as this controller always did
            failure = new_condition("ReplicaFailure", "True", reason, message,
                                    now=format_time(now))
        conditions.append(failure)
    if ready is None:
        ready = [p for p in pods if is_pod_ready(p)]
    status: Obj = {
        "replicas": len(pods),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": len(ready),
        "availableReplicas": len(ready) if not min_ready else
        sum(1 for p in ready if is_pod_available(p, min_ready, now)),
        "observedGeneration": rs["metadata"].get("generation", 0),
    }
    if conditions:
        status["conditions"] = conditions
    return status
