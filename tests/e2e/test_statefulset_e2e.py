"""Issue 10, Done-when 5: a StatefulSet on a real node (runc pods), through kubectl.

`web`, 3 replicas, one `data` claim per pod from its volumeClaimTemplate, bound by the
PV binder to hostPath PersistentVolumes the test makes (a class of its own, so nothing
else binds them): the pods start in order 0, 1, 2, each only once the one before is
Running and Ready; each has its own Bound claim; a file `web-1` writes is still there
after `kubectl delete pod web-1` brings the pod back; scaling to 1 removes `web-2`,
then `web-1`, and keeps their claims (the default retention policy).

Needs the PV binder (branch pv-binder): without it the claims stay Pending and the
pods wait for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import real_cluster, wait_for
from tests.e2e.workloads import PodWatch

pytestmark = pytest.mark.e2e

CLASS = "sts-e2e-hostpath"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("statefulset"), local_registry.url)


def volume(name: str, path: Path) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": CLASS,
                     "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}}


WEB: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
     "spec": {"clusterIP": "None", "selector": {"app": "web"},
              "ports": [{"port": 80, "name": "web"}]}},
    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
     "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                  "terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "app", "image": "busybox:1.28",
                                  "command": ["sh", "-c", "sleep 3600"],
                                  "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
              "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                  "accessModes": ["ReadWriteOnce"], "storageClassName": CLASS,
                  "resources": {"requests": {"storage": "1Gi"}}}}]}},
]


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return (pod.get("status") or {}).get("phase") == "Running" and \
        any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Order:
    """Checks, after every pod event, that `web-N` exists only once `web-(N-1)` is ready
    (or is going away, on a scale down), and records the order pods appear and start
    terminating in."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.terminating: list[str] = []
        self.violations: list[str] = []

    def __call__(self, pods: dict[str, dict[str, Any]]) -> None:
        for name, pod in pods.items():
            if name not in self.created:
                self.created.append(name)
                ordinal = int(name.rsplit("-", 1)[1])
                before = pods.get(f"web-{ordinal - 1}")
                if ordinal > 0 and (before is None or not ready(before)):
                    self.violations.append(f"{name} created before web-{ordinal - 1} was ready")
            if pod["metadata"].get("deletionTimestamp") and name not in self.terminating:
                self.terminating.append(name)
                higher = [n for n in pods if n > name and n != name]
                if higher:
                    self.violations.append(f"{name} deleted while {higher} still exist")


def claim(c: Cluster, name: str) -> dict[str, Any]:
    return json.loads(c.kubectl("get", "pvc", name, "-o", "json").stdout)


def pod_uid(c: Cluster, name: str) -> str:
    result = c.kubectl("get", "pod", name, "-o", "json", check=False)
    if result.returncode != 0:
        return ""
    pod = json.loads(result.stdout)
    return pod["metadata"]["uid"] if ready(pod) and \
        not pod["metadata"].get("deletionTimestamp") else ""


def test_web_starts_in_order_keeps_its_data_and_scales_down_in_reverse(
        cluster: Cluster, tmp_path: Path) -> None:
    for i in range(3):
        cluster.kubectl("apply", "-f", "-",
                        input=json.dumps(volume(f"sts-e2e-{i}", tmp_path / f"pv-{i}")))
    order = Order()
    with PodWatch(cluster, "default", label_selector="app=web", check=order) as watch:
        for obj in WEB:
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        cluster.kubectl("rollout", "status", "sts/web", "--timeout=180s", timeout=190)
        watch.assert_ok()
    assert order.created == ["web-0", "web-1", "web-2"]
    assert order.violations == []
    got = cluster.kubectl("get", "sts", "web").stdout
    assert got.split("\n")[1].split()[:2] == ["web", "3/3"], got

    # each pod its own Bound claim, on its own volume
    claims = [claim(cluster, f"data-web-{i}") for i in range(3)]
    assert [c["status"]["phase"] for c in claims] == ["Bound"] * 3
    volumes = {c["spec"]["volumeName"] for c in claims}
    assert volumes == {"sts-e2e-0", "sts-e2e-1", "sts-e2e-2"}

    # web-1's file outlives web-1
    cluster.kubectl("exec", "web-1", "--", "sh", "-c", "echo written-by-web-1 > /data/note")
    host_dir = tmp_path / f"pv-{claims[1]['spec']['volumeName'].rsplit('-', 1)[1]}"
    assert (host_dir / "note").read_text() == "written-by-web-1\n"
    old = pod_uid(cluster, "web-1")
    cluster.kubectl("delete", "pod", "web-1", timeout=90)
    wait_for(lambda: pod_uid(cluster, "web-1") not in ("", old), timeout=120)
    out = cluster.kubectl("exec", "web-1", "--", "cat", "/data/note").stdout
    assert out == "written-by-web-1\n"
    pod = json.loads(cluster.kubectl("get", "pod", "web-1", "-o", "json").stdout)
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("web-1", "web")

    # scale to 1: web-2 goes, then web-1; their claims stay Bound
    order = Order()
    with PodWatch(cluster, "default", label_selector="app=web", check=order) as watch:
        cluster.kubectl("scale", "sts/web", "--replicas=1")
        wait_for(lambda: cluster.kubectl("get", "pods", "-l", "app=web", "-o", "name")
                 .stdout.split() == ["pod/web-0"], timeout=120)
        watch.assert_ok()
    assert order.terminating == ["web-2", "web-1"]
    assert order.violations == []
    assert [claim(cluster, f"data-web-{i}")["status"]["phase"] for i in range(3)] == \
        ["Bound"] * 3
