"""CronJob controller: creates Jobs on a cron schedule (Kubernetes 1.32 semantics).

Watches CronJobs and the Jobs they control. `reconcile(key)`:

1. Status from the owned Jobs: finished ones leave `status.active` (a Complete
   one advances `lastSuccessfulTime`), running ones stay.
2. Unless suspended or being deleted: the most recent scheduled time after
   `lastScheduleTime` (or the CronJob's creation) that is not in the future, in
   `spec.timeZone` (or a `TZ=`/`CRON_TZ=` prefix; UTC otherwise). A time older
   than `startingDeadlineSeconds` is missed (Event `MissSchedule`). Otherwise a
   Job `<cronjob>-<scheduled time in minutes since the epoch>` is created from
   `jobTemplate`, after the concurrency policy: Allow runs alongside, Forbid skips
   while a Job is active, Replace deletes the active Jobs first.
3. History: finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit
   are deleted, oldest first.
4. The key is queued again for the next scheduled time.

`now` is the controller's time source (a constructor argument). The schedule
itself is `pinnace.api.cron`, the one parser of the cron grammar (validation uses it
too), including `@every <duration>`, whose runs are anchored at the last scheduled
time as Kubernetes anchors them.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable

from pinnace.api import cron, errors
from pinnace.api.conditions import is_true
from pinnace.api.timestamps import format_time, parse_time
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller, owner_key

COMPONENT = "cronjob-controller"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100  # more missed times than this: warn, as Kubernetes does


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 now: Callable[[], dt.datetime] = _utcnow) -> None:
        super().__init__(client, factory)
        self.now = now
        self.cronjobs_rt = client.resource("batch/v1", "CronJob")
        self.jobs_rt = client.resource("batch/v1", "Job")
        self.cronjobs = factory.informer("batch/v1", "CronJob")
        self.jobs = factory.informer("batch/v1", "Job")
        self.jobs.add_index("cronjob-controller:owner",
                            lambda j: [owner_key(j, "CronJob") or ""])
        self.cronjobs.add_handler(self.enqueue, lambda _o, n: self.enqueue(n))
        self.jobs.add_handler(self._job_changed, lambda _o, n: self._job_changed(n),
                              self._job_changed)

    def _job_changed(self, job: Obj) -> None:
        key = owner_key(job, "CronJob")
        if key:
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        cj = self.cronjobs.get(key)
        if cj is None:
            return
        m = cj["metadata"]
        uid = m["uid"]
        jobs = [j for j in self.jobs.by_index("cronjob-controller:owner", key)
                if any(r.get("uid") == uid and r.get("controller")
                       for r in j["metadata"].get("ownerReferences") or [])]
        spec = cj.get("spec") or {}
        status = copy.deepcopy(cj.get("status") or {})
        running = [j for j in jobs if _finished(j) is None]
        for j in jobs:
            if _finished(j) == "Complete":
                done = (j.get("status") or {}).get("completionTime")
                if done and done > (status.get("lastSuccessfulTime") or ""):
                    status["lastSuccessfulTime"] = done
        now = self.now()
        if m.get("deletionTimestamp"):
            return await self._write_status(cj, status, running)
        await self._clean_history(cj, jobs)
        try:
            schedule = cron.parse(spec.get("schedule", ""), spec.get("timeZone"))
        except ValueError as e:
            return await self._unparseable(cj, status, running, e)
        if spec.get("suspend"):
            return await self._write_status(cj, status, running)
        try:
            scheduled, missed, next_run = _runs(cj, schedule, now)
        except ValueError as e:  # a schedule that never fires ("0 0 30 feb *")
            return await self._unparseable(cj, status, running, e)

        self.queue.add_after(key, (next_run - now).total_seconds() + 0.1)
        if scheduled is None:
            return await self._write_status(cj, status, running)
        if missed > MAX_MISSED:
            await self._event(cj, "Warning", "TooManyMissedTimes",
                              "too many missed start times. Set or decrease "
                              ".spec.startingDeadlineSeconds or check clock skew")
        deadline = spec.get("startingDeadlineSeconds")
        name = f"{m['name']}-{int(scheduled.timestamp() // 60)}"
        if any(j["metadata"]["name"] == name for j in jobs):
            # created by an earlier attempt whose status write did not land
            status["lastScheduleTime"] = format_time(scheduled)
            return await self._write_status(cj, status, running)
        if deadline is not None and scheduled < now - dt.timedelta(seconds=deadline):
            await self._event(cj, "Warning", "MissSchedule",
                              f"Missed scheduled time to start a job: {format_time(scheduled)}")
            return await self._write_status(cj, status, running)
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and running:
            await self._event(cj, "Normal", "JobAlreadyActive", "Not starting job because "
                              "prior execution is running and concurrency policy is Forbid")
            return await self._write_status(cj, status, running)
        if policy == "Replace":
            for j in running:
                await self._delete_job(cj, j)
            running = []
        job = await self._create_job(cj, name, scheduled.astimezone(schedule.tz))
        if job is not None:
            running.append(job)
        status["lastScheduleTime"] = format_time(scheduled)
        await self._write_status(cj, status, running)

    async def _unparseable(self, cj: Obj, status: Obj, running: list[Obj],
                           error: ValueError) -> None:
        schedule = (cj.get("spec") or {}).get("schedule")
        await self._event(cj, "Warning", "UnparseableSchedule",
                          f"unparseable schedule: {schedule!r} : {error}")
        await self._write_status(cj, status, running)

    async def _create_job(self, cj: Obj, name: str, scheduled: dt.datetime) -> Obj | None:
        """scheduled: in the schedule's time zone, for the annotation."""
        m = cj["metadata"]
        template = copy.deepcopy((cj.get("spec") or {}).get("jobTemplate") or {})
        tmeta = template.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP] = scheduled.isoformat()  # in the schedule's zone
        job = {"metadata": {
            "name": name, "namespace": m["namespace"],
            "labels": dict(tmeta.get("labels") or {}), "annotations": annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": m["name"],
                                 "uid": m["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]},
            "spec": template.get("spec") or {}}
        try:
            created = await self.client.create(self.jobs_rt, job, m["namespace"])
        except errors.ApiError as e:
            if e.code == 409:  # created by an earlier attempt whose status write failed
                return None
            await self._event(cj, "Warning", "FailedCreate", f"Error creating job: {e.message}")
            if e.code == 422:
                return None  # the user's template is invalid: retrying won't help
            raise
        await self._event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        return created

    async def _delete_job(self, cj: Obj, job: Obj) -> None:
        jm = job["metadata"]
        try:
            await self.client.delete(self.jobs_rt, jm["name"], jm["namespace"],
                                     propagation_policy="Background",
                                     preconditions={"uid": jm["uid"]})
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise
            return
        await self._event(cj, "Normal", "SuccessfulDelete", f"Deleted job {jm['name']}")

    async def _clean_history(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj.get("spec") or {}
        for outcome, field, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                        ("Failed", "failedJobsHistoryLimit", 1)):
            limit = spec.get(field, default)
            done = [j for j in jobs if _finished(j) == outcome
                    and not j["metadata"].get("deletionTimestamp")]
            done.sort(key=lambda j: ((j.get("status") or {}).get("startTime")
                                     or j["metadata"].get("creationTimestamp") or "",
                                     j["metadata"]["name"]))
            for j in done[:max(0, len(done) - limit)]:
                await self._delete_job(cj, j)

    async def _write_status(self, cj: Obj, status: Obj, running: list[Obj]) -> None:
        refs = [{"apiVersion": "batch/v1", "kind": "Job", "name": j["metadata"]["name"],
                 "namespace": j["metadata"]["namespace"], "uid": j["metadata"]["uid"],
                 "resourceVersion": j["metadata"].get("resourceVersion")} for j in running]
        # keep existing refs as written (resourceVersion churn is not a change)
        old = {r.get("uid"): r for r in (cj.get("status") or {}).get("active") or []}
        refs = [old.get(r["uid"], r) for r in refs]
        refs.sort(key=lambda r: r["name"])
        if refs:
            status["active"] = refs
        else:
            status.pop("active", None)
        if status == (cj.get("status") or {}):
            return
        await self.client.update_status(self.cronjobs_rt, {**cj, "status": status})

    async def _event(self, cj: Obj, type_: str, reason: str, message: str) -> None:
        await record_event(self.client, cj, component=COMPONENT, type_=type_, reason=reason,
                           message=message)


def _runs(cj: Obj, schedule: cron.CronSchedule | cron.EverySchedule, now: dt.datetime
          ) -> tuple[dt.datetime | None, int, dt.datetime]:
    """The latest scheduled time in (last schedule or creation, now], how many times
    fell in that window, and the next run after now. Both are counted from the same
    start, so `@every` keeps the grid of its first run, as Kubernetes'
    mostRecentScheduleTime and nextScheduleTime do."""
    status, spec = cj.get("status") or {}, cj.get("spec") or {}
    start = parse_time(status.get("lastScheduleTime")) or parse_time(
        cj["metadata"].get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        start = max(start, now - dt.timedelta(seconds=deadline))
    latest, count = cron.most_recent(schedule, start, now, walk_limit=MAX_MISSED)
    return latest, count, schedule.next_after(latest or start)


def _finished(job: Obj) -> str | None:
    conditions = (job.get("status") or {}).get("conditions")
    return next((t for t in ("Complete", "Failed") if is_true(conditions, t)), None)
