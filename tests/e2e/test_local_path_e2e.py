"""Dynamic provisioning on a real node, through kubectl (issue 10, done-when 3): a claim
with no class gets the default `local-path` class, and a volume once a pod uses it (the
scheduler selects the node, the provisioner makes the PV, the binder binds, the node
agent mounts a file system of the claim's size); writing past the size fails with
"No space left on device"; expanding the claim lets the write succeed; deleting pod and
claim removes the PV and its directory.

Where the host refuses online growth of a mounted ext4 (root without CAP_SYS_RESOURCE,
as on the test VMs), the claim says FileSystemResizePending and the file system grows
when its pod is restarted — Kubernetes' offline expansion; the test does what that
condition asks of a user.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import real_cluster, wait_for

CLAIM = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 20Mi}}
"""
WRITER = """
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:1.28
    command: [sleep, "3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("local-path"), local_registry.url)


def get(c: Cluster, *args: str) -> dict[str, Any]:
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def write(c: Cluster, mib: int) -> tuple[int, str]:
    """Write `mib` MiB into the volume from the pod: (exit code, what dd said)."""
    r = c.kubectl("exec", "writer", "--", "sh", "-c",
                  f"dd if=/dev/zero of=/data/big bs=1M count={mib} 2>&1; s=$?; "
                  "rm -f /data/big; exit $s", check=False)
    return r.returncode, r.stdout + r.stderr


def start_writer(c: Cluster) -> None:
    c.kubectl("apply", "-f", "-", input=WRITER)
    c.kubectl("wait", "--for=condition=Ready", "pod/writer", "--timeout=90s", timeout=100)


def test_classless_claim_gets_an_enforced_expandable_local_path_volume(
        cluster: Cluster) -> None:
    c = cluster
    c.kubectl("apply", "-f", "-", input=CLAIM)
    claim = get(c, "pvc", "data")
    assert claim["spec"]["storageClassName"] == "local-path"  # the default class
    assert claim["status"]["phase"] == "Pending"  # WaitForFirstConsumer: no pod yet

    start_writer(c)
    claim = wait_for(lambda: (cl := get(c, "pvc", "data"))["status"]["phase"] == "Bound"
                     and cl, timeout=30)
    pv_name = claim["spec"]["volumeName"]
    assert pv_name == f"pvc-{claim['metadata']['uid']}"
    pv = get(c, "pv", pv_name)
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == \
        "pinnace.io/local-path"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    directory = Path(pv["spec"]["local"]["path"])
    assert directory == c.data_dir / "storage" / f"{pv_name}_default_data"
    assert directory.is_dir()
    events = c.kubectl("get", "events", "--field-selector",
                       "involvedObject.name=data", "-o", "json").stdout
    assert f"Successfully provisioned volume {pv_name}" in events

    # the claim's size is enforced: the pod sees a 20Mi file system, 30 MiB do not fit
    df = c.kubectl("exec", "writer", "--", "df", "-k", "/data").stdout.splitlines()[-1]
    assert 17 * 1024 < int(df.split()[1]) <= 20 * 1024, df
    code, said = write(c, 30)
    assert code != 0 and "No space left on device" in said, said
    assert write(c, 10)[0] == 0

    c.kubectl("patch", "pvc", "data", "-p",
              '{"spec":{"resources":{"requests":{"storage":"60Mi"}}}}')
    wait_for(lambda: get(c, "pv", pv_name)["spec"]["capacity"]["storage"] == "60Mi",
             timeout=30)

    def grown_or_pending() -> str:
        status = get(c, "pvc", "data")["status"]
        if status["capacity"]["storage"] == "60Mi":
            return "grown"
        if any(cond["type"] == "FileSystemResizePending"
               for cond in status.get("conditions") or []):
            return "pending"
        return ""
    if wait_for(grown_or_pending, timeout=30) == "pending":
        # no online growth on this host: restart the pod, as the condition asks
        c.kubectl("delete", "pod", "writer", "--wait=true", timeout=90)
        start_writer(c)
    wait_for(lambda: grown_or_pending() == "grown", timeout=60)
    assert "60Mi" in c.kubectl("get", "pvc", "data").stdout
    code, said = write(c, 30)
    assert code == 0, said

    c.kubectl("delete", "pod", "writer", "--wait=true", timeout=90)
    c.kubectl("delete", "pvc", "data", "--wait=true", timeout=90)
    wait_for(lambda: c.kubectl("get", "pv", pv_name, check=False).returncode != 0, timeout=60)
    wait_for(lambda: not directory.exists(), timeout=30)
    assert not (c.data_dir / "storage" / ".backing" / f"{directory.name}.ext4").exists()
