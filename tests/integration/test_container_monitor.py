"""Which monitor and OCI runtime a real container gets, and what that must not change:
plain containers run under Debian's conmon (made by crun where installed), their log shows
a partial line while they run, a failed start is reported, an exec runs as the container's
own user and groups, and a container keeps the
runtime it was made with when the node's choice differs later (an agent restarted with
another runtime, or one made before crun was installed). Needs root, runc, conmon, the CNI
plugins and apt (scripts/setup installs them)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from pinnace.agent.runtime import (
    ContainerConfig,
    ContainerState,
    LinuxSecurity,
    PodSandboxConfig,
    RuntimeError_,
)
from pinnace.agent.runtime.runc import RuncRuntime
from tests.integration.test_runc_runtime import LOG_LINE, wait_exited

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("conmon") is None
    or not Path("/usr/lib/cni/bridge").exists(),
    reason="needs root, runc, conmon and the CNI plugins in /usr/lib/cni")


async def start(rt: RuncRuntime, name: str, command: list[str], **kw: Any) -> str:
    sid = await rt.run_pod_sandbox(PodSandboxConfig(f"uid-{name}-{time.time_ns()}", name,
                                                    "default"))
    cid = await rt.create_container(sid, ContainerConfig(name, "busybox:1.28",
                                                         command=command, **kw))
    await rt.start_container(cid)
    return cid


def container_file(node_dir: Path, cid: str, name: str) -> dict:
    return json.loads((node_dir / "runtime" / "containers" / cid / name).read_text())


def monitor_name(node_dir: Path, cid: str) -> str:
    pid = container_file(node_dir, cid, "state.json")["monitor_pid"]
    return Path(f"/proc/{pid}/comm").read_text().strip()


def made_by(node_dir: Path, cid: str) -> str:
    return Path(container_file(node_dir, cid, "container.json")["oci_runtime"]).name


async def test_plain_container_under_conmon_logs_a_partial_line_while_running(
        runtime: RuncRuntime, node_dir: Path) -> None:
    cid = await start(runtime, "partial", ["sh", "-c", "printf waiting; sleep 30"])
    assert monitor_name(node_dir, cid) == "conmon"
    assert made_by(node_dir, cid) == ("crun" if shutil.which("crun") else "runc")
    deadline = time.monotonic() + 5
    records: list[bytes] = []
    while time.monotonic() < deadline and not records:
        records = runtime.log_path(cid).read_bytes().splitlines()
        await asyncio.sleep(0.05)
    # the text without its newline is in the log while the container still runs
    assert (await runtime.container_status(cid)).state is ContainerState.RUNNING
    parsed = [LOG_LINE.match(r) for r in records]
    assert all(parsed), records
    assert [(m.group(2), m.group(3)) for m in parsed if m] == [(b"stdout", b"waiting")]
    assert b" stdout P waiting" in records[0]


async def test_a_tty_container_keeps_the_python_monitor(runtime: RuncRuntime,
                                                        node_dir: Path) -> None:
    cid = await start(runtime, "tty", ["sleep", "30"], tty=True, stdin=True)
    assert monitor_name(node_dir, cid).startswith("python")
    await runtime.stop_container(cid, 0)
    assert (await wait_exited(runtime, cid)).exit_code == 137


async def test_a_start_that_fails_is_an_error_with_the_runtime_message(
        runtime: RuncRuntime) -> None:
    with pytest.raises(RuntimeError_, match="no-such-program"):
        await start(runtime, "nostart", ["/no-such-program"])


async def test_a_container_keeps_the_runtime_it_was_made_with(runtime: RuncRuntime,
                                                              node_dir: Path) -> None:
    old = RuncRuntime(node_dir, pod_cidr=runtime.network.pod_cidr, runc="runc")
    cid = await start(old, "old", ["sh", "-c", "echo made; sleep 30"])
    assert made_by(node_dir, cid) == "runc"
    # the node's runtime now (crun where installed) stops and removes it through runc
    await runtime.stop_container(cid, 0)
    status = await wait_exited(runtime, cid)
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 137)
    await runtime.remove_container(cid)
    assert cid not in {c.id for c in await runtime.list_containers()}


async def test_exec_runs_as_the_containers_user_and_groups(runtime: RuncRuntime) -> None:
    cid = await start(runtime, "user", ["sleep", "30"], security=LinuxSecurity(
        run_as_user=1000, run_as_group=3000, supplemental_groups=(4000,)))
    code, out, _ = await runtime.exec_sync(cid, ["id"], 10)
    assert code == 0
    assert out.decode().split()[:2] == ["uid=1000", "gid=3000"] and b"4000" in out
    # the process.json handed to `exec --process` is not left behind
    assert not list(runtime.log_path(cid).parent.glob("exec-*.json"))
