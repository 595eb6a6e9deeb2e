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
itself is `CronSchedule`, a pure parser and next-time calculator.
"""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller, owner_key

Obj = dict[str, Any]
COMPONENT = "cronjob-controller"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100  # more missed times than this: warn, as Kubernetes does

# -- the schedule ------------------------------------------------------------------------

_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_MONTHS = {n: i for i, n in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
# (low, high, names) per field: minute, hour, day of month, month, day of week
_FIELDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 7, _DAYS))


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_star: bool  # day of month given as * (then both day fields must match)
    weekday_star: bool
    tz: dt.tzinfo

    @classmethod
    def parse(cls, text: str, time_zone: str | None = None) -> CronSchedule:
        """Five fields (ranges `a-b`, steps `/n`, lists, month and day names, `*`/`?`)
        or a descriptor (`@hourly`…), optionally prefixed by `TZ=zone` / `CRON_TZ=zone`.
        Raises ValueError on a malformed schedule or unknown zone."""
        text = text.strip()
        zone = time_zone
        if text.startswith(("TZ=", "CRON_TZ=")):
            prefix, _, text = text.partition(" ")
            zone = prefix.split("=", 1)[1]
            text = text.strip()
        text = _DESCRIPTORS.get(text.lower(), text)
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {text!r}")
        sets = [_parse_field(f, lo, hi, names)
                for f, (lo, hi, names) in zip(fields, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
        try:
            tz: dt.tzinfo = zoneinfo.ZoneInfo(zone) if zone else dt.UTC
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {zone!r}") from e
        return cls(sets[0], sets[1], sets[2], sets[3], weekdays,
                   fields[2] in ("*", "?") or fields[2].startswith("*/"),
                   fields[4] in ("*", "?") or fields[4].startswith("*/"), tz)

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first scheduled time strictly after t (an aware datetime), in UTC."""
        local = t.astimezone(self.tz).replace(second=0, microsecond=0, tzinfo=None)
        local += dt.timedelta(minutes=1)
        limit = local + dt.timedelta(days=366 * 5)
        while local < limit:
            if local.month not in self.months:
                local = (local.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)
                         ).replace(day=1)
                continue
            if not self._day_matches(local):
                local = local.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if local.hour not in self.hours:
                local = local.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if local.minute not in self.minutes:
                local += dt.timedelta(minutes=1)
                continue
            aware = local.replace(tzinfo=self.tz)
            # a wall time skipped by a DST jump does not exist: move on
            if aware.astimezone(dt.UTC).astimezone(self.tz).replace(tzinfo=None) != local:
                local += dt.timedelta(minutes=1)
                continue
            return aware.astimezone(dt.UTC)
        raise ValueError("schedule never fires")

    def _day_matches(self, d: dt.datetime) -> bool:
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        # cron: with both day fields restricted, either one matching is enough
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow


def _parse_field(text: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(f"step must be positive: {part!r}")
        if rng in ("*", "?"):
            start, end = lo, hi
        else:
            a, dash, b = rng.partition("-")
            start = _value(a, names)
            end = _value(b, names) if dash else (hi if step_text else start)
        if not lo <= start <= end <= hi:
            raise ValueError(f"{part!r} is out of range {lo}-{hi}")
        out.update(range(start, end + 1, step))
    return frozenset(out)


def _value(text: str, names: dict[str, int]) -> int:
    low = text.lower()
    if low in names:
        return names[low]
    if not text.isdigit():
        raise ValueError(f"invalid value {text!r}")
    return int(text)


# -- the controller ----------------------------------------------------------------------

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
            schedule = CronSchedule.parse(spec.get("schedule", ""), spec.get("timeZone"))
        except ValueError as e:
            await self._event(cj, "Warning", "UnparseableSchedule",
                              f"unparseable schedule: {spec.get('schedule')!r} : {e}")
            return await self._write_status(cj, status, running)
        if spec.get("suspend"):
            return await self._write_status(cj, status, running)

        scheduled, missed = _most_recent(cj, schedule, now)
        self.queue.add_after(key, (schedule.next_after(now) - now).total_seconds() + 0.1)
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
            status["lastScheduleTime"] = _rfc3339(scheduled)
            return await self._write_status(cj, status, running)
        if deadline is not None and scheduled < now - dt.timedelta(seconds=deadline):
            await self._event(cj, "Warning", "MissSchedule",
                              f"Missed scheduled time to start a job: {_rfc3339(scheduled)}")
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
        status["lastScheduleTime"] = _rfc3339(scheduled)
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


def _most_recent(cj: Obj, schedule: CronSchedule, now: dt.datetime
                 ) -> tuple[dt.datetime | None, int]:
    """The latest scheduled time in (last schedule or creation, now], and how many
    times fell in that window."""
    status, spec = cj.get("status") or {}, cj.get("spec") or {}
    start = _parse(status.get("lastScheduleTime")) or _parse(
        cj["metadata"].get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        start = max(start, now - dt.timedelta(seconds=deadline))
    latest, count = None, 0
    t = schedule.next_after(start)
    while t <= now:
        latest, count = t, count + 1
        if count > MAX_MISSED:  # too many to walk: find the last one from now backwards
            return _last_before(schedule, now), count
        t = schedule.next_after(t)
    return latest, count


def _last_before(schedule: CronSchedule, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled time ≤ now: widen a window back from now until it holds
    one, then walk that (short) window forward."""
    window = dt.timedelta(minutes=1)
    while window < dt.timedelta(days=366 * 5):
        t = schedule.next_after(now - window)
        if t <= now:
            latest = t
            while (t := schedule.next_after(t)) <= now:
                latest = t
            return latest
        window *= 2
    return None


def _finished(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
