"""Job controller: runs a Job's pods to completion (Kubernetes 1.32 semantics).

Watches Jobs and the pods they control (ownerReference controller: true). One
`reconcile(key)` per Job, in this order:

1. Tracking. Every pod is created with the `batch.kubernetes.io/job-tracking`
   finalizer, so a finished pod cannot vanish before it is counted. A finished
   pod's uid first goes to `status.uncountedTerminatedPods` (status write), then
   its finalizer is removed, and once the informer shows it without the finalizer
   (or gone) the uid moves into `succeeded`/`failed`. A pod deleted before it
   finished counts as failed (podReplacementPolicy TerminatingOrFailed), except
   while the Job is suspended.
2. Conditions. Suspended True/False on suspend/resume (resume resets
   startTime). Too many failures (`failed > backoffLimit`, or for restartPolicy
   OnFailure the active pods' restarts reaching it) or an expired
   `activeDeadlineSeconds` add `FailureTarget`; enough successes add
   `SuccessCriteriaMet`. With one of those, active pods are deleted, and once no
   pod is left running or uncounted the terminal condition (`Failed` /
   `Complete` + completionTime) follows with the same reason and message.
3. Pods. Otherwise keep `min(parallelism, remaining)` pods active: NonIndexed
   pods are `<job>-<random>`; Indexed pods `<job>-<index>-<random>` run each
   index of 0..completions-1 until it succeeds once. After failures, new pods
   wait an exponential backoff (base doubling per failure since the last success,
   capped at `backoff_max`) counted from the last failed pod's finish time.

Expectations (creations and deletions issued but not yet seen by the informer)
keep a reconcile from acting twice on a stale cache. Status is computed from the
observed pods by the pure functions of `job_status.py` and written only when it
changed, with the Job's resourceVersion, so a stale cache turns into a conflict and
a retry, never a double count.

Two queues, one key type each, as in Kubernetes: Jobs (`namespace/name`), and pods
released by their Job that still carry the tracking finalizer (`namespace/name` of
the pod).
"""

from __future__ import annotations

import copy
import datetime as dt
import time

from pinnace.api import errors
from pinnace.api.backoff import exponential_delay
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.controllers._expectations import Expectations
from pinnace.controllers.base import Controller, delete_expected, owner_key
from pinnace.controllers.job_status import (
    COMPLETION_INDEX,
    TRACKING_FINALIZER,
    calculate_status,
    completed_indexes,
    count_uncounted,
    finish_time,
    index_of,
    is_indexed,
    removal_order,
    track,
    update_conditions,
)
from pinnace.controllers.pod_template import (
    controller_uid,
    is_pod_active,
    is_pod_terminating,
    pod_from_template,
)

CONTROLLER_NAME = "kubernetes.io/job-controller"
COMPONENT = "job-controller"
OWNER_INDEX = "job-controller:owner"


class JobController(Controller):
    name = "job"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory, *,
                 backoff_base: float = 10.0, backoff_max: float = 360.0) -> None:
        super().__init__(client, factory)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.jobs_rt = client.resource("batch/v1", "Job")
        self.pods_rt = client.resource("v1", "Pod")
        self.jobs = self.watch("batch/v1", "Job", on_delete=self._job_deleted)
        self.pods = factory.informer("v1", "Pod")
        self.pods.add_index(OWNER_INDEX, _job_of)
        self.orphans = self.add_queue("orphan-pods", self._reconcile_orphan)
        self.expectations = Expectations()
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        # per Job key: (failures since the last success, time of the last failure)
        self._backoff: dict[str, tuple[int, float]] = {}

    # -- event handlers: only bookkeeping and keys ------------------------------------

    def _job_deleted(self, job: Obj) -> None:
        key = key_of(job)
        self.expectations.forget(key)
        self._backoff.pop(key, None)
        self.queue.add(key)  # its pods' finalizers still need removing

    def _pod_added(self, pod: Obj) -> None:
        key = owner_key(pod, "Job")
        if key is None:
            self._maybe_orphan(pod)
            return
        self.expectations.creation_observed(key)
        if pod["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = owner_key(new, "Job")
        old_key = owner_key(old, "Job")
        if key is None:
            self._maybe_orphan(new)
        elif new["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, new["metadata"].get("uid", ""))
        if key is not None:
            self.queue.add(key)
        if old_key and old_key != key:
            self.queue.add(old_key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = owner_key(pod, "Job")
        if key is None:
            return
        self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        self.queue.add(key)

    def _maybe_orphan(self, pod: Obj) -> None:
        """A pod released by its Job (deleted with --cascade=orphan) still carrying our
        tracking finalizer: take it off, or the pod could never be deleted (Kubernetes'
        syncOrphanPod)."""
        if TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or []):
            self.orphans.add(key_of(pod))

    # -- reconcile -------------------------------------------------------------------

    async def _reconcile_orphan(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is not None and owner_key(pod, "Job") is None:
            await self._remove_finalizer(pod)

    async def reconcile(self, key: str) -> None:
        job = self.jobs.get(key)
        owned = self.pods.by_index(OWNER_INDEX, key)
        if job is None:
            # the Job is gone: its pods must not stay stuck on our finalizer
            for pod in owned:
                await self._remove_finalizer(pod)
            return
        spec = job.get("spec") or {}
        if spec.get("managedBy") not in (None, CONTROLLER_NAME):
            return
        uid = job["metadata"]["uid"]
        pods = [p for p in owned if controller_uid(p, "Job") == uid]
        for pod in owned:  # pods of an earlier Job of the same name
            if controller_uid(pod, "Job") != uid:
                await self._remove_finalizer(pod)
        job = await self._track(key, job, pods)
        await self._sync(key, job, pods)

    async def _track(self, key: str, job: Obj, pods: list[Obj]) -> Obj:
        """Step 1: finished pods → uncountedTerminatedPods → finalizer off → counters.
        The uids are written before any finalizer comes off, so a crash in between
        can never lose a pod's count."""
        tracking = track(job, pods)
        if tracking.changed:
            job = await self._write_status(job, tracking.status)
            self._record_backoff(key, tracking.succeeded, tracking.failed)
        status = job.get("status") or {}
        uncounted = status.get("uncountedTerminatedPods") or {}
        finished = set(uncounted.get("succeeded") or []) | set(uncounted.get("failed") or [])
        for pod in pods:
            if pod["metadata"]["uid"] in finished:
                await self._remove_finalizer(pod)
        for pod in tracking.release:
            await self._remove_finalizer(pod)
        # counted once the informer shows the pod without our finalizer, or gone
        return await self._write_status(job, count_uncounted(status, pods))

    async def _sync(self, key: str, job: Obj, pods: list[Obj]) -> None:
        """Steps 2 and 3: conditions, then the pods to create or delete, then status."""
        now = dt.datetime.now(dt.UTC)
        step = update_conditions(job, job.get("status") or {}, pods, now)
        if step.requeue_after is not None:
            self.queue.add_after(key, step.requeue_after)
        active = [p for p in pods if is_pod_active(p)]
        terminating = [p for p in pods if is_pod_terminating(p)]
        if step.stop_pods(job):
            pending = self.expectations.pending_deletions(key)
            active = [p for p in active if p["metadata"]["uid"] not in pending]
            removed = await self._delete_pods(key, job, active)
            terminating += removed
            active = [p for p in active if p not in removed]
        elif self.expectations.satisfied(key):
            active = await self._manage(key, job, step.status, active, terminating)
        status, events = calculate_status(step, active, terminating, now)
        await self._write_status(job, status)
        for ev in events:
            await self._event(job, *ev)

    # -- pods ------------------------------------------------------------------------

    async def _manage(self, key: str, job: Obj, status: Obj, active: list[Obj],
                      terminating: list[Obj]) -> list[Obj]:
        """Create or delete pods toward the wanted number of active pods; returns the
        pods still active afterwards (without the ones created, which the informer
        will show)."""
        excess, indexes = pods_to_change(job, status, active, terminating)
        removed = await self._delete_pods(key, job, excess)
        active = [p for p in active if p not in removed]
        if not indexes:
            return active
        wait = self._backoff_left(key)
        if wait > 0:
            self.queue.add_after(key, wait)
            return active
        await self._create_pods(key, job, indexes)
        return active

    async def _create_pods(self, key: str, job: Obj, indexes: list[int | None]) -> None:
        """Slow start: batches of 1, 2, 4, …; stop at the first failure."""
        self.expectations.expect_creations(key, len(indexes))
        batch, pos = 1, 0
        while pos < len(indexes):
            chunk = indexes[pos:pos + batch]
            pos += len(chunk)
            failure: Exception | None = None
            for idx in chunk:
                try:
                    pod = await self.client.create(self.pods_rt, pod_for(job, idx),
                                                   job["metadata"]["namespace"])
                except Exception as e:  # counted, reported, retried below
                    self.expectations.creation_observed(key)  # it will never be seen
                    failure = e
                    if isinstance(e, errors.ApiError):
                        await self._event(job, "Warning", "FailedCreate",
                                          f"Error creating: {e.message}")
                    continue
                await self._event(job, "Normal", "SuccessfulCreate",
                                  f"Created pod: {pod['metadata']['name']}")
            if failure is not None:
                self.expectations.creation_observed(key, len(indexes) - pos)
                raise failure
            batch *= 2

    async def _delete_pods(self, key: str, job: Obj, pods: list[Obj]) -> list[Obj]:
        removed = await delete_expected(self.client, self.pods_rt, self.expectations, key, pods)
        for pod in removed:
            await self._event(job, "Normal", "SuccessfulDelete",
                              f"Deleted pod: {pod['metadata']['name']}")
        return removed

    async def _remove_finalizer(self, pod: Obj) -> None:
        m = pod["metadata"]
        finalizers = list(m.get("finalizers") or [])
        if TRACKING_FINALIZER not in finalizers:
            return
        rest = [f for f in finalizers if f != TRACKING_FINALIZER]
        # test-then-replace: a concurrent change of the list fails instead of being lost
        ops = [{"op": "test", "path": "/metadata/finalizers", "value": finalizers},
               {"op": "replace", "path": "/metadata/finalizers", "value": rest}]
        try:
            await self.client.patch(self.pods_rt, m["name"], ops, namespace=m["namespace"],
                                    patch_type="json")
        except errors.ApiError as e:
            if e.code != 404:
                raise

    # -- pod-failure backoff ---------------------------------------------------------

    def _record_backoff(self, key: str, new_succ: list[Obj], new_fail: list[Obj]) -> None:
        failures, last = self._backoff.get(key, (0, 0.0))
        fail_times = [finish_time(p) for p in new_fail]
        if new_succ:
            last_success = max(finish_time(p) for p in new_succ)
            fail_times = [t for t in fail_times if t > last_success]
            failures, last = 0, 0.0
        if fail_times:
            failures += len(fail_times)
            last = max(last, *fail_times)
        self._backoff[key] = (failures, last)

    def _backoff_left(self, key: str) -> float:
        """Seconds until the next pod may start, counted from the last failure."""
        failures, last = self._backoff.get(key, (0, 0.0))
        if failures == 0:
            return 0.0
        return last + exponential_delay(self.backoff_base, self.backoff_max, failures) \
            - time.time()

    # -- writes ----------------------------------------------------------------------

    async def _write_status(self, job: Obj, status: Obj) -> Obj:
        if status == (job.get("status") or {}):
            return job
        new = dict(job)
        new["status"] = status
        return await self.client.update_status(self.jobs_rt, new)

    async def _event(self, job: Obj, type_: str, reason: str, message: str) -> None:
        await record_event(self.client, job, component=COMPONENT, type_=type_, reason=reason,
                           message=message)


def _job_of(pod: Obj) -> list[str]:
    """The pod informer's index by owning Job (one function for every JobController on
    a shared factory)."""
    return [owner_key(pod, "Job") or ""]


# -- what to create and delete ------------------------------------------------------------

def pods_to_change(job: Obj, status: Obj, active: list[Obj], terminating: list[Obj]
                   ) -> tuple[list[Obj], list[int | None]]:
    """(active pods to delete, pods to create: their completion indexes, None for a
    NonIndexed Job) toward min(parallelism, what remains to complete)."""
    spec = job.get("spec") or {}
    parallelism = spec.get("parallelism", 1)
    completions = spec.get("completions")
    uncounted = status.get("uncountedTerminatedPods") or {}
    succeeded = (status.get("succeeded") or 0) + len(uncounted.get("succeeded") or [])
    if completions is None:  # work queue: once one pod succeeded, start no more
        want = parallelism if succeeded == 0 else len(active)
    else:
        want = max(0, min(parallelism, completions - succeeded))
    if spec.get("podReplacementPolicy") == "Failed":
        want = max(0, want - len(terminating))
    if not is_indexed(job):
        excess = removal_order(active)[:len(active) - want] if len(active) > want else []
        return excess, [None] * max(0, want - len(active))
    done = completed_indexes(status)
    running: set[int] = set()
    excess = []
    for pod in sorted(active, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        idx = index_of(pod)
        if idx is None or idx in done or idx in running or not 0 <= idx < (completions or 0):
            excess.append(pod)  # duplicate, finished or invalid index
        else:
            running.add(idx)
    want = max(0, min(parallelism, (completions or 0) - len(done)))
    free = [i for i in range(completions or 0) if i not in done and i not in running]
    kept = [p for p in active if p not in excess]
    if len(kept) > want:
        excess += removal_order(kept)[:len(kept) - want]
    return excess, list(free[:max(0, want - min(len(kept), want))])


def pod_for(job: Obj, index: int | None) -> Obj:
    """A pod from the Job's template, owned by the Job, carrying the tracking finalizer;
    Indexed pods get their completion index (annotation, label, env, hostname)."""
    name = job["metadata"]["name"]
    extra_labels = {} if index is None else {COMPLETION_INDEX: str(index)}
    pod = pod_from_template((job.get("spec") or {}).get("template") or {}, owner=job,
                            generate_name=f"{name}-" if index is None else f"{name}-{index}-",
                            extra_labels=extra_labels)
    # the tracking finalizer replaces the template's own (as this controller always did)
    pod["metadata"]["finalizers"] = [TRACKING_FINALIZER]
    if index is None:
        return pod
    pod["metadata"].setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
    spec = pod["spec"]
    spec.setdefault("hostname", f"{name}-{index}")
    env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        c["env"] = [e for e in c.get("env") or [] if e.get("name") != env["name"]] + \
            [copy.deepcopy(env)]
    return pod
