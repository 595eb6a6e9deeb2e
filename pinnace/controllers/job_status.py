"""The Job's status as pure functions of the Job and its observed pods.

What `job.py` decides and writes, computed here without I/O (Kubernetes'
`pkg/controller/job` splits it the same way), in the order a reconcile uses them:

1. `track(job, pods)`: finished pods not yet counted go to
   `status.uncountedTerminatedPods` (and, for Indexed Jobs, `completedIndexes`);
   the pods whose tracking finalizer is to come off are named.
   `count_uncounted(status, pods)` then moves every uncounted uid whose pod shows no
   finalizer any more (or is gone) into `succeeded`/`failed`.
2. `update_conditions(job, pods, now)`: Suspended True/False, startTime,
   FailureTarget (BackoffLimitExceeded, DeadlineExceeded) and SuccessCriteriaMet;
   whether every active pod must go, and when to look again for the deadline.
3. `calculate_status(job, status, active, terminating, now)`: once the pods of an
   ending Job are all gone the terminal condition (Failed, or Complete with
   completionTime) with the reason of its target, and the active/ready/terminating
   counts.

Conditions keep Kubernetes' rule: a condition already at the wanted status is left
as it is (reason and times included); a change stamps lastProbeTime and
lastTransitionTime.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from dataclasses import dataclass, field

from pinnace.api.conditions import find, is_true, new_condition
from pinnace.api.timestamps import format_time, to_epoch
from pinnace.api.types import Obj
from pinnace.controllers.pod_template import is_pod_active, is_pod_ready

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")

# (type, reason, message) of an Event to record on the Job
Event = tuple[str, str, str]


# -- completed indexes ---------------------------------------------------------------------

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


def is_indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def index_of(pod: Obj) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def completed_indexes(status: Obj) -> set[int]:
    return parse_indexes(status.get("completedIndexes") or "")


# -- step 1: tracking finished pods --------------------------------------------------------

def is_tracked(pod: Obj | None) -> bool:
    return pod is not None and TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


@dataclass
class Tracking:
    """Step 1's outcome: the status with the newly finished pods uncounted, and which
    pods lose the tracking finalizer."""

    status: Obj
    succeeded: list[Obj] = field(default_factory=list)  # newly finished
    failed: list[Obj] = field(default_factory=list)
    release: list[Obj] = field(default_factory=list)  # finalizer off, never counted

    @property
    def changed(self) -> bool:
        return bool(self.succeeded or self.failed)


def track(job: Obj, pods: list[Obj]) -> Tracking:
    """Finished pods → uncountedTerminatedPods. A pod deleted before it finished counts
    as failed, except while the Job is suspended (then it is only released); an extra
    success of an index already done is released without counting."""
    spec = job.get("spec") or {}
    status = copy.deepcopy(job.get("status") or {})
    uncounted = status.get("uncountedTerminatedPods") or {}
    unc_succ = list(uncounted.get("succeeded") or [])
    unc_fail = list(uncounted.get("failed") or [])
    seen = set(unc_succ) | set(unc_fail)
    indexed = is_indexed(job)
    completions = spec.get("completions")
    done = completed_indexes(status)
    suspended = bool(spec.get("suspend"))
    out = Tracking(status)
    for pod in pods:
        m = pod["metadata"]
        if not is_tracked(pod) or m["uid"] in seen:
            continue
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            if indexed:
                idx = index_of(pod)
                if idx is None or completions is None or not 0 <= idx < completions \
                        or idx in done:
                    out.release.append(pod)
                    continue
                done.add(idx)
            out.succeeded.append(pod)
        elif phase == "Failed" or (m.get("deletionTimestamp") and not suspended):
            out.failed.append(pod)
        elif m.get("deletionTimestamp"):
            out.release.append(pod)  # removed by suspension: neither success nor failure
    if out.changed:
        unc_succ += [p["metadata"]["uid"] for p in out.succeeded]
        unc_fail += [p["metadata"]["uid"] for p in out.failed]
        status["uncountedTerminatedPods"] = {"succeeded": unc_succ, "failed": unc_fail}
        if indexed:
            status["completedIndexes"] = format_indexes(done)
    return out


def uncounted_uids(status: Obj) -> list[str]:
    uncounted = status.get("uncountedTerminatedPods") or {}
    return list(uncounted.get("succeeded") or []) + list(uncounted.get("failed") or [])


def count_uncounted(status: Obj, pods: list[Obj]) -> Obj:
    """The status with every uncounted pod that lost its finalizer (or is gone) moved
    into the counters; the same object when none did."""
    by_uid = {p["metadata"]["uid"]: p for p in pods}
    uncounted = status.get("uncountedTerminatedPods") or {}
    unc_succ = list(uncounted.get("succeeded") or [])
    unc_fail = list(uncounted.get("failed") or [])
    still_succ = [u for u in unc_succ if is_tracked(by_uid.get(u))]
    still_fail = [u for u in unc_fail if is_tracked(by_uid.get(u))]
    moved_succ = len(unc_succ) - len(still_succ)
    moved_fail = len(unc_fail) - len(still_fail)
    if not moved_succ and not moved_fail:
        return status
    status = copy.deepcopy(status)
    status["succeeded"] = (status.get("succeeded") or 0) + moved_succ
    status["failed"] = (status.get("failed") or 0) + moved_fail
    status["uncountedTerminatedPods"] = {"succeeded": still_succ, "failed": still_fail}
    return status


# -- step 2: conditions --------------------------------------------------------------------

def set_job_condition(conds: list[Obj], type_: str, status: str, reason: str, message: str,
                      now: dt.datetime, *, add: bool = True) -> bool:
    """Set a condition; returns whether it changed. A condition already at `status` is
    left alone; with add=False a missing condition stays missing (Suspended=False is
    only written after a Suspended=True)."""
    current = find(conds, type_)
    if current is not None and current.get("status") == status:
        return False
    if current is None and not add:
        return False
    cond = new_condition(type_, status, reason, message, now=format_time(now),
                         extra_times=("lastProbeTime",))
    if current is None:
        conds.append(cond)
    else:
        conds[conds.index(current)] = cond
    return True


@dataclass
class ConditionsStep:
    """Step 2's outcome."""

    status: Obj
    events: list[Event]
    finished: bool  # Complete or Failed already
    ending: bool  # FailureTarget or SuccessCriteriaMet, terminal condition still to come
    requeue_after: float | None  # the activeDeadlineSeconds still left

    def stop_pods(self, job: Obj) -> bool:
        """Every active pod must go: the Job is done, ending or suspended."""
        return self.finished or self.ending or bool((job.get("spec") or {}).get("suspend"))


def update_conditions(job: Obj, status: Obj, pods: list[Obj], now: dt.datetime
                      ) -> ConditionsStep:
    spec = job.get("spec") or {}
    status = copy.deepcopy(status)
    conds: list[Obj] = status.setdefault("conditions", [])
    active = [p for p in pods if is_pod_active(p)]
    uncounted = status.get("uncountedTerminatedPods") or {}
    succeeded = (status.get("succeeded") or 0) + len(uncounted.get("succeeded") or [])
    failed = (status.get("failed") or 0) + len(uncounted.get("failed") or [])
    suspended = bool(spec.get("suspend"))
    events: list[Event] = []
    requeue_after: float | None = None
    finished = is_true(conds, "Complete") or is_true(conds, "Failed")

    if not finished and not (is_true(conds, "FailureTarget")
                             or is_true(conds, "SuccessCriteriaMet")):
        if suspended:
            if set_job_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended",
                                 now):
                events.append(("Normal", "Suspended", "Job suspended"))
        elif set_job_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now,
                               add=False):
            events.append(("Normal", "Resumed", "Job resumed"))
            # activeDeadlineSeconds counts continuous activity: restart the clock
            status["startTime"] = format_time(now)
        if not suspended and not status.get("startTime"):
            status["startTime"] = format_time(now)
        if failed > spec.get("backoffLimit", 6) or past_backoff_limit_on_failure(job, active):
            set_job_condition(conds, "FailureTarget", "True", *BACKOFF_LIMIT_EXCEEDED, now)
        elif not suspended and (left := deadline_left(job, status, now)) is not None:
            if left <= 0:
                set_job_condition(conds, "FailureTarget", "True", *DEADLINE_EXCEEDED, now)
            else:
                requeue_after = left
        if not is_true(conds, "FailureTarget") and is_complete(job, status, succeeded, active):
            set_job_condition(conds, "SuccessCriteriaMet", "True", *COMPLETIONS_REACHED, now)

    ending = not finished and (is_true(conds, "FailureTarget")
                               or is_true(conds, "SuccessCriteriaMet"))
    return ConditionsStep(status, events, finished, ending, requeue_after)


def past_backoff_limit_on_failure(job: Obj, active: list[Obj]) -> bool:
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


def deadline_left(job: Obj, status: Obj, now: dt.datetime) -> float | None:
    """Seconds of activeDeadlineSeconds left since startTime (None: no deadline)."""
    seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
    start = to_epoch(status.get("startTime"))
    if seconds is None or start is None:
        return None
    return start + seconds - now.timestamp()


def is_complete(job: Obj, status: Obj, succeeded: int, active: list[Obj]) -> bool:
    completions = (job.get("spec") or {}).get("completions")
    if is_indexed(job):
        return completions is not None and len(completed_indexes(status)) >= completions
    if completions is None:  # work queue: one success and nothing left running
        return succeeded > 0 and not active
    return succeeded >= completions


# -- step 3: the terminal condition and the counts -----------------------------------------

def calculate_status(step: ConditionsStep, active: list[Obj], terminating: list[Obj],
                     now: dt.datetime) -> tuple[Obj, list[Event]]:
    """The status to write after the pods were managed: an ending Job with no pod left
    running or uncounted gets its terminal condition; counts of what is observed."""
    status = copy.deepcopy(step.status)
    conds: list[Obj] = status.setdefault("conditions", [])
    events = list(step.events)
    if step.ending and not active and not terminating and not uncounted_uids(status):
        if is_true(conds, "FailureTarget"):
            target = find(conds, "FailureTarget") or {}
            reason, message = target.get("reason", ""), target.get("message", "")
            set_job_condition(conds, "Failed", "True", reason, message, now)
            events.append(("Warning", reason, message))
        else:
            target = find(conds, "SuccessCriteriaMet") or {}
            set_job_condition(conds, "Complete", "True", target.get("reason", ""),
                              target.get("message", ""), now)
            status["completionTime"] = format_time(now)
            events.append(("Normal", "Completed", "Job completed"))
    status["active"] = len(active)
    status["ready"] = sum(1 for p in active if is_pod_ready(p))
    status["terminating"] = len(terminating)
    status.setdefault("succeeded", 0)
    status.setdefault("failed", 0)
    if not conds:
        del status["conditions"]
    return status, events


# -- pods: which to delete first, when one finished ---------------------------------------

def removal_order(pods: list[Obj]) -> list[Obj]:
    """Which active pods to delete first: unscheduled, then not ready, then newest."""
    def rank(p: Obj) -> tuple[int, int, float]:
        return (1 if (p.get("spec") or {}).get("nodeName") else 0,
                1 if is_pod_ready(p) else 0,
                -(to_epoch(p["metadata"].get("creationTimestamp")) or 0.0))
    return sorted(pods, key=rank)


def finish_time(pod: Obj) -> float:
    """When a pod finished: its containers' latest termination, else its Ready=False
    transition, else its deletion, else now."""
    status = pod.get("status") or {}
    ends = [to_epoch(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for cs in status.get("containerStatuses") or []]
    known = [t for t in ends if t is not None]
    if known:
        return max(known)
    ready = find(status.get("conditions"), "Ready")
    if ready is not None and ready.get("status") == "False":
        t = to_epoch(ready.get("lastTransitionTime"))
        if t is not None:
            return t
    t = to_epoch(pod["metadata"].get("deletionTimestamp"))
    return t if t is not None else time.time()
