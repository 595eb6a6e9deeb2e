"""Done-when 1: the seed manifests apply with kubectl, unmodified, in every mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.e2e.cluster import Cluster
from tests.paths import MANIFESTS


def seed_objects() -> list[tuple[str, str]]:
    """(kind as kubectl prints it, name) of every object in the seed manifests:
    `deployment.apps`, `pod`, ..."""
    return [(kind, name) for kind, name, _ in _seed_docs()]


def reapplied(kind: str, doc: dict) -> str:
    """What kubectl prints for an object applied again unchanged, as against kube-apiserver.
    A Secret written with stringData is "configured" on every apply: the server folds
    stringData into data (kubernetes#87736). So is a pod with volumes of its own: the
    ServiceAccount admission added the kube-api-access volume and mounts, so the live lists
    differ from the file's and kubectl's three-way patch carries `$setElementOrder` for
    them (a patch that changes nothing: the resourceVersion stays)."""
    if kind == "secret" or (kind == "pod" and doc["spec"].get("volumes")):
        return "configured"
    return "unchanged"


def _seed_docs() -> list[tuple[str, str, dict]]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                group = doc["apiVersion"].rpartition("/")[0]
                kind = doc["kind"].lower() + (f".{group}" if group else "")
                out.append((kind, doc["metadata"]["name"], doc))
    return out


def get_json(cluster: Cluster, kind: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-o", "json").stdout)


def test_apply_reapply_change_delete(cluster: Cluster, tmp_path: Path) -> None:
    objects = seed_objects()
    assert len(objects) >= 12

    out = cluster.kubectl("apply", "-f", str(MANIFESTS)).stdout
    for kind, name in objects:
        assert f"{kind}/{name} created" in out, out
    for kind, name in objects:
        assert get_json(cluster, kind, name)["metadata"]["name"] == name

    again = cluster.kubectl("apply", "-f", str(MANIFESTS)).stdout
    for kind, name, doc in _seed_docs():
        assert f"{kind}/{name} {reapplied(kind, doc)}" in again, again

    # change one field in a copy: only that object, only that field changes
    before_cm = get_json(cluster, "configmap", "log-config")
    before_pod = get_json(cluster, "pod", "configmap-pod")
    copy = tmp_path / "03-configmap-pod.yaml"
    shutil.copy(MANIFESTS / "03-configmap-pod.yaml", copy)
    copy.write_text(copy.read_text().replace('log_level: "debug"', 'log_level: "info"'))
    changed = cluster.kubectl("apply", "-f", str(copy)).stdout
    assert "configmap/log-config configured" in changed
    assert "pod/configmap-pod configured" in changed  # see reapplied(): nothing changes
    after_cm = get_json(cluster, "configmap", "log-config")
    assert after_cm["data"] == {"log_level": "info"}
    assert after_cm["metadata"]["uid"] == before_cm["metadata"]["uid"]
    assert get_json(cluster, "pod", "configmap-pod")["metadata"]["resourceVersion"] == \
        before_pod["metadata"]["resourceVersion"]

    # back to the seed's values, then server-side apply of the same files shares the
    # fields with client-side apply (same values: no conflict)
    restored = cluster.kubectl("apply", "-f", str(MANIFESTS)).stdout
    assert "configmap/log-config configured" in restored
    ssa = cluster.kubectl("apply", "--server-side", "-f", str(MANIFESTS)).stdout
    for kind, name in objects:
        assert f"{kind}/{name} serverside-applied" in ssa, ssa
    assert get_json(cluster, "configmap", "log-config")["data"] == {"log_level": "debug"}
    deploy = json.loads(cluster.kubectl("get", "deployment", "nginx", "-o", "json",
                                        "--show-managed-fields").stdout)
    managers = {m["manager"] for m in deploy["metadata"]["managedFields"]}
    assert "kubectl" in managers

    deleted = cluster.kubectl("delete", "-f", str(MANIFESTS), "--wait=true").stdout
    for kind, name in objects:
        assert f'{kind} "{name}" deleted' in deleted, deleted
    for kind, name in objects:
        gone = cluster.kubectl("get", kind, name, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_server_side_apply_creates(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "--server-side", "-f",
                          str(MANIFESTS / "09-nginx-daemonset.yaml")).stdout
    assert "daemonset.apps/nginx serverside-applied" in out
    ds = get_json(cluster, "daemonset", "nginx")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.19"
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"  # defaulted
    cluster.kubectl("delete", "-f", str(MANIFESTS / "09-nginx-daemonset.yaml"))
