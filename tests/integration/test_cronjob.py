"""The cron schedule (pure) and the CronJob controller against a real API server, on a
clock the test moves; Jobs are finished by setting their status, as the Job controller
would."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from pinnace.client.client import Client
from pinnace.controllers.cronjob import CronJobController, CronSchedule
from tests.integration.conftest import Components, eventually

NS = "default"
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def runs(schedule: str, start: str, n: int, tz: str | None = None) -> list[str]:
    s = CronSchedule.parse(schedule, tz)
    out, t = [], at(start)
    for _ in range(n):
        t = s.next_after(t)
        out.append(t.strftime("%Y-%m-%d %H:%M %a"))
    return out


def test_schedule_next_times() -> None:
    assert runs("* * * * *", "2024-03-01T10:00:30", 2) == ["2024-03-01 10:01 Fri",
                                                          "2024-03-01 10:02 Fri"]
    assert runs("*/15 9-10 * * *", "2024-03-01T10:40", 3) == [
        "2024-03-01 10:45 Fri", "2024-03-02 09:00 Sat", "2024-03-02 09:15 Sat"]
    assert runs("0 12 * * MON-FRI", "2024-03-01T13:00", 2) == [
        "2024-03-04 12:00 Mon", "2024-03-05 12:00 Tue"]
    assert runs("30 4 1,15 * *", "2024-02-10T00:00", 2) == [
        "2024-02-15 04:30 Thu", "2024-03-01 04:30 Fri"]
    assert runs("@hourly", "2024-03-01T10:59", 1) == ["2024-03-01 11:00 Fri"]
    assert runs("@yearly", "2024-03-01T00:00", 1) == ["2025-01-01 00:00 Wed"]
    assert runs("0 0 29 feb *", "2024-03-01T00:00", 1) == ["2028-02-29 00:00 Tue"]
    assert runs("0 0 * jan-mar/2 *", "2024-01-31T12:00", 1) == ["2024-03-01 00:00 Fri"]
    # both day fields restricted: either matches (13th or any Friday)
    assert runs("0 0 13 * 5", "2024-09-01T00:00", 3) == [
        "2024-09-06 00:00 Fri", "2024-09-13 00:00 Fri", "2024-09-20 00:00 Fri"]
    assert runs("0 0 * * 7", "2024-03-01T00:00", 1) == ["2024-03-03 00:00 Sun"]


def test_schedule_time_zones() -> None:
    # 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer
    assert runs("0 9 * * *", "2024-03-30T12:00", 2, tz="Europe/Paris") == [
        "2024-03-31 07:00 Sun", "2024-04-01 07:00 Mon"]
    assert runs("TZ=Europe/Paris 0 9 * * *", "2024-01-10T12:00", 1) == [
        "2024-01-11 08:00 Thu"]
    # 02:30 does not exist in Paris on 2024-03-31 (clocks jump 02:00 → 03:00)
    assert runs("30 2 * * *", "2024-03-30T12:00", 1, tz="Europe/Paris") == [
        "2024-04-01 00:30 Mon"]


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
                                 "*/0 * * * *", "5-1 * * * *", "* * * foo *", "@often"])
def test_schedule_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        CronSchedule.parse(bad)
    with pytest.raises(ValueError):
        CronSchedule.parse("* * * * *", "Mars/Olympus")


class Clock:
    def __init__(self, t: dt.datetime) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t


def cronjob(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "schedule": "* * * * *",
        "jobTemplate": {"metadata": {"labels": {"app": name}}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}},
        **spec}}


async def jobs(client: Client, app: str) -> list[dict[str, Any]]:
    out = await client.list(client.resource("batch/v1", "Job"), NS, label_selector=f"app={app}")
    return sorted(out["items"], key=lambda j: j["metadata"]["name"])


async def finish(client: Client, job: dict[str, Any], outcome: str = "Complete") -> None:
    now = dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {"startTime": now, "conditions": [
        {"type": outcome, "status": "True", "lastTransitionTime": now}]}
    if outcome == "Complete":
        status["completionTime"] = now
        status["succeeded"] = 1
    await client.patch(client.resource("batch/v1", "Job"), job["metadata"]["name"],
                       {"status": status}, namespace=NS, subresource="status")


async def tick(client: Client, clock: Clock, name: str, minutes: int = 1) -> None:
    """Move the clock on, and touch the CronJob so its controller looks again now
    rather than at the (real-time) moment it planned."""
    clock.t += dt.timedelta(minutes=minutes)
    await client.patch(client.resource("batch/v1", "CronJob"), name,
                       {"metadata": {"annotations": {"tick": clock.t.isoformat()}}},
                       namespace=NS)


async def setup(client: Client, components: Components, name: str, **spec: Any
                ) -> tuple[Clock, dict[str, Any]]:
    cjs = client.resource("batch/v1", "CronJob")
    cj = await client.create(cjs, cronjob(name, **spec), NS)
    created = dt.datetime.fromisoformat(cj["metadata"]["creationTimestamp"].replace(
        "Z", "+00:00"))
    clock = Clock(created.replace(second=30))  # half a minute after the last full minute
    await components.start(CronJobController(client, components.factory, now=clock))
    return clock, cj


async def count(client: Client, app: str, n: int) -> bool:
    return len(await jobs(client, app)) == n


async def test_runs_on_schedule_and_keeps_history(
        client: Client, components: Components) -> None:
    cjs = client.resource("batch/v1", "CronJob")
    clock, cj = await setup(client, components, "tick", successfulJobsHistoryLimit=1)
    await tick(client, clock, "tick")
    await eventually(lambda: count(client, "tick", 1))
    job = (await jobs(client, "tick"))[0]
    minute = clock.t.replace(second=0)
    assert job["metadata"]["name"] == f"tick-{int(minute.timestamp() // 60)}"
    ref = job["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "CronJob" and ref["uid"] == cj["metadata"]["uid"] and ref["controller"]
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]

    async def status() -> dict[str, Any]:
        return (await client.get(cjs, "tick", NS)).get("status") or {}
    await eventually(lambda: _active_is(status, [job["metadata"]["name"]]))
    assert (await status())["lastScheduleTime"] == minute.strftime("%Y-%m-%dT%H:%M:%SZ")

    await finish(client, job)
    await eventually(lambda: _active_is(status, []))
    assert (await status())["lastSuccessfulTime"]

    await tick(client, clock, "tick")
    await eventually(lambda: count(client, "tick", 2))
    second = (await jobs(client, "tick"))[1]
    await finish(client, second)
    # history limit 1: the older finished Job goes
    await eventually(lambda: _names_are(client, "tick", [second["metadata"]["name"]]))


async def test_forbid_skips_while_running(client: Client, components: Components) -> None:
    clock, _ = await setup(client, components, "solo", concurrencyPolicy="Forbid")
    await tick(client, clock, "solo")
    await eventually(lambda: count(client, "solo", 1))
    await tick(client, clock, "solo")
    await tick(client, clock, "solo")
    await asyncio.sleep(0.3)  # time for a wrong second Job to appear
    assert len(await jobs(client, "solo")) == 1
    await finish(client, (await jobs(client, "solo"))[0])
    await tick(client, clock, "solo")
    await eventually(lambda: count(client, "solo", 2))


async def test_replace_deletes_running_job(client: Client, components: Components) -> None:
    clock, _ = await setup(client, components, "swap", concurrencyPolicy="Replace")
    await tick(client, clock, "swap")
    await eventually(lambda: count(client, "swap", 1))
    first = (await jobs(client, "swap"))[0]["metadata"]["name"]
    await tick(client, clock, "swap")

    async def replaced() -> bool:
        names = [j["metadata"]["name"] for j in await jobs(client, "swap")]
        return len(names) == 1 and names[0] != first
    await eventually(replaced)


async def test_suspend_and_starting_deadline(client: Client, components: Components) -> None:
    clock, _ = await setup(client, components, "late", suspend=True, startingDeadlineSeconds=10)
    await tick(client, clock, "late")
    await tick(client, clock, "late")
    cjs = client.resource("batch/v1", "CronJob")
    assert not await jobs(client, "late")
    # resumed 40 s after the last scheduled minute: past the 10 s deadline, missed
    await client.patch(cjs, "late", {"spec": {"suspend": False}}, namespace=NS)
    clock.t += dt.timedelta(seconds=10)
    await tick(client, clock, "late", minutes=0)
    await asyncio.sleep(0.3)
    assert not await jobs(client, "late")
    clock.t = clock.t.replace(second=5) + dt.timedelta(minutes=1)  # 5 s after a minute
    await tick(client, clock, "late", minutes=0)
    await eventually(lambda: count(client, "late", 1))


async def _active_is(status: Any, names: list[str]) -> bool:
    return [r["name"] for r in (await status()).get("active") or []] == names


async def _names_are(client: Client, app: str, names: list[str]) -> bool:
    return [j["metadata"]["name"] for j in await jobs(client, app)
            if not j["metadata"].get("deletionTimestamp")] == names
