"""Done-when 2: kubectl get prints Kubernetes' columns, -w follows changes, explain works."""

from __future__ import annotations

import queue
import re
import threading
import time

from tests.e2e.cluster import Cluster
from tests.paths import MANIFESTS

# kubectl 1.32 against Kubernetes 1.32: the header of each kind (with -A, NAMESPACE first).
HEADERS = {
    "pod": ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
    "deployment.apps": ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
    "service": ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
    "job.batch": ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
    "daemonset.apps": ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                       "NODE SELECTOR", "AGE"],
    "persistentvolume": ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS",
                         "CLAIM", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"],
    "persistentvolumeclaim": ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES",
                              "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"],
    "configmap": ["NAME", "DATA", "AGE"],
    "secret": ["NAME", "TYPE", "DATA", "AGE"],
}
WIDE_EXTRA = {
    "pod": ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
    "deployment.apps": ["CONTAINERS", "IMAGES", "SELECTOR"],
    "service": ["SELECTOR"],
    "job.batch": ["CONTAINERS", "IMAGES", "SELECTOR"],
    "daemonset.apps": ["CONTAINERS", "IMAGES", "SELECTOR"],
    "persistentvolume": ["VOLUMEMODE"],
    "persistentvolumeclaim": ["VOLUMEMODE"],
    "configmap": [],
    "secret": [],
}


def split_header(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def blocks(output: str) -> dict[str, tuple[list[str], list[str]]]:
    """kubectl prints one table per kind, separated by blank lines: kind -> (header, rows)."""
    out = {}
    for block in output.strip().split("\n\n"):
        lines = block.splitlines()
        header, rows = split_header(lines[0]), lines[1:]
        name = next((w for w in rows[0].split() if "/" in w), "?/") if rows else "?/"
        kind = name.split("/")[0]
        out[kind] = (header, rows)
    return out


def test_get_columns(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFESTS))
    kinds = "pods,deploy,svc,job,ds,pv,pvc,cm,secret"
    plain = blocks(cluster.kubectl("get", kinds, "-A").stdout)
    wide = blocks(cluster.kubectl("get", kinds, "-A", "-o", "wide").stdout)
    for kind, header in HEADERS.items():
        # with -A kubectl adds NAMESPACE to every table, empty for cluster-scoped kinds
        prefix = ["NAMESPACE"]
        assert plain[kind][0] == prefix + header, (kind, plain[kind][0])
        assert wide[kind][0] == prefix + header + WIDE_EXTRA[kind], (kind, wide[kind][0])
    # a few cells, as Kubernetes prints them
    svc = next(r for r in plain["service"][1] if "service/nginx" in r)
    assert "NodePort" in svc and "8080:31001/TCP" in svc
    pv = next(r for r in plain["persistentvolume"][1] if "nfs-pv" in r)
    assert "1Gi" in pv and "RWX" in pv and "Retain" in pv
    pod = next(r for r in plain["pod"][1] if "pod/configmap-pod" in r)
    assert "0/1" in pod and "Pending" in pod
    cm = next(r for r in plain["configmap"][1] if "configmap/log-config" in r)
    assert cm.split()[2] == "1"


def test_get_watch_sees_other_clients_change(cluster: Cluster) -> None:
    watch = cluster.kubectl_popen("get", "configmaps", "-w", "--output-watch-events")
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in watch.stdout], daemon=True)
    reader.start()

    def next_line_with(word: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                return None
            if word in line:
                return line
        return None

    try:
        assert next_line_with("NAME", 30) is not None  # the initial list has arrived
        cluster.kubectl("create", "configmap", "watched", "--from-literal=a=b")
        created = time.monotonic()
        line = next_line_with("watched", 5)
        arrived = time.monotonic()
        assert line is not None and "ADDED" in line, line
        assert arrived - created < 1.0
        cluster.kubectl("label", "configmap", "watched", "x=y")
        line = next_line_with("watched", 5)
        assert line is not None and "MODIFIED" in line
    finally:
        watch.terminate()
        watch.wait(10)


def test_explain(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pod.spec.volumes").stdout
    assert "KIND:       Pod" in out
    assert "FIELD: volumes <[]Volume>" in out
    assert "configMap" in out and "persistentVolumeClaim" in out


def test_delete_waits_for_deletion(cluster: Cluster) -> None:
    cluster.kubectl("create", "configmap", "short-lived", "--from-literal=a=b")
    out = cluster.kubectl("delete", "configmap", "short-lived").stdout
    assert 'configmap "short-lived" deleted' in out
    assert cluster.kubectl("get", "configmap", "short-lived", check=False).returncode == 1


def test_unknown_resource_message(cluster: Cluster) -> None:
    result = cluster.kubectl("get", "widgets", check=False)
    assert result.returncode == 1
    assert 'the server doesn\'t have a resource type "widgets"' in result.stderr

