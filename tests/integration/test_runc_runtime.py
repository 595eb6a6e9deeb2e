"""The runc runtime end to end: real runc containers in real CNI network namespaces, from
the stand-in images of scripts/build-test-images, as the node agent will drive them.

Every test tears down what it made with `cleanup_all()` (even on failure), and the module
checks at the end that nothing of its data dir is left in `ip netns`, `ip link`,
/proc/mounts or the cgroup hierarchies. Needs root, runc, the CNI plugins and apt.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from pinnace.agent.runtime import (
    ContainerConfig,
    ContainerConfigError,
    ContainerState,
    LinuxSecurity,
    PodSandboxConfig,
    RuntimeError_,
)
from pinnace.agent.runtime.runc import RuncRuntime

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("apt-get") is None
    or not Path("/usr/lib/cni/bridge").exists(),
    reason="needs root, runc, CNI plugins in /usr/lib/cni and apt-get")

# RFC3339Nano: the Python monitor writes `Z`, conmon (as for CRI-O) the offset, `+00:00`
LOG_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] (.*)$")


async def run_pod(rt: RuncRuntime, name: str, image: str, command: list[str],
                  memory_limit: int | None = None) -> tuple[str, str]:
    sid = await rt.run_pod_sandbox(PodSandboxConfig(f"uid-{name}-{time.time_ns()}", name,
                                                    "default"))
    cid = await rt.create_container(sid, ContainerConfig(name, image, command=command,
                                                         memory_limit=memory_limit))
    await rt.start_container(cid)
    return sid, cid


async def wait_exited(rt: RuncRuntime, cid: str, within: float = 10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = await rt.container_status(cid)
        if status.state is ContainerState.EXITED:
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"container still {status.state} after {within}s")


def log_lines(rt: RuncRuntime, cid: str, stream: str = "stdout") -> list[str]:
    out = []
    for line in rt.log_path(cid).read_bytes().splitlines():
        m = LOG_LINE.match(line)
        assert m, line
        if m.group(2).decode() == stream:
            out.append(m.group(3).decode())
    return out


async def test_hello_exit_code_zero_and_cri_log(runtime: RuncRuntime) -> None:
    sid = await runtime.run_pod_sandbox(PodSandboxConfig("uid-hello", "hello", "default"))
    cid = await runtime.create_container(sid, ContainerConfig(
        "main", "busybox:1.28", command=["sh", "-c"], args=["echo hello; echo oops >&2"]))
    assert (await runtime.container_status(cid)).state is ContainerState.CREATED
    t0 = time.monotonic()
    await runtime.start_container(cid)
    print(f"\nstart_container (monitor: runc create+start): {time.monotonic() - t0:.3f}s")
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert status.started_at > 0 and status.finished_at >= status.started_at
    assert log_lines(runtime, cid) == ["hello"]
    assert log_lines(runtime, cid, "stderr") == ["oops"]
    assert b"hello" in await runtime.container_logs(cid)


async def test_exit_code_three_and_exit_event(runtime: RuncRuntime) -> None:
    heard: list[str] = []
    runtime.subscribe(heard.append)
    sid, cid = await run_pod(runtime, "three", "busybox:1.28", ["sh", "-c", "sleep 0.6; exit 3"])
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (3, "Error")
    uid = (await runtime.pod_sandbox_status(sid)).pod_uid
    for _ in range(100):
        if heard:
            break
        await asyncio.sleep(0.02)
    assert heard == [uid]


async def test_two_pods_reach_each_other(runtime: RuncRuntime) -> None:
    t0 = time.monotonic()
    web_sid, web = await run_pod(runtime, "web", "nginx:1.19", [])
    print(f"\nsandbox+create+start → running: {time.monotonic() - t0:.3f}s")
    web_ip = (await runtime.pod_sandbox_status(web_sid)).ip
    script = (f"for i in $(seq 50); do timeout 5 wget -qO- http://{web_ip}/ && exit 0; "
              "sleep 0.1; done; exit 1")
    client_sid, client = await run_pod(runtime, "client", "busybox:1.28",
                                       ["sh", "-c", script])
    client_ip = (await runtime.pod_sandbox_status(client_sid)).ip
    assert client_ip != web_ip
    status = await wait_exited(runtime, client, 20)
    assert status.exit_code == 0, runtime.log_path(client).read_text()
    assert any("nginx" in line for line in log_lines(runtime, client))
    assert (await runtime.container_status(web)).state is ContainerState.RUNNING
    # nginx logs the request to stdout through the monitor
    assert any(client_ip in line for line in log_lines(runtime, web))


async def test_container_sees_only_its_own_processes(runtime: RuncRuntime) -> None:
    _, cid = await run_pod(runtime, "ps", "busybox:1.28", ["ps", "-o", "pid,args"])
    assert (await wait_exited(runtime, cid)).exit_code == 0
    rows = [line.split(None, 1) for line in log_lines(runtime, cid)[1:]]
    assert rows == [["1", "ps -o pid,args"]]


async def test_stop_with_sigterm_then_sigkill(runtime: RuncRuntime) -> None:
    _, handled = await run_pod(runtime, "term", "busybox:1.28",
                               ["sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"])
    # sleep as PID 1 has no SIGTERM handler: the kernel ignores it, SIGKILL ends it
    _, plain = await run_pod(runtime, "plain", "busybox:1.28", ["sleep", "1000"])
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    await runtime.stop_container(handled, 30)
    assert time.monotonic() - t0 < 3
    assert (await runtime.container_status(handled)).exit_code == 143
    t0 = time.monotonic()
    await runtime.stop_container(plain, 1)
    assert 0.9 < time.monotonic() - t0 < 4
    status = await runtime.container_status(plain)
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 137)


async def test_memory_limit_oom_killed(runtime: RuncRuntime) -> None:
    _, cid = await run_pod(runtime, "hog", "busybox:1.28",
                           ["sh", "-c", "x=a; while true; do x=$x$x; done"],
                           memory_limit=32 * 1024 * 1024)
    status = await wait_exited(runtime, cid, 20)
    assert (status.reason, status.exit_code) == ("OOMKilled", 137)


async def test_container_outlives_the_runtime_object(runtime: RuncRuntime,
                                                     node_dir: Path) -> None:
    sid, cid = await run_pod(runtime, "adopt", "busybox:1.28",
                             ["sh", "-c", "echo up; sleep 1; exit 7"])
    uid = (await runtime.pod_sandbox_status(sid)).pod_uid
    again = RuncRuntime(node_dir, pod_cidr=runtime.network.pod_cidr)
    assert [s.id for s in await again.list_pod_sandboxes(uid)] == [sid]
    listed = await again.list_containers(uid)
    assert [(c.id, c.state) for c in listed] == [(cid, ContainerState.RUNNING)]
    status = await wait_exited(again, cid)
    assert (status.exit_code, status.reason) == (7, "Error")
    assert log_lines(again, cid) == ["up"]
    await again.remove_pod_sandbox(sid)
    assert await again.list_containers(uid) == []
    assert await runtime.list_pod_sandboxes(uid) == []


async def test_second_runtime_object_lists_the_first_ones(runtime: RuncRuntime,
                                                          node_dir: Path) -> None:
    sid, cid = await run_pod(runtime, "seen", "busybox:1.28", ["sleep", "1000"])
    uid = (await runtime.pod_sandbox_status(sid)).pod_uid
    created = await runtime.create_container(sid, ContainerConfig("side", "busybox:1.28",
                                                                  command=["true"]))
    other = RuncRuntime(node_dir, pod_cidr=runtime.network.pod_cidr)
    assert [s.id for s in await other.list_pod_sandboxes()] == [sid]
    states = {c.id: c.state for c in await other.list_containers(uid)}
    assert states == {cid: ContainerState.RUNNING, created: ContainerState.CREATED}
    assert {c.id for c in await other.list_containers()} == {cid, created}
    # a stop by one object shows in the other's listing: the state files are read fresh
    await other.stop_container(cid, 0)
    assert [c.state for c in await runtime.list_containers(uid) if c.id == cid] == [
        ContainerState.EXITED]
    assert (await runtime.list_pod_sandboxes(uid))[0].ready


async def test_removed_container_disappears_from_listings(runtime: RuncRuntime,
                                                          node_dir: Path) -> None:
    sid, first = await run_pod(runtime, "gone", "busybox:1.28", ["sh", "-c", "exit 0"])
    uid = (await runtime.pod_sandbox_status(sid)).pod_uid
    await wait_exited(runtime, first)
    second = await runtime.create_container(sid, ContainerConfig(
        "gone", "busybox:1.28", attempt=1, command=["sleep", "1000"]))
    await runtime.start_container(second)
    assert [c.id for c in await runtime.list_containers(uid)] == sorted([first, second])
    await runtime.remove_container(first)
    assert [c.id for c in await runtime.list_containers(uid)] == [second]
    assert first not in {c.id for c in await runtime.list_containers()}
    # removed through another object: gone from this one's listings too
    other = RuncRuntime(node_dir, pod_cidr=runtime.network.pod_cidr)
    await other.remove_pod_sandbox(sid)
    assert await runtime.list_containers(uid) == []
    assert await runtime.list_pod_sandboxes(uid) == []
    assert await runtime.list_pod_sandboxes() == []


async def test_run_as_non_root_with_a_root_image_is_a_config_error(
        runtime: RuncRuntime) -> None:
    """A spec the node refuses is told apart by its type (the kubelet's
    CreateContainerConfigError), and nothing of the refused container is left."""
    sid = await runtime.run_pod_sandbox(PodSandboxConfig("uid-nonroot", "nonroot", "default"))
    with pytest.raises(ContainerConfigError, match="runAsNonRoot and image will run as root"):
        await runtime.create_container(sid, ContainerConfig(
            "main", "busybox:1.28", command=["true"],
            security=LinuxSecurity(run_as_non_root=True)))
    with pytest.raises(RuntimeError_) as e:  # an unknown image is the runtime's failure
        await runtime.create_container(sid, ContainerConfig("main", "nosuch:1", command=["true"]))
    assert not isinstance(e.value, ContainerConfigError)
    assert await runtime.list_containers("uid-nonroot") == []


async def test_one_image_store_is_shared(node_dir: Path) -> None:
    from pinnace.agent.images import ImageStore
    from tests.leftovers import random_pod_cidr
    store = ImageStore(node_dir)
    rt = RuncRuntime(node_dir, pod_cidr=random_pod_cidr(), images=store)
    assert rt.images is store
