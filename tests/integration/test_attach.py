"""Attach to a container's own process: the runc runtime's `attach` on real runc busybox
containers (stdin through a pipe, a tty through runc's console socket), and `kubectl
attach` / the official client's `connect_get_namespaced_pod_attach` through the API
server's pods/attach and the KubeletServer.

The `cluster` fixture of test_logs_exec (an API server, a KubeletServer on loopback and a
runc runtime; everything removed and checked for leftovers afterwards) serves here too.
Needs root, runc, kubectl and the CNI plugins.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pinnace.agent.runtime import (
    CONTAINER_NAME,
    ContainerConfig,
    ContainerState,
    PodSandboxConfig,
    RuntimeError_,
)
from pinnace.agent.runtime.runc import RuncRuntime
from tests.integration import test_logs_exec
from tests.integration.test_logs_exec import Cluster

pytestmark = test_logs_exec.pytestmark
cluster = test_logs_exec.cluster  # the fixture: API server, KubeletServer, runc runtime

STDOUT, STDERR = 1, 2


async def run(cluster: Cluster, name: str, command: list[str], *, stdin: bool = False,
              stdin_once: bool = False, tty: bool = False) -> tuple[dict[str, Any], str]:
    """A pod bound to node-1 whose one container `main` really runs `command`."""
    container = {"name": "main", "image": "busybox:1.28", "command": command,
                 "stdin": stdin, "stdinOnce": stdin_once, "tty": tty}
    status, pod = await cluster.api.request("POST", "/api/v1/namespaces/default/pods", json={
        "metadata": {"name": name}, "spec": {"nodeName": "node-1", "containers": [container]}})
    assert status == 201, pod
    cluster.pods[("default", name)] = pod
    rt = cluster.runtime
    sid = await rt.run_pod_sandbox(PodSandboxConfig(pod["metadata"]["uid"], name, "default"))
    cid = await rt.create_container(sid, ContainerConfig(
        "main", "busybox:1.28", command=command, labels={CONTAINER_NAME: "main"},
        stdin=stdin, stdin_once=stdin_once, tty=tty))
    await rt.start_container(cid)
    return pod, cid


async def read_until(session: Any, text: bytes, within: float = 5.0) -> bytes:
    out = b""
    deadline = time.monotonic() + within
    while text not in out:
        item = await asyncio.wait_for(session.read(), deadline - time.monotonic())
        assert item is not None, f"ended before {text!r}: {out!r}"
        out += item[1]
    return out


async def read_all(session: Any, within: float = 5.0) -> list[tuple[int, bytes]]:
    items = []
    while (item := await asyncio.wait_for(session.read(), within)) is not None:
        items.append(item)
    return items


async def wait_state(rt: RuncRuntime, cid: str, state: ContainerState) -> None:
    for _ in range(250):
        if (await rt.container_status(cid)).state is state:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{cid} never {state}")


def logged(rt: RuncRuntime, cid: str) -> str:
    return "".join(line.split(" ", 3)[3] + "\n"
                   for line in rt.log_path(cid).read_text().splitlines())


# -- the runtime -----------------------------------------------------------------------------


async def test_stdin_once_cat_echoes_and_ends_when_stdin_closes(cluster: Cluster) -> None:
    rt = cluster.runtime
    _, cid = await run(cluster, "cat", ["cat"], stdin=True, stdin_once=True)
    session = await rt.attach(cid, stdin=True, tty=False)
    await session.write_stdin(b"hello\n")
    assert await read_until(session, b"hello\n") == b"hello\n"
    await session.write_stdin(b"world\n")
    assert await read_until(session, b"world\n") == b"world\n"
    await session.close_stdin()  # stdinOnce: cat reads EOF and exits
    assert await read_all(session) == []
    assert await session.wait() == 0
    status = await rt.container_status(cid)
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 0)
    assert logged(rt, cid) == "hello\nworld\n"  # the log got it as well
    assert not (rt.log_path(cid).parent / "attach.sock").exists()


async def test_detach_leaves_the_container_running_and_attach_again(cluster: Cluster) -> None:
    rt = cluster.runtime
    _, cid = await run(cluster, "again", ["sh", "-c", "while read x; do echo got $x >&2; done"],
                       stdin=True)
    first = await rt.attach(cid, stdin=True, tty=False)
    watcher = await rt.attach(cid, stdin=False, tty=False)  # output only
    await first.write_stdin(b"one\n")
    assert await read_until(first, b"got one\n") == b"got one\n"
    assert await read_until(watcher, b"got one\n") == b"got one\n"
    await first.close_stdin()  # no stdinOnce: the container's stdin stays open
    await first.kill()
    await asyncio.sleep(0.2)
    assert (await rt.container_status(cid)).state is ContainerState.RUNNING
    second = await rt.attach(cid, stdin=True, tty=False)
    await second.write_stdin(b"two\n")
    chunk = await asyncio.wait_for(second.read(), 5)
    assert chunk == (STDERR, b"got two\n")
    await rt.stop_container(cid, 0)  # SIGKILL
    assert await read_all(second) == []
    assert await read_all(watcher) == [(STDERR, b"got two\n")]  # every client sees it all
    assert await second.wait() == 137
    assert logged(rt, cid) == "got one\ngot two\n"


async def test_tty_shell_resize_and_exit_code(cluster: Cluster) -> None:
    rt = cluster.runtime
    _, cid = await run(cluster, "tty", ["sh"], stdin=True, stdin_once=True, tty=True)
    session = await rt.attach(cid, stdin=True, tty=True)
    session.resize(100, 30)
    await session.write_stdin(b"stty size; tty; echo $((6*7)) >&2\n")
    out = await read_until(session, b"42\r\n")
    assert b"30 100\r\n/dev/pts/0\r\n" in out  # the window size reached the pty
    await session.write_stdin(b"exit 3\n")
    rest = await read_all(session)
    assert {channel for channel, _ in rest} <= {STDOUT}  # a terminal has one stream
    assert await session.wait() == 3
    assert "30 100\n" in logged(rt, cid).replace("\r", "")


async def test_attach_without_stdin_follows_the_output(cluster: Cluster) -> None:
    rt = cluster.runtime
    _, cid = await run(cluster, "plain", ["sh", "-c", "sleep 0.5; echo out; echo err >&2; "
                                                      "printf partial; sleep 0.3"])
    session = await rt.attach(cid, stdin=True, tty=False)  # no stdin: ignored
    await session.write_stdin(b"ignored\n")
    items = await read_all(session)
    assert b"".join(d for c, d in items if c == STDOUT) == b"out\npartial"
    assert b"".join(d for c, d in items if c == STDERR) == b"err\n"
    assert await session.wait() == 0


async def test_attach_to_an_exited_container_is_refused(cluster: Cluster) -> None:
    rt = cluster.runtime
    _, cid = await run(cluster, "gone", ["true"], stdin=True)
    await wait_state(rt, cid, ContainerState.EXITED)
    try:
        await rt.attach(cid, stdin=True, tty=False)
    except RuntimeError_ as e:
        assert "is not running" in str(e)
    else:
        raise AssertionError("attach to an exited container succeeded")
    rc, _, err = await cluster.kubectl("attach", "gone")
    assert rc == 1 and 'container not found ("main")' in err


# -- through the API server and the kubelet server ------------------------------------------


async def test_kubectl_attach_with_stdin(cluster: Cluster) -> None:
    _, cid = await run(cluster, "reader", ["sh", "-c", "while read x; do echo got $x; done; "
                                                       "echo bye >&2"],
                       stdin=True, stdin_once=True)
    rc, out, err = await cluster.kubectl("attach", "-i", "reader", stdin=b"a\nb\n")
    assert rc == 0, err
    assert out == "got a\ngot b\n"
    assert "bye\n" in err
    await wait_state(cluster.runtime, cid, ContainerState.EXITED)


async def test_kubectl_attach_output_only(cluster: Cluster) -> None:
    await run(cluster, "talker", ["sh", "-c", "sleep 1; echo one; echo two >&2; echo three"])
    rc, out, err = await cluster.kubectl("attach", "talker")
    assert rc == 0, err
    assert out == "one\nthree\n" and "two\n" in err


async def test_official_client_attach_tty(cluster: Cluster) -> None:
    from kubernetes import client as k8s
    from kubernetes.stream import stream

    _, cid = await run(cluster, "term", ["sh"], stdin=True, stdin_once=True, tty=True)
    config = k8s.Configuration()
    config.host = cluster.api.url
    config.api_key = {"authorization": f"Bearer {cluster.api.server.token}"}
    config.ssl_ca_cert = str(cluster.api.server.data_dir / "pki" / "ca.crt")

    def attach() -> tuple[str, Any]:
        with k8s.ApiClient(config) as api_client:
            ws = stream(k8s.CoreV1Api(api_client).connect_get_namespaced_pod_attach, "term",
                        "default", container="main", stdin=True, stdout=True, stderr=True,
                        tty=True, _preload_content=False)
            ws.write_channel(4, '{"Width":120,"Height":40}')
            ws.write_stdin("stty size; exit 7\n")
            ws.run_forever(timeout=20)
            return ws.read_stdout(timeout=0), ws.read_channel(3, timeout=0)

    out, status = await asyncio.to_thread(attach)
    assert "40 120" in out, out
    assert '"Success"' in status  # attach's Status: the exit code is the pod's to tell
    await wait_state(cluster.runtime, cid, ContainerState.EXITED)
    assert (await cluster.runtime.container_status(cid)).exit_code == 7
