"""The Job controller against a real API server; the test plays the node, setting pod
phases through `pods/<name>/status`."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from pinnace.client.client import Client
from pinnace.controllers.job import JobController
from pinnace.controllers.ttl_after_finished import TTLAfterFinishedController
from tests.integration.conftest import Components, eventually

NS = "default"


def job_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "template": {"spec": {"restartPolicy": "Never",
                              "containers": [{"name": "main", "image": "busybox"}]}},
        **spec}}


class Node:
    """Acts as the node agent: moves pods through phases via the status subresource."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pods_rt = client.resource("v1", "Pod")

    async def pods(self, job: str) -> list[dict[str, Any]]:
        out = await self.client.list(self.pods_rt, NS, label_selector=f"job-name={job}")
        return sorted(out["items"], key=lambda p: p["metadata"]["creationTimestamp"])

    async def running(self, job: str) -> list[dict[str, Any]]:
        return [p for p in await self.pods(job)
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                and not p["metadata"].get("deletionTimestamp")]

    async def finish(self, pod: dict[str, Any], phase: str) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        code = 0 if phase == "Succeeded" else 1
        status = {"phase": phase, "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": now[:19] + "Z"}],
            "containerStatuses": [{
                "name": "main", "image": "busybox", "imageID": "", "ready": False,
                "restartCount": 0, "state": {"terminated": {
                    "exitCode": code, "finishedAt": now, "startedAt": now,
                    "reason": "Completed" if code == 0 else "Error"}}}]}
        await self.client.patch(self.pods_rt, pod["metadata"]["name"], {"status": status},
                                namespace=NS, subresource="status")

    async def ready(self, pod: dict[str, Any]) -> None:
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        await self.client.patch(self.pods_rt, pod["metadata"]["name"], {"status": status},
                                namespace=NS, subresource="status")


async def get_job(client: Client, name: str) -> dict[str, Any]:
    return await client.get(client.resource("batch/v1", "Job"), name, NS)


def condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c["type"] == type_ and c["status"] == "True":
            return c
    return None


async def events(client: Client, job: str) -> list[tuple[str, str]]:
    out = await client.list(client.resource("v1", "Event"), NS)
    return [(e["reason"], e["message"]) for e in out["items"]
            if e["involvedObject"]["name"] == job]


async def start(client: Client, components: Components, **kw: Any) -> JobController:
    ctrl = JobController(client, components.factory, **kw)
    await components.start(ctrl)
    return ctrl


async def test_parallelism_bounds_active_pods_until_complete(
        client: Client, components: Components) -> None:
    await start(client, components)
    node = Node(client)
    await client.create(client.resource("batch/v1", "Job"),
                        job_manifest("work", completions=5, parallelism=2), NS)
    done = 0
    max_active = 0
    while done < 5:
        await eventually(lambda: _has_running(node, "work"))
        await asyncio.sleep(0.1)  # give a misbehaving controller the chance to overshoot
        running = await node.running("work")
        max_active = max(max_active, len(running))
        await node.ready(running[0])
        await node.finish(running[0], "Succeeded")
        done += 1
    await eventually(lambda: _job_has(client, "work", "Complete"))
    job = await get_job(client, "work")
    assert max_active == 2
    st = job["status"]
    assert st["succeeded"] == 5 and st["active"] == 0 and st["failed"] == 0
    assert st["startTime"] and st["completionTime"]
    assert condition(job, "SuccessCriteriaMet")["reason"] == "CompletionsReached"
    assert not st.get("uncountedTerminatedPods", {}).get("succeeded")
    pods = await node.pods("work")
    assert len(pods) == 5
    for pod in pods:  # counted, so no longer held by the tracking finalizer
        assert "batch.kubernetes.io/job-tracking" not in (pod["metadata"].get("finalizers")
                                                          or [])
        ref = pod["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "Job" and ref["controller"] and ref["blockOwnerDeletion"]
        assert pod["metadata"]["name"].startswith("work-")
        assert len(pod["metadata"]["name"]) == len("work-") + 5


async def test_failures_back_off_then_backoff_limit_fails_job(
        client: Client, components: Components) -> None:
    await start(client, components, backoff_base=0.4)
    node = Node(client)
    await client.create(client.resource("batch/v1", "Job"),
                        job_manifest("flaky", backoffLimit=2), NS)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    for _ in range(3):
        await eventually(lambda: _has_running(node, "flaky"))
        pod = (await node.running("flaky"))[0]
        if gaps:
            gaps[-1] = loop.time() - gaps[-1]
        await node.finish(pod, "Failed")
        gaps.append(loop.time())
    gaps.pop()
    await eventually(lambda: _job_has(client, "flaky", "Failed"))
    job = await get_job(client, "flaky")
    assert job["status"]["failed"] == 3 and job["status"]["active"] == 0
    failed = condition(job, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    # recreations waited 0.4 s, then 0.8 s
    assert gaps[0] >= 0.35 and gaps[1] >= 0.75 and gaps[1] > gaps[0]
    assert len(await node.pods("flaky")) == 3


async def test_suspend_removes_pods_and_resume_continues(
        client: Client, components: Components) -> None:
    await start(client, components)
    node = Node(client)
    jobs = client.resource("batch/v1", "Job")
    await client.create(jobs, job_manifest("pause", completions=2, parallelism=2), NS)
    await eventually(lambda: _count_running(node, "pause", 2))
    await client.patch(jobs, "pause", {"spec": {"suspend": True}}, namespace=NS)

    async def suspended() -> bool:
        job = await get_job(client, "pause")
        return condition(job, "Suspended") is not None and job["status"]["active"] == 0 \
            and not await node.pods("pause")
    await eventually(suspended)
    job = await get_job(client, "pause")
    assert condition(job, "Suspended")["reason"] == "JobSuspended"
    assert job["status"]["failed"] == 0  # pods removed by suspension are not failures
    start_before = job["status"]["startTime"]

    await asyncio.sleep(1.0)  # startTime has a resolution of seconds
    await client.patch(jobs, "pause", {"spec": {"suspend": False}}, namespace=NS)
    await eventually(lambda: _count_running(node, "pause", 2))

    async def resumed() -> bool:
        # the status is written after the pods are created: it may trail them a little
        job = await get_job(client, "pause")
        return any(c["type"] == "Suspended" and c["status"] == "False"
                   for c in job["status"]["conditions"])
    await eventually(resumed)
    job = await get_job(client, "pause")
    cond = next(c for c in job["status"]["conditions"] if c["type"] == "Suspended")
    assert cond["reason"] == "JobResumed"
    assert job["status"]["startTime"] > start_before
    for pod in await node.running("pause"):
        await node.finish(pod, "Succeeded")
    await eventually(lambda: _job_has(client, "pause", "Complete"))


async def test_indexed_job_runs_each_index_once(
        client: Client, components: Components) -> None:
    await start(client, components, backoff_base=0.1)
    node = Node(client)
    await client.create(client.resource("batch/v1", "Job"), job_manifest(
        "idx", completions=4, parallelism=2, completionMode="Indexed"), NS)
    succeeded: list[int] = []
    failed_once = False
    while len(succeeded) < 4:
        await eventually(lambda: _has_running(node, "idx"))
        pod = (await node.running("idx"))[0]
        index = int(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == \
            str(index)
        assert pod["metadata"]["name"].startswith(f"idx-{index}-")
        env = pod["spec"]["containers"][0]["env"]
        assert env[0]["name"] == "JOB_COMPLETION_INDEX"
        if index == 1 and not failed_once:  # a failed index runs again
            failed_once = True
            await node.finish(pod, "Failed")
            continue
        await node.finish(pod, "Succeeded")
        succeeded.append(index)
    await eventually(lambda: _job_has(client, "idx", "Complete"))
    job = await get_job(client, "idx")
    assert sorted(succeeded) == [0, 1, 2, 3]
    assert job["status"]["completedIndexes"] == "0-3"
    assert job["status"]["succeeded"] == 4 and job["status"]["failed"] == 1
    assert len(await node.pods("idx")) == 5


async def test_active_deadline_fails_job(client: Client, components: Components) -> None:
    await start(client, components)
    node = Node(client)
    await client.create(client.resource("batch/v1", "Job"),
                        job_manifest("slow", activeDeadlineSeconds=1, parallelism=2,
                                     completions=3), NS)
    await eventually(lambda: _count_running(node, "slow", 2))
    await eventually(lambda: _job_has(client, "slow", "Failed"), within=5)
    job = await get_job(client, "slow")
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
    assert job["status"]["active"] == 0
    await eventually(lambda: _pods_gone(node, "slow"))


async def test_ttl_after_finished_deletes_job(client: Client, components: Components) -> None:
    ctrl = JobController(client, components.factory)
    await components.start(ctrl, TTLAfterFinishedController(client, components.factory))
    node = Node(client)
    await client.create(client.resource("batch/v1", "Job"),
                        job_manifest("short", ttlSecondsAfterFinished=0), NS)
    await eventually(lambda: _has_running(node, "short"))
    await node.finish((await node.running("short"))[0], "Succeeded")

    async def gone() -> bool:
        out = await client.list(client.resource("batch/v1", "Job"), NS)
        return all(j["metadata"]["name"] != "short" for j in out["items"])
    await eventually(gone)


async def test_events_in_kubernetes_words(client: Client, components: Components) -> None:
    await start(client, components)
    node = Node(client)
    await client.create(client.resource("batch/v1", "Job"), job_manifest("told"), NS)
    await eventually(lambda: _has_running(node, "told"))
    pod = (await node.running("told"))[0]
    await node.finish(pod, "Succeeded")
    await eventually(lambda: _job_has(client, "told", "Complete"))
    evs = await events(client, "told")
    assert ("SuccessfulCreate", f"Created pod: {pod['metadata']['name']}") in evs
    assert ("Completed", "Job completed") in evs


async def _has_running(node: Node, job: str) -> bool:
    return bool(await node.running(job))


async def _count_running(node: Node, job: str, n: int) -> bool:
    return len(await node.running(job)) == n


async def _pods_gone(node: Node, job: str) -> bool:
    return not await node.pods(job)


async def _job_has(client: Client, name: str, type_: str) -> bool:
    return condition(await get_job(client, name), type_) is not None
