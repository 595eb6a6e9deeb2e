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
observed pods and written only when it changed, with the Job's resourceVersion,
so a stale cache turns into a conflict and a retry, never a double count.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from typing import Any

from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.controllers.base import Controller, owner_key
from pinnace.controllers.pod_template import is_pod_ready, pod_from_template

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
# work-queue keys of pods (not Jobs) that lost their Job but kept our finalizer
ORPHAN_PREFIX = "orphan-pod:"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
CONTROLLER_NAME = "kubernetes.io/job-controller"
COMPONENT = "job-controller"
EXPECTATIONS_TIMEOUT = 300.0  # forget expectations never observed (client-go's 5 min)

BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")


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
        self.jobs = factory.informer("batch/v1", "Job")
        self.pods = factory.informer("v1", "Pod")
        self.pods.add_index("job-controller:owner", lambda p: [owner_key(p, "Job") or ""])
        self.jobs.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), self._job_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        # per Job key: (creations expected, since) and the uids of deletions expected
        self._expect_creates: dict[str, tuple[int, float]] = {}
        self._expect_deletes: dict[str, set[str]] = {}
        # per Job key: (failures since the last success, time of the last failure)
        self._backoff: dict[str, tuple[int, float]] = {}

    # -- event handlers: only bookkeeping and keys ------------------------------------

    def _job_deleted(self, job: Obj) -> None:
        key = key_of(job)
        self._expect_creates.pop(key, None)
        self._expect_deletes.pop(key, None)
        self._backoff.pop(key, None)
        self.queue.add(key)  # its pods' finalizers still need removing

    def _pod_added(self, pod: Obj) -> None:
        key = owner_key(pod, "Job")
        if key is None:
            self._maybe_orphan(pod)
            return
        n, since = self._expect_creates.get(key, (0, 0.0))
        if n > 0:
            self._expect_creates[key] = (n - 1, since)
        if pod["metadata"].get("deletionTimestamp"):
            self._expect_deletes.get(key, set()).discard(pod["metadata"].get("uid", ""))
        self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = owner_key(new, "Job")
        if key is None:
            self._maybe_orphan(new)
            old_key = owner_key(old, "Job")
            if old_key:
                self.queue.add(old_key)
            return
        if new["metadata"].get("deletionTimestamp"):
            self._expect_deletes.get(key, set()).discard(new["metadata"].get("uid", ""))
        self.queue.add(key)
        old_key = owner_key(old, "Job")
        if old_key and old_key != key:
            self.queue.add(old_key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = owner_key(pod, "Job")
        if key is None:
            return
        self._expect_deletes.get(key, set()).discard(pod["metadata"].get("uid", ""))
        self.queue.add(key)

    def _maybe_orphan(self, pod: Obj) -> None:
        """A pod released by its Job (deleted with --cascade=orphan) still carrying our
        tracking finalizer: take it off, or the pod could never be deleted (Kubernetes'
        syncOrphanPod)."""
        if TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or []):
            self.queue.add(ORPHAN_PREFIX + key_of(pod))

    def _expectations_met(self, key: str) -> bool:
        n, since = self._expect_creates.get(key, (0, 0.0))
        if n > 0 and time.monotonic() - since < EXPECTATIONS_TIMEOUT:
            return False
        return not self._expect_deletes.get(key)

    # -- reconcile -------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key.startswith(ORPHAN_PREFIX):
            pod = self.pods.get(key[len(ORPHAN_PREFIX):])
            if pod is not None and owner_key(pod, "Job") is None:
                await self._remove_finalizer(pod)
            return
        job = self.jobs.get(key)
        owned = self.pods.by_index("job-controller:owner", key)
        if job is None:
            # the Job is gone: its pods must not stay stuck on our finalizer
            for pod in owned:
                await self._remove_finalizer(pod)
            return
        spec = job.get("spec") or {}
        if spec.get("managedBy") not in (None, CONTROLLER_NAME):
            return
        uid = job["metadata"]["uid"]
        pods = [p for p in owned if _controller_uid(p) == uid]
        foreign = [p for p in owned if _controller_uid(p) != uid]
        for pod in foreign:  # pods of an earlier Job of the same name
            await self._remove_finalizer(pod)
        job = await self._track(key, job, pods)
        await self._sync(key, job, pods)

    async def _track(self, key: str, job: Obj, pods: list[Obj]) -> Obj:
        """Step 1: finished pods → uncountedTerminatedPods → finalizer off → counters."""
        status = copy.deepcopy(job.get("status") or {})
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_succ = list(uncounted.get("succeeded") or [])
        unc_fail = list(uncounted.get("failed") or [])
        seen = set(unc_succ) | set(unc_fail)
        indexed = _indexed(job)
        completions = (job.get("spec") or {}).get("completions")
        done_idx = parse_indexes(status.get("completedIndexes") or "")
        suspended = bool((job.get("spec") or {}).get("suspend"))
        new_succ: list[Obj] = []
        new_fail: list[Obj] = []
        strip: list[Obj] = []
        for pod in pods:
            m = pod["metadata"]
            if TRACKING_FINALIZER not in (m.get("finalizers") or []) or m["uid"] in seen:
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded":
                if indexed:
                    idx = _index_of(pod)
                    if idx is None or completions is None or not 0 <= idx < completions \
                            or idx in done_idx:
                        strip.append(pod)  # an extra success of a done index: not counted
                        continue
                    done_idx.add(idx)
                new_succ.append(pod)
            elif phase == "Failed" or (m.get("deletionTimestamp") and not suspended):
                new_fail.append(pod)
            elif m.get("deletionTimestamp"):
                strip.append(pod)  # removed by suspension: neither success nor failure
        if new_succ or new_fail:
            unc_succ += [p["metadata"]["uid"] for p in new_succ]
            unc_fail += [p["metadata"]["uid"] for p in new_fail]
            status["uncountedTerminatedPods"] = {"succeeded": unc_succ, "failed": unc_fail}
            if indexed:
                status["completedIndexes"] = format_indexes(done_idx)
            job = await self._write_status(job, status)
            self._record_backoff(key, new_succ, new_fail)
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        for uid_ in unc_succ + unc_fail:
            pod = by_uid.get(uid_)
            if pod is not None:
                await self._remove_finalizer(pod)
        for pod in strip:
            await self._remove_finalizer(pod)
        # counted once the informer shows the pod without our finalizer, or gone
        status = copy.deepcopy(job.get("status") or {})
        still_succ = [u for u in unc_succ if _tracked(by_uid.get(u))]
        still_fail = [u for u in unc_fail if _tracked(by_uid.get(u))]
        moved_succ = len(unc_succ) - len(still_succ)
        moved_fail = len(unc_fail) - len(still_fail)
        if moved_succ or moved_fail:
            status["succeeded"] = (status.get("succeeded") or 0) + moved_succ
            status["failed"] = (status.get("failed") or 0) + moved_fail
            status["uncountedTerminatedPods"] = {"succeeded": still_succ, "failed": still_fail}
            job = await self._write_status(job, status)
        return job

    async def _sync(self, key: str, job: Obj, pods: list[Obj]) -> None:
        """Steps 2 and 3: conditions, then the pods to create or delete."""
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        conds: list[Obj] = status.setdefault("conditions", [])
        now = _now()
        active = [p for p in pods if _is_active(p)]
        terminating = [p for p in pods if _is_terminating(p)]
        uncounted = status.get("uncountedTerminatedPods") or {}
        n_unc_succ = len(uncounted.get("succeeded") or [])
        n_unc_fail = len(uncounted.get("failed") or [])
        succeeded = (status.get("succeeded") or 0) + n_unc_succ
        failed = (status.get("failed") or 0) + n_unc_fail
        suspended = bool(spec.get("suspend"))
        events: list[tuple[str, str, str]] = []
        finished = _true(conds, "Complete") or _true(conds, "Failed")

        if not finished and not (_true(conds, "FailureTarget")
                                 or _true(conds, "SuccessCriteriaMet")):
            if suspended:
                if _ensure(conds, "Suspended", "True", "JobSuspended", "Job suspended", now):
                    events.append(("Normal", "Suspended", "Job suspended"))
            elif _ensure(conds, "Suspended", "False", "JobResumed", "Job resumed", now,
                         add=False):
                events.append(("Normal", "Resumed", "Job resumed"))
                # activeDeadlineSeconds counts continuous activity: restart the clock
                status["startTime"] = _rfc3339(now)
            if not suspended and not status.get("startTime"):
                status["startTime"] = _rfc3339(now)
            if failed > spec.get("backoffLimit", 6) or _past_backoff_limit_on_failure(job, active):
                _ensure(conds, "FailureTarget", "True", *BACKOFF_LIMIT_EXCEEDED, now)
            elif not suspended and (left := _deadline_left(job, status, now)) is not None:
                if left <= 0:
                    _ensure(conds, "FailureTarget", "True", *DEADLINE_EXCEEDED, now)
                else:
                    self.queue.add_after(key, left)
            if not _true(conds, "FailureTarget") and _complete(job, status, succeeded, active):
                _ensure(conds, "SuccessCriteriaMet", "True", *COMPLETIONS_REACHED, now)

        ending = not finished and (_true(conds, "FailureTarget")
                                   or _true(conds, "SuccessCriteriaMet"))
        if finished or ending or suspended:
            active = [p for p in active if p["metadata"]["uid"] not in
                      self._expect_deletes.get(key, set())]
            removed = await self._delete_pods(key, job, active)
            terminating += removed
            active = [p for p in active if p not in removed]
        elif self._expectations_met(key):
            active = await self._manage(key, job, status, active, terminating, succeeded)

        if ending and not active and not terminating and not n_unc_succ and not n_unc_fail:
            if _true(conds, "FailureTarget"):
                reason, message = _condition(conds, "FailureTarget")
                _ensure(conds, "Failed", "True", reason, message, now)
                events.append(("Warning", reason, message))
            else:
                reason, message = _condition(conds, "SuccessCriteriaMet")
                _ensure(conds, "Complete", "True", reason, message, now)
                status["completionTime"] = _rfc3339(now)
                events.append(("Normal", "Completed", "Job completed"))

        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        status["terminating"] = len(terminating)
        status.setdefault("succeeded", 0)
        status.setdefault("failed", 0)
        if not conds:
            del status["conditions"]
        await self._write_status(job, status)
        for ev in events:
            await self._event(job, *ev)

    # -- pods ------------------------------------------------------------------------

    async def _manage(self, key: str, job: Obj, status: Obj, active: list[Obj],
                      terminating: list[Obj], succeeded: int) -> list[Obj]:
        """Create or delete pods toward the wanted number of active pods; returns the
        pods still active afterwards (without the ones created, which the informer
        will show)."""
        spec = job.get("spec") or {}
        parallelism = spec.get("parallelism", 1)
        completions = spec.get("completions")
        if completions is None:  # work queue: once one pod succeeded, start no more
            want = parallelism if succeeded == 0 else len(active)
        else:
            want = max(0, min(parallelism, completions - succeeded))
        if spec.get("podReplacementPolicy") == "Failed":
            want = max(0, want - len(terminating))

        excess: list[Obj] = []
        indexes: list[int | None] = []
        if _indexed(job):
            done = parse_indexes(status.get("completedIndexes") or "")
            running: set[int] = set()
            for pod in sorted(active, key=_creation):
                idx = _index_of(pod)
                if idx is None or idx in done or idx in running or \
                        not 0 <= idx < (completions or 0):
                    excess.append(pod)  # duplicate, finished or invalid index
                else:
                    running.add(idx)
            want = max(0, min(parallelism, (completions or 0) - len(done)))
            free = [i for i in range(completions or 0) if i not in done and i not in running]
            kept = [p for p in active if p not in excess]
            if len(kept) > want:
                excess += _removal_order(kept)[:len(kept) - want]
            indexes = free[:max(0, want - min(len(kept), want))]
        else:
            if len(active) > want:
                excess = _removal_order(active)[:len(active) - want]
            indexes = [None] * max(0, want - len(active))

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
        self._expect_creates[key] = (len(indexes), time.monotonic())
        batch, pos = 1, 0
        while pos < len(indexes):
            chunk = indexes[pos:pos + batch]
            pos += len(chunk)
            failure: Exception | None = None
            for idx in chunk:
                try:
                    pod = await self.client.create(self.pods_rt, _pod_for(job, idx),
                                                   job["metadata"]["namespace"])
                except Exception as e:  # counted, reported, retried below
                    self._creation_not_coming(key)
                    failure = e
                    if isinstance(e, errors.ApiError):
                        await self._event(job, "Warning", "FailedCreate",
                                          f"Error creating: {e.message}")
                    continue
                await self._event(job, "Normal", "SuccessfulCreate",
                                  f"Created pod: {pod['metadata']['name']}")
            if failure is not None:
                for _ in indexes[pos:]:
                    self._creation_not_coming(key)
                raise failure
            batch *= 2

    def _creation_not_coming(self, key: str) -> None:
        n, since = self._expect_creates.get(key, (0, 0.0))
        self._expect_creates[key] = (max(0, n - 1), since)

    async def _delete_pods(self, key: str, job: Obj, pods: list[Obj]) -> list[Obj]:
        removed: list[Obj] = []
        expected = self._expect_deletes.setdefault(key, set())
        for pod in pods:
            m = pod["metadata"]
            expected.add(m["uid"])
            try:
                await self.client.delete(self.pods_rt, m["name"], m["namespace"],
                                         preconditions={"uid": m["uid"]})
            except errors.ApiError as e:
                expected.discard(m["uid"])
                if e.code not in (404, 409):
                    raise
                continue
            removed.append(pod)
            await self._event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
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

    # -- backoff ---------------------------------------------------------------------

    def _record_backoff(self, key: str, new_succ: list[Obj], new_fail: list[Obj]) -> None:
        failures, last = self._backoff.get(key, (0, 0.0))
        fail_times = [_finish_time(p) for p in new_fail]
        if new_succ:
            last_success = max(_finish_time(p) for p in new_succ)
            fail_times = [t for t in fail_times if t > last_success]
            failures, last = 0, 0.0
        if fail_times:
            failures += len(fail_times)
            last = max(last, *fail_times)
        self._backoff[key] = (failures, last)

    def _backoff_left(self, key: str) -> float:
        failures, last = self._backoff.get(key, (0, 0.0))
        if failures == 0:
            return 0.0
        delay = min(self.backoff_base * 2 ** (failures - 1), self.backoff_max)
        return last + delay - time.time()

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


# -- the pod a Job creates ---------------------------------------------------------------

def _pod_for(job: Obj, index: int | None) -> Obj:
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


# -- pure helpers --------------------------------------------------------------------------

def parse_indexes(text: str) -> set[int]:
    """`"0-2,4"` → {0, 1, 2, 4} (status.completedIndexes)."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def format_indexes(indexes: set[int]) -> str:
    """{0, 1, 2, 4} → `"0-2,4"`: ascending, consecutive runs as intervals."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(_run(run))
        run = [i]
    if run:
        parts.append(_run(run))
    return ",".join(parts)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def _indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def _index_of(pod: Obj) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _controller_uid(pod: Obj) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            return ref.get("uid")
    return None


def _tracked(pod: Obj | None) -> bool:
    return pod is not None and TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _is_active(pod: Obj) -> bool:
    return not _terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def _is_terminating(pod: Obj) -> bool:
    return not _terminal(pod) and bool(pod["metadata"].get("deletionTimestamp"))


def _creation(pod: Obj) -> str:
    return pod["metadata"].get("creationTimestamp") or ""


def _removal_order(pods: list[Obj]) -> list[Obj]:
    """Which active pods to delete first: unscheduled, then not ready, then newest."""
    def rank(p: Obj) -> tuple[int, int, float]:
        ts = _parse_time(_creation(p)) or 0.0
        return (1 if (p.get("spec") or {}).get("nodeName") else 0,
                1 if is_pod_ready(p) else 0, -ts)
    return sorted(pods, key=rank)


def _past_backoff_limit_on_failure(job: Obj, active: list[Obj]) -> bool:
    """restartPolicy OnFailure: the kubelet restarts containers in place, so their
    restarts count toward backoffLimit."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(cs.get("restartCount") or 0 for p in active
                   for cs in ((p.get("status") or {}).get("initContainerStatuses") or [])
                   + ((p.get("status") or {}).get("containerStatuses") or []))
    limit = spec.get("backoffLimit", 6)
    return restarts > 0 if limit == 0 else restarts >= limit


def _deadline_left(job: Obj, status: Obj, now: dt.datetime) -> float | None:
    seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
    start = _parse_time(status.get("startTime") or "")
    if seconds is None or start is None:
        return None
    return start + seconds - now.timestamp()


def _complete(job: Obj, status: Obj, succeeded: int, active: list[Obj]) -> bool:
    spec = job.get("spec") or {}
    completions = spec.get("completions")
    if _indexed(job):
        return completions is not None and \
            len(parse_indexes(status.get("completedIndexes") or "")) >= completions
    if completions is None:  # work queue: one success and nothing left running
        return succeeded > 0 and not active
    return succeeded >= completions


def _finish_time(pod: Obj) -> float:
    """When a pod finished: its containers' latest termination, else its Ready=False
    transition, else its deletion, else now."""
    status = pod.get("status") or {}
    ends = [_parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
                        or "") for cs in status.get("containerStatuses") or []]
    ends = [t for t in ends if t is not None]
    if ends:
        return max(ends)
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "False":
            t = _parse_time(c.get("lastTransitionTime") or "")
            if t is not None:
                return t
    t = _parse_time(pod["metadata"].get("deletionTimestamp") or "")
    return t if t is not None else time.time()


def _true(conds: list[Obj], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conds)


def _condition(conds: list[Obj], type_: str) -> tuple[str, str]:
    for c in conds:
        if c.get("type") == type_:
            return c.get("reason", ""), c.get("message", "")
    return "", ""


def _ensure(conds: list[Obj], type_: str, status: str, reason: str, message: str,
            now: dt.datetime, *, add: bool = True) -> bool:
    """Set a condition; returns whether it changed. With add=False a missing condition
    stays missing (Suspended=False is only written after a Suspended=True)."""
    stamp = _rfc3339(now)
    for c in conds:
        if c.get("type") == type_:
            if c.get("status") == status:
                return False
            c.update(status=status, reason=reason, message=message,
                     lastProbeTime=stamp, lastTransitionTime=stamp)
            return True
    if not add:
        return False
    conds.append({"type": type_, "status": status, "reason": reason, "message": message,
                  "lastProbeTime": stamp, "lastTransitionTime": stamp})
    return True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


