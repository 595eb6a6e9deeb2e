"""nfs volumes on a real node through kubectl, against a real NFS server (nfs-ganesha in a
network namespace of the test's, tests/nfs_server.py): a pod's `nfs` volume writes into the
export and a second pod sees its lines; a missing export is a FailedMount Event and the pod
starts once the export is there; a server that dies under a writing pod does not stop the
agent from starting other pods, the pod goes on writing once the server is back, and a pod
on a dead server is still deleted cleanly (issue 10, done-when 6).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.agent.volumes.nfs import fuse_processes
from tests.e2e.cluster import Cluster
from tests.e2e.real_node import pod, real_cluster, run_pod, wait_for
from tests.leftovers import leftovers
from tests.paths import MANIFESTS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry,
            nfs_server: Any) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("nfs"), local_registry.url)


def export_dir(nfs_server: Any, name: str) -> Path:
    d = nfs_server.export / name
    d.mkdir(mode=0o777)
    return d


def nfs_pod(c: Cluster, name: str, server: str, path: Path, script: str) -> None:
    run_pod(c, name, [{"name": "app", "image": "busybox:1.28", "command": ["sh", "-c", script],
                       "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            volumes=[{"name": "data", "nfs": {"server": server, "path": str(path)}}])


def ready(c: Cluster, name: str) -> None:
    c.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s", timeout=100)


def events(c: Cluster, name: str) -> list[dict[str, Any]]:
    out = c.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}",
                    "-o", "json").stdout
    return json.loads(out)["items"]


def delete(c: Cluster, name: str) -> None:
    c.kubectl("delete", "pod", name, "--wait=true", "--timeout=60s", timeout=70)


def test_pods_share_an_nfs_volume(cluster: Cluster, nfs_server: Any) -> None:
    data = export_dir(nfs_server, "shared")
    script = "date >> /data/log && cat /data/log && sleep 3600"
    nfs_pod(cluster, "nfs-one", nfs_server.server, data, script)
    ready(cluster, "nfs-one")
    first = wait_for(lambda: (data / "log").exists() and (data / "log").read_text().splitlines())
    assert len(first) == 1
    st = (data / "log").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)  # busybox's root wrote it, as root on the server
    nfs_pod(cluster, "nfs-two", nfs_server.server, data, script)
    ready(cluster, "nfs-two")
    logs = wait_for(lambda: len(out := cluster.kubectl("logs", "nfs-two").stdout.splitlines())
                    == 2 and out)
    assert logs[0] == first[0]  # the second pod saw the first pod's line
    assert (data / "log").read_text().splitlines() == logs
    for name in ("nfs-one", "nfs-two"):
        delete(cluster, name)
    wait_for(lambda: fuse_processes(cluster.data_dir) == [])
    assert len((data / "log").read_text().splitlines()) == 2  # the export keeps the data


def test_missing_export_is_failed_mount_then_the_pod_starts(cluster: Cluster,
                                                            nfs_server: Any) -> None:
    later = nfs_server.export / "later"
    nfs_pod(cluster, "nfs-waits", nfs_server.server, later, "echo ok > /data/f; sleep 3600")
    failed = wait_for(lambda: [e for e in events(cluster, "nfs-waits")
                               if e["reason"] == "FailedMount"])
    assert failed[0]["type"] == "Warning"
    assert failed[0]["message"].startswith(
        'MountVolume.SetUp failed for volume "data" : mount failed: ')
    assert pod(cluster, "nfs-waits")["status"]["containerStatuses"][0]["state"]["waiting"][
        "reason"] == "ContainerCreating"
    later.mkdir(mode=0o777)  # the pod retries: once the export is there, it runs
    ready(cluster, "nfs-waits")
    wait_for(lambda: (later / "f").exists() and (later / "f").read_text() == "ok\n")
    delete(cluster, "nfs-waits")


@pytest.mark.parametrize("failure", ["dies", "hangs"])
def test_server_fails_under_a_writing_pod(cluster: Cluster, nfs_server: Any,
                                          failure: str) -> None:
    """Done-when 6, for a server that dies (SIGKILL: connections refused) and one that hangs
    (SIGSTOP: nothing answers, kubernetes#31272's case)."""
    fail, recover = ((nfs_server.stop, nfs_server.start) if failure == "dies"
                     else (nfs_server.freeze, nfs_server.thaw))
    data = export_dir(nfs_server, failure)
    log = data / "log"
    writer, bystander = f"nfs-writer-{failure}", f"bystander-{failure}"
    nfs_pod(cluster, writer, nfs_server.server, data,
            "while true; do date >> /data/log; sleep 0.2; done")
    ready(cluster, writer)
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3)
    fail()
    try:
        # the agent goes on: a new pod starts while the writer's volume does not answer
        run_pod(cluster, bystander, [{"name": "app", "image": "busybox:1.28",
                                      "command": ["sleep", "3600"]}])
        ready(cluster, bystander)
        stopped_at = len(log.read_text().splitlines())
    finally:
        recover()
    # the writer recovers in place: more lines, the same container
    wait_for(lambda: len(log.read_text().splitlines()) >= stopped_at + 3, timeout=90)
    assert pod(cluster, writer)["status"]["containerStatuses"][0]["restartCount"] == 0
    # with the server failed again, deleting the pod still removes it and its mount
    fail()
    try:
        delete(cluster, writer)
        wait_for(lambda: fuse_processes(cluster.data_dir) == [])
    finally:
        recover()
    delete(cluster, bystander)


def jsonpath(c: Cluster, kind: str, name: str, path: str) -> str:
    return c.kubectl("get", kind, name, "-o", f"jsonpath={{{path}}}").stdout


def test_seed_nfs_pv_claim_and_pods(cluster: Cluster, nfs_server: Any) -> None:
    """Done-when 1: seeds 01 + 02, the PV aimed at the test's server."""
    data = export_dir(nfs_server, "seed")
    pv = (MANIFESTS / "01-nfs-pv.yaml").read_text()
    assert "path: /exports/data" in pv and "server: 127.0.0.1" in pv
    pv = pv.replace("path: /exports/data", f"path: {data}").replace(
        "server: 127.0.0.1", f"server: {nfs_server.server}")
    cluster.kubectl("apply", "-f", "-", input=pv)
    wait_for(lambda: jsonpath(cluster, "pv", "nfs-pv", ".status.phase") == "Available")
    cluster.kubectl("apply", "-f", str(MANIFESTS / "02-nfs-pvc-pod.yaml"))
    wait_for(lambda: jsonpath(cluster, "pvc", "nfs-pvc", ".status.phase") == "Bound")
    assert jsonpath(cluster, "pvc", "nfs-pvc", ".spec.volumeName") == "nfs-pv"
    ready(cluster, "nfs-writer")  # running; its line is in the export moments later
    first = wait_for(lambda: (data / "log").exists() and (data / "log").read_text().splitlines())
    assert len(first) == 1
    # a second pod on the same claim sees the earlier line
    second = (MANIFESTS / "02-nfs-pvc-pod.yaml").read_text().split("---")[1].replace(
        "name: nfs-writer", "name: nfs-writer-2")
    cluster.kubectl("apply", "-f", "-", input=second)
    ready(cluster, "nfs-writer-2")
    logs = wait_for(lambda: len(out := cluster.kubectl("logs", "nfs-writer-2").stdout
                                .splitlines()) == 2 and out)
    assert logs[0] == first[0]
    # the claim goes once no pod uses it; the Retain PV is Released, the data kept
    cluster.kubectl("delete", "pvc", "nfs-pvc", "--wait=false")
    assert jsonpath(cluster, "pvc", "nfs-pvc", ".metadata.deletionTimestamp")  # in use
    # the seed's pods keep the default 30 s grace (sh ignores SIGTERM): 1 s is enough here
    cluster.kubectl("delete", "pod", "nfs-writer", "nfs-writer-2", "--grace-period=1",
                    "--wait=true", "--timeout=60s", timeout=70)
    cluster.kubectl("wait", "--for=delete", "pvc/nfs-pvc", "--timeout=60s", timeout=70)
    wait_for(lambda: jsonpath(cluster, "pv", "nfs-pv", ".status.phase") == "Released")
    assert (data / "log").read_text().splitlines() == logs


def test_agent_restart_adopts_the_mount_and_down_removes_it(cluster: Cluster,
                                                            nfs_server: Any) -> None:
    """Last in the module: the mount outlives `pinnace up`, the next one adopts it, and
    `pinnace down` removes it with an nfs pod still running."""
    data = export_dir(nfs_server, "down")
    nfs_pod(cluster, "nfs-left", nfs_server.server, data, "echo here > /data/f; sleep 3600")
    ready(cluster, "nfs-left")
    wait_for(lambda: (data / "f").exists() and (data / "f").read_text() == "here\n")
    mounts = fuse_processes(cluster.data_dir)
    assert len(mounts) == 1
    cluster.stop()  # the agent goes; the mount stays, as containers do
    assert fuse_processes(cluster.data_dir) == mounts
    cluster.restart()
    cluster.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
    cluster.kubectl("exec", "nfs-left", "--", "sh", "-c", "echo again >> /data/f")
    assert (data / "f").read_text() == "here\nagain\n"
    assert pod(cluster, "nfs-left")["status"]["containerStatuses"][0]["restartCount"] == 0
    assert fuse_processes(cluster.data_dir) == mounts  # adopted, not mounted again
    cluster.stop()
    cluster.down()
    assert leftovers(cluster.data_dir) == []
    assert (data / "f").read_text() == "here\nagain\n"
