"""`kubectl run -i --rm` and `kubectl attach` on a real node (`pinnace up`, runc): the pod's
stdin reaches its process through the agent's kubelet server and the container's monitor.
No `-t`: kubectl wants a terminal of its own for that (the tty path is covered by
tests/integration/test_attach.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import KUBECTL, Cluster
from tests.e2e.real_node import container_status, real_cluster, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("attach"), local_registry.url)


def test_kubectl_run_interactive_rm(cluster: Cluster) -> None:
    result = cluster.kubectl("run", "t", "--image=busybox:1.28", "-i", "--rm",
                             "--restart=Never", "--", "sh", "-c", "read x; echo got $x",
                             input="hello\n", timeout=90)
    assert "got hello" in result.stdout, result
    gone = cluster.kubectl("get", "pod", "t", check=False)
    assert gone.returncode == 1 and 'pods "t" not found' in gone.stderr


def test_kubectl_attach_to_a_running_pod(cluster: Cluster) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": "busybox:1.28", "stdin": True,
                "command": ["sh", "-c", "echo ready; while read x; do echo got $x; done"]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/echo", "--timeout=60s")
    attach = subprocess.Popen([KUBECTL, "attach", "-i", "echo"], env=cluster.env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert attach.stdin is not None and attach.stdout is not None
        attach.stdin.write("one\n")
        attach.stdin.flush()
        assert attach.stdout.readline() == "got one\n"  # only output from the attach on
        attach.stdin.write("two\n")
        attach.stdin.flush()
        assert attach.stdout.readline() == "got two\n"
    finally:
        attach.kill()  # detach: the container runs on
        attach.communicate(timeout=10)
    assert container_status(cluster, "echo")["state"].get("running")
    assert container_status(cluster, "echo")["restartCount"] == 0
    logs = wait_for(lambda: (out := cluster.kubectl("logs", "echo").stdout).count("got") == 2
                    and out)
    assert logs == "ready\ngot one\ngot two\n"
    cluster.kubectl("delete", "pod", "echo", "--wait=true")
