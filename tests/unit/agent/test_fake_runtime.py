"""The fake runtime: sandboxes with IPs, containers that run, exit on cue, and stop."""

from __future__ import annotations

import asyncio

import pytest

from pinnace.agent.runtime import (
    INIT_CONTAINER,
    ContainerConfig,
    ContainerState,
    FakeRuntime,
    PodSandboxConfig,
    RuntimeError_,
)


async def test_containers_run_until_stopped() -> None:
    rt = FakeRuntime(pod_cidr="10.244.3.0/24")
    sid = await rt.run_pod_sandbox(PodSandboxConfig("uid-1", "web", "default"))
    sandbox = await rt.pod_sandbox_status(sid)
    assert sandbox.ready and sandbox.ip == "10.244.3.2"
    cid = await rt.create_container(sid, ContainerConfig("app", "nginx"))
    assert (await rt.container_status(cid)).state is ContainerState.CREATED
    await rt.start_container(cid)
    await asyncio.sleep(0.01)
    status = await rt.container_status(cid)
    assert status.state is ContainerState.RUNNING and status.started_at > 0
    assert [c.id for c in await rt.list_containers("uid-1")] == [cid]
    await rt.stop_container(cid, 0)
    status = await rt.container_status(cid)
    assert status.state is ContainerState.EXITED and status.exit_code == 143
    await rt.remove_pod_sandbox(sid)
    assert await rt.list_containers("uid-1") == [] and await rt.list_pod_sandboxes() == []
    with pytest.raises(RuntimeError_):
        await rt.container_status(cid)
    # the released IP is handed out again
    sid2 = await rt.run_pod_sandbox(PodSandboxConfig("uid-2", "db", "default"))
    assert (await rt.pod_sandbox_status(sid2)).ip == "10.244.3.2"


async def test_exit_after_annotation_and_events() -> None:
    rt = FakeRuntime()
    events: list[str] = []
    rt.subscribe(events.append)
    sid = await rt.run_pod_sandbox(PodSandboxConfig(
        "uid-1", "job", "default", annotations={"pinnace.io/fake-exit-after": "50ms",
                                                "pinnace.io/fake-exit-code": "3"}))
    cid = await rt.create_container(sid, ContainerConfig("app", "busybox"))
    await rt.start_container(cid)
    assert (await rt.container_status(cid)).state is ContainerState.RUNNING
    await asyncio.sleep(0.1)
    status = await rt.container_status(cid)
    assert status.state is ContainerState.EXITED
    assert (status.exit_code, status.reason) == (3, "Error")
    assert status.finished_at >= status.started_at
    assert events == ["uid-1"]


async def test_init_containers_complete_at_once() -> None:
    rt = FakeRuntime()
    sid = await rt.run_pod_sandbox(PodSandboxConfig("uid-1", "web", "default"))
    cid = await rt.create_container(sid, ContainerConfig(
        "setup", "busybox", annotations={INIT_CONTAINER: "true"}))
    await rt.start_container(cid)
    await asyncio.sleep(0.01)
    status = await rt.container_status(cid)
    assert status.state is ContainerState.EXITED and status.reason == "Completed"


async def test_bad_annotation_and_full_cidr() -> None:
    rt = FakeRuntime(pod_cidr="10.0.0.0/30")  # one usable address besides the gateway
    with pytest.raises(RuntimeError_):
        await rt.run_pod_sandbox(PodSandboxConfig(
            "u", "p", "d", annotations={"pinnace.io/fake-exit-after": "soon"}))
    await rt.run_pod_sandbox(PodSandboxConfig("u1", "p", "d"))
    with pytest.raises(RuntimeError_):
        await rt.run_pod_sandbox(PodSandboxConfig("u2", "p", "d"))
