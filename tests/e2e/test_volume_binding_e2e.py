"""Claims meet volumes through kubectl, on a real node named `node-1` (issue 10, done-when 2
and 4): seed 06's local volume places its pod on its node; claims bind the smallest
fitting volume with the right access modes or stay Pending with the binder's event; a
claim a running pod uses survives `kubectl delete pvc` until the pod is gone. On a node
of another name, seed 06's pod stays Pending with the scheduler's node-affinity message."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import pod, real_cluster, wait_for
from tests.paths import MANIFESTS

NODE = "node-1"  # the name seed 06's volume is pinned to
LOCAL_DIR = Path("/var/lib/local-pv-data")  # seed 06's local volume path
SEED = str(MANIFESTS / "06-local-pv.yaml")
AFFINITY_MESSAGE = ("0/1 nodes are available: 1 node(s) didn't match PersistentVolume's node "
                    "affinity. preemption: 0/1 nodes are available: 1 Preemption is not "
                    "helpful for scheduling.")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("volumes"), local_registry.url,
                            node_name=NODE)


@pytest.fixture
def local_dir() -> Iterator[Path]:
    """Seed 06's host directory, made for the test and removed after it."""
    created = not LOCAL_DIR.exists()
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    try:
        yield LOCAL_DIR
    finally:
        if created:
            shutil.rmtree(LOCAL_DIR, ignore_errors=True)


def get(c: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    r = c.kubectl("get", kind, name, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def phase(c: Cluster, kind: str, name: str) -> str:
    return ((get(c, kind, name) or {}).get("status") or {}).get("phase", "")


def events(c: Cluster, name: str) -> list[tuple[str, str, str]]:
    items = json.loads(c.kubectl("get", "events", "-o", "json").stdout)["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items
            if e["involvedObject"]["name"] == name]


def apply(c: Cluster, *objects: dict[str, Any]) -> None:
    c.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in objects))


def volume(name: str, size: str, path: Path, *modes: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                     "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}}


def claim(name: str, size: str, *modes: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": list(modes), "storageClassName": "",
                     "resources": {"requests": {"storage": size}}}}


def test_local_volume_pod_runs_on_its_node(cluster: Cluster, local_dir: Path) -> None:
    try:
        cluster.kubectl("apply", "-f", SEED)
        cluster.kubectl("wait", "--for=condition=Ready", "pod/local-pod", "--timeout=90s",
                        timeout=100)
        assert pod(cluster, "local-pod")["spec"]["nodeName"] == NODE
        wait_for(lambda: (local_dir / "hello").is_file() and
                 (local_dir / "hello").read_text() == "hello\n")
        claim_obj = get(cluster, "pvc", "local-pvc") or {}
        assert claim_obj["status"]["phase"] == "Bound"
        assert claim_obj["spec"]["volumeName"] == "local-pv"
        listing = cluster.kubectl("get", "pv", "local-pv").stdout
        assert "Bound" in listing and "default/local-pvc" in listing
    finally:
        cluster.kubectl("delete", "pod", "local-pod", "--grace-period=1", "--ignore-not-found",
                        timeout=90)
        cluster.kubectl("delete", "-f", SEED, "--ignore-not-found", "--timeout=60s",
                        timeout=90)


def test_claims_bind_smallest_fitting_volume_and_stay_while_used(
        cluster: Cluster, tmp_path: Path) -> None:
    apply(cluster, volume("pv-1g", "1Gi", tmp_path / "a", "ReadWriteOnce"),
          volume("pv-2g", "2Gi", tmp_path / "b", "ReadWriteOnce"))
    for name in ("pv-1g", "pv-2g"):
        wait_for(lambda n=name: phase(cluster, "pv", n) == "Available")
    try:
        # larger than every volume, and read-write-many with only RWO volumes: Pending
        apply(cluster, claim("too-big", "5Gi", "ReadWriteOnce"),
              claim("shared", "1Gi", "ReadWriteMany"))
        no_volume = ("Normal", "FailedBinding", "no persistent volumes available for this "
                     "claim and no storage class is set")
        for name in ("too-big", "shared"):
            wait_for(lambda n=name: no_volume in events(cluster, n))
            assert phase(cluster, "pvc", name) == "Pending"
        # of the two volumes that fit, the smaller one
        apply(cluster, claim("data", "500Mi", "ReadWriteOnce"))
        wait_for(lambda: phase(cluster, "pvc", "data") == "Bound")
        assert (get(cluster, "pvc", "data") or {})["spec"]["volumeName"] == "pv-1g"
        assert phase(cluster, "pv", "pv-2g") == "Available"
        assert "500Mi" not in cluster.kubectl("get", "pvc", "data").stdout  # the PV's size
        assert "1Gi" in cluster.kubectl("get", "pvc", "data").stdout

        # a claim a running pod uses stays, Terminating, until the pod is gone
        apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
                        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                            "name": "app", "image": "busybox:1.28",
                            "command": ["sh", "-c", "echo kept > /data/f && sleep 3600"],
                            "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                            "volumes": [{"name": "d", "persistentVolumeClaim": {
                                "claimName": "data"}}]}})
        cluster.kubectl("wait", "--for=condition=Ready", "pod/user", "--timeout=90s",
                        timeout=100)
        cluster.kubectl("delete", "pvc", "data", "--wait=false")
        wait_for(lambda: "Terminating" in cluster.kubectl("get", "pvc", "data").stdout)
        assert cluster.kubectl("exec", "user", "--", "cat", "/data/f").stdout == "kept\n"
        assert "Terminating" in cluster.kubectl("get", "pvc", "data").stdout
        cluster.kubectl("delete", "pod", "user", "--grace-period=1", timeout=90)
        wait_for(lambda: get(cluster, "pvc", "data") is None)
        wait_for(lambda: phase(cluster, "pv", "pv-1g") == "Released")
        assert (tmp_path / "a" / "f").read_text() == "kept\n"  # Retain: the data stays
    finally:
        cluster.kubectl("delete", "pod", "user", "--grace-period=1", "--ignore-not-found",
                        timeout=90)
        cluster.kubectl("delete", "pvc", "too-big", "shared", "data", "--ignore-not-found",
                        timeout=90)
        cluster.kubectl("delete", "pv", "pv-1g", "pv-2g", "--ignore-not-found", timeout=90)


@pytest.fixture
def other_node(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    """A cluster whose real node has another name (the default of the e2e clusters)."""
    yield from real_cluster(tmp_path_factory.mktemp("other-node"), local_registry.url)


def test_local_volume_pod_pending_on_a_node_of_another_name(other_node: Cluster) -> None:
    other_node.kubectl("apply", "-f", SEED)
    wait_for(lambda: phase(other_node, "pvc", "local-pvc") == "Bound")

    def unschedulable() -> str:
        conds = (pod(other_node, "local-pod").get("status") or {}).get("conditions") or []
        return next((c.get("message", "") for c in conds if c["type"] == "PodScheduled"
                     and c["status"] == "False"), "")
    # (tried before its claim was bound, the pod first waits for "unbound immediate" claims)
    wait_for(lambda: unschedulable() == AFFINITY_MESSAGE)
    assert ("Warning", "FailedScheduling", AFFINITY_MESSAGE) in events(other_node, "local-pod")
    assert pod(other_node, "local-pod")["status"]["phase"] == "Pending"
    other_node.kubectl("delete", "-f", SEED, "--timeout=60s", timeout=90)
