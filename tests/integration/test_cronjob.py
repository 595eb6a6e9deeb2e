"""The CronJob controller against a real API server, on a clock the test moves (Jobs
are finished by setting their status, as the Job controller would), and an `@every`
schedule on the real clock with the Job controller, the scheduler and simulated nodes.
The grammar itself is tested in tests/unit/api/test_cron.py."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from pinnace.client.client import Client
from pinnace.controllers.cronjob import CronJobController
from tests.integration.conftest import Components, eventually

NS = "default"
UTC = dt.UTC


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


async def test_every_10s_creates_jobs_that_run_on_simulated_nodes(
        client: Client, components: Components) -> None:
    """`@every 10s` on the real clock: accepted by validation, run by the controller 10 s
    after the CronJob's creation, and the Job it creates runs to completion on a
    simulated node (scheduler, Job controller, FakeNodes), which the CronJob's status
    then reports. Jobs are named by the minute of their scheduled time, as Kubernetes
    names them, so a 10 s schedule starts at most one Job a minute."""
    from pinnace.agent import FakeNodes
    from pinnace.controllers.job import JobController
    from pinnace.scheduler.scheduler import Scheduler

    cjs = client.resource("batch/v1", "CronJob")
    body = cronjob("every", schedule="@every 10s")
    body["spec"]["jobTemplate"]["spec"]["template"]["metadata"] = {"annotations": {
        "pinnace.io/fake-exit-after": "0s", "pinnace.io/fake-exit-code": "0"}}
    cj = await client.create(cjs, body, NS)
    created = dt.datetime.fromisoformat(cj["metadata"]["creationTimestamp"].replace(
        "Z", "+00:00"))
    await components.start(
        CronJobController(client, components.factory),
        JobController(client, components.factory),
        Scheduler(client, components.factory),
        FakeNodes(client, components.factory, count=1, lease_period=0.5))

    await eventually(lambda: count(client, "every", 1), within=20)
    job = (await jobs(client, "every"))[0]
    first = created + dt.timedelta(seconds=10)
    assert job["metadata"]["name"] == f"every-{int(first.timestamp() // 60)}"
    stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert dt.datetime.fromisoformat(stamp) == first

    async def succeeded() -> bool:
        status = (await client.get(cjs, "every", NS)).get("status") or {}
        return bool(status.get("lastSuccessfulTime")) and not status.get("active")
    await eventually(succeeded, within=10)
    status = (await client.get(cjs, "every", NS))["status"]
    # the schedule went on every 10 s from the first run, whether or not a Job was new
    last = dt.datetime.fromisoformat(status["lastScheduleTime"].replace("Z", "+00:00"))
    assert (last - first).total_seconds() % 10 == 0
