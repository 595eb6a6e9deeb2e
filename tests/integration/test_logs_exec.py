"""`kubectl logs` and `kubectl exec` end to end: kubectl (and the official client) → the API
server's pods/log and pods/exec → the KubeletServer over HTTPS → real runc containers.

The pod objects are created through the API with `spec.nodeName` set; `find_pod` maps
them to the containers this test runs in the runc runtime under the pod's uid, as the
agent's informer would. Needs root, runc and the CNI plugins; every test removes its
containers, mounts and network namespaces (`cleanup_all`) and checks nothing is left.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pinnace.agent.images import ImageStore
from pinnace.agent.kubelet_server import KubeletServer
from pinnace.agent.runtime import CONTAINER_NAME, ContainerConfig, PodSandboxConfig
from pinnace.agent.runtime.runc import RuncRuntime
from pinnace.apiserver.pki import ensure_kubelet_token
from tests.integration.conftest import Api, run_kubectl, running_api
from tests.leftovers import leftovers, random_pod_cidr

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("kubectl") is None
    or not Path("/usr/lib/cni/bridge").exists(),
    reason="needs root, runc, kubectl and the CNI plugins in /usr/lib/cni")

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z ")


@dataclass
class Cluster:
    api: Api
    runtime: RuncRuntime
    kubeconfig: Path
    home: Path
    pods: dict[tuple[str, str], dict[str, Any]]

    async def run_pod(self, name: str, containers: dict[str, list[str]],
                      node: str = "node-1") -> dict[str, Any]:
        """A Pod object bound to `node`, its containers really running `command`s."""
        status, pod = await self.api.request("POST", "/api/v1/namespaces/default/pods", json={
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [
                {"name": c, "image": "busybox:1.28"} for c in containers]}})
        assert status == 201, pod
        self.pods[("default", name)] = pod
        sid = await self.runtime.run_pod_sandbox(PodSandboxConfig(
            pod["metadata"]["uid"], name, "default"))
        for c, command in containers.items():
            await self.start(sid, c, command, attempt=0)
        return pod

    async def start(self, sid: str, container: str, command: list[str], attempt: int) -> str:
        cid = await self.runtime.create_container(sid, ContainerConfig(
            container, "busybox:1.28", attempt=attempt, command=command,
            labels={CONTAINER_NAME: container}))
        await self.runtime.start_container(cid)
        return cid

    async def kubectl(self, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        return await run_kubectl(self.kubeconfig, *args, home=self.home, stdin=stdin)


@pytest.fixture
async def cluster(tmp_path: Path, test_images: Path) -> AsyncIterator[Cluster]:
    node_dir = tmp_path / "node"
    ImageStore(node_dir).import_archive(test_images / "busybox_1.28.tar")
    runtime = RuncRuntime(node_dir, pod_cidr=random_pod_cidr())
    pods: dict[tuple[str, str], dict[str, Any]] = {}
    kubelet: KubeletServer | None = None
    try:
        async with running_api(tmp_path / "api") as api:
            # the API server presents this token to kubelets (pki/kubelet.token)
            kubelet_token = ensure_kubelet_token(tmp_path / "api")
            pki = tmp_path / "api" / "pki"
            kubelet = KubeletServer(runtime, lambda ns, name: pods.get((ns, name)),
                                    host="127.0.0.1", port=0, tls_cert=pki / "server.crt",
                                    tls_key=pki / "server.key", token=kubelet_token)
            await kubelet.start()
            status, node = await api.request("POST", "/api/v1/nodes", json={
                "metadata": {"name": "node-1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}})
            assert status == 201, node
            home = tmp_path / "home"
            home.mkdir()
            yield Cluster(api, runtime, api.server.write_kubeconfig(), home, pods)
    finally:
        if kubelet is not None:
            await kubelet.stop()
        await runtime.cleanup_all()
        assert leftovers(node_dir) == []


async def wait_exited(rt: RuncRuntime, pod_uid: str, name: str) -> None:
    for _ in range(250):
        cs = [c for c in await rt.list_containers(pod_uid) if c.name == name]
        if cs and all(c.state.value == "exited" for c in cs):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} did not exit")


async def test_kubectl_logs_tail_timestamps_follow_previous(cluster: Cluster) -> None:
    script = "echo one; echo two; sleep 0.2; echo three >&2; sleep 1.5; echo four"
    pod = await cluster.run_pod("logger", {"main": ["sh", "-c", script]})
    # -f while the container runs: everything, including the line written later
    rc, out, err = await cluster.kubectl("logs", "-f", "logger")
    assert rc == 0, err
    assert out == "one\ntwo\nthree\nfour\n"
    rc, out, err = await cluster.kubectl("logs", "logger", "--tail", "2")
    assert (rc, out) == (0, "three\nfour\n"), err
    rc, out, err = await cluster.kubectl("logs", "logger", "--timestamps", "--limit-bytes",
                                         "1000")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 4, err
    assert all(STAMP.match(line) for line in lines), lines
    assert [line.split(" ", 1)[1] for line in lines] == ["one", "two", "three", "four"]
    rc, out, err = await cluster.kubectl("logs", "logger", "--previous")
    assert rc == 1
    assert 'previous terminated container "main" in pod "logger" not found' in err
    # a restart: attempt 1 writes a new log; --previous shows attempt 0's
    uid = pod["metadata"]["uid"]
    sid = (await cluster.runtime.list_pod_sandboxes(uid))[0].id
    await cluster.start(sid, "main", ["sh", "-c", "echo second life"], attempt=1)
    await wait_exited(cluster.runtime, uid, "main")
    rc, out, err = await cluster.kubectl("logs", "logger")
    assert (rc, out) == (0, "second life\n"), err
    rc, out, err = await cluster.kubectl("logs", "logger", "-p")
    assert (rc, out) == (0, "one\ntwo\nthree\nfour\n"), err


async def test_log_errors_in_kubernetes_words(cluster: Cluster) -> None:
    await cluster.run_pod("two", {"a": ["sleep", "30"], "b": ["sleep", "30"]})
    status, body = await cluster.api.request("GET", "/api/v1/namespaces/default/pods/two/log")
    assert status == 400
    assert body["message"] == "a container name must be specified for pod two, choose one " \
                              "of: [a b]"
    status, body = await cluster.api.request(
        "GET", "/api/v1/namespaces/default/pods/two/log?container=c")
    assert (status, body["message"]) == (400, "container c is not valid for pod two")
    # known to the API, not (yet) to the node: the kubelet says it is waiting
    status, pod = await cluster.api.request("POST", "/api/v1/namespaces/default/pods", json={
        "metadata": {"name": "pending"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox:1.28"}]}})
    cluster.pods[("default", "pending")] = pod
    rc, _, err = await cluster.kubectl("logs", "pending")
    assert rc == 1
    assert 'container "c" in pod "pending" is waiting to start: ContainerCreating' in err
    status, pod = await cluster.api.request("POST", "/api/v1/namespaces/default/pods", json={
        "metadata": {"name": "unbound"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.28"}]}})
    rc, _, err = await cluster.kubectl("logs", "unbound")
    assert rc == 1 and "pod unbound does not have a host assigned" in err
    rc, _, err = await cluster.kubectl("logs", "nosuch")
    assert rc == 1 and 'pods "nosuch" not found' in err


async def test_kubectl_exec_exit_code_streams_and_stdin(cluster: Cluster) -> None:
    await cluster.run_pod("shell", {"main": ["sleep", "3600"]})
    rc, out, err = await cluster.kubectl(
        "exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert rc == 3
    assert out == "out\n"
    assert "err\n" in err and "command terminated with exit code 3" in err
    rc, out, err = await cluster.kubectl("exec", "-i", "shell", "--", "sh", "-c",
                                         "tr a-z A-Z; echo done",
                                         stdin=b"hello from stdin\n")
    assert (rc, out) == (0, "HELLO FROM STDIN\ndone\n"), err
    rc, out, err = await cluster.kubectl("exec", "shell", "--", "hostname")
    assert (rc, out) == (0, "shell\n"), err


async def test_official_client_stream_exec(cluster: Cluster) -> None:
    from kubernetes import client as k8s
    from kubernetes.stream import stream

    await cluster.run_pod("py", {"main": ["sleep", "3600"]})
    config = k8s.Configuration()
    config.host = cluster.api.url
    config.api_key = {"authorization": f"Bearer {cluster.api.server.token}"}
    config.ssl_ca_cert = str(cluster.api.server.data_dir / "pki" / "ca.crt")

    def run() -> tuple[str, int | None, str, str]:
        with k8s.ApiClient(config) as api_client:
            core = k8s.CoreV1Api(api_client)
            out = stream(core.connect_get_namespaced_pod_exec, "py", "default",
                         command=["sh", "-c", "echo from python; id -u"],
                         stderr=True, stdin=False, stdout=True, tty=False)
            ws = stream(core.connect_get_namespaced_pod_exec, "py", "default",
                        command=["sh", "-c", "read line; echo got $line; exit 5"],
                        stderr=True, stdin=True, stdout=True, tty=False,
                        _preload_content=False)
            ws.write_stdin("ping\n")
            ws.run_forever(timeout=20)
            tty = stream(core.connect_get_namespaced_pod_exec, "py", "default",
                         command=["sh", "-c", "tty; echo hi"], stderr=False, stdin=False,
                         stdout=True, tty=True)
            return out, ws.returncode, ws.read_stdout(timeout=0), tty

    out, code, got, tty = await asyncio.to_thread(run)
    assert out == "from python\n0\n"
    assert (code, got) == (5, "got ping\n")
    assert tty.startswith("/dev/pts/") and tty.endswith("\r\nhi\r\n"), tty


async def test_exec_refusals_are_status_errors(cluster: Cluster) -> None:
    pod = await cluster.run_pod("done", {"main": ["true"]})
    await wait_exited(cluster.runtime, pod["metadata"]["uid"], "main")
    rc, _, err = await cluster.kubectl("exec", "done", "--", "true")
    assert rc == 1 and 'container not found ("main")' in err
    rc, _, err = await cluster.kubectl("exec", "nosuch", "--", "true")
    assert rc == 1 and 'pods "nosuch" not found' in err
