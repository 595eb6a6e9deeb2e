"""The official package's `kubernetes.dynamic.DynamicClient` against a pinnace cluster.

The dynamic client knows no types: it learns every resource from legacy discovery
(`/version/`, `/api/`, `/apis/`, each group-version, all with trailing slashes) and builds
URLs from it, so these tests exercise discovery as much as the REST verbs behind it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    ConflictError,
    NotFoundError,
    ResourceNotFoundError,
)

from tests.e2e.cluster import Cluster

NS = "default"


@pytest.fixture(scope="module")
def api_client(cluster: Cluster) -> Iterator[client.ApiClient]:
    c = cluster.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The default cache lives in /tmp keyed by host URL: a reused port would read a stale one.
    return tmp_path_factory.mktemp("discovery") / "cache.json"


@pytest.fixture(scope="module")
def dyn(api_client: client.ApiClient, cache_file: Path) -> DynamicClient:
    return DynamicClient(api_client, cache_file=str(cache_file))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def configmap(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def test_discovery_finds_core_and_group_resources(dyn: DynamicClient) -> None:
    assert dyn.version["kubernetes"]["major"] == "1"
    assert dyn.version["kubernetes"]["minor"].startswith("32")

    cm = dyn.resources.get(api_version="v1", kind="ConfigMap")
    assert (cm.name, cm.namespaced, cm.group_version) == ("configmaps", True, "v1")
    assert {"create", "get", "list", "watch", "patch", "update", "delete"} <= set(cm.verbs)
    assert "cm" in cm.short_names

    ns = dyn.resources.get(api_version="v1", kind="Namespace")
    assert ns.namespaced is False

    deploy = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deploy.preferred and {"status", "scale"} <= set(deploy.subresources)
    assert deploy.subresources["scale"].kind == "Scale"
    # Kind alone is enough when one group serves it; the List kind is synthesised.
    assert dyn.resources.get(kind="Job").group_version == "batch/v1"
    assert dyn.resources.get(api_version="v1", kind="ConfigMapList").kind == "ConfigMapList"

    with pytest.raises(ResourceNotFoundError):
        dyn.resources.get(api_version="v1", kind="NoSuchKind")


def test_discovery_cache_round_trip(api_client: client.ApiClient, dyn: DynamicClient,
                                    cache_file: Path) -> None:
    before = dyn.resources.get(api_version="apps/v1", kind="Deployment").to_dict()
    assert cache_file.exists()
    # A second client decodes the same resources from the cache file alone.
    again = DynamicClient(api_client, cache_file=str(cache_file))
    assert again.resources.get(api_version="apps/v1", kind="Deployment").to_dict() == before


def test_configmap_crud(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="v1", kind="ConfigMap")
    name = unique("dyn-cm")
    created = api.create(body=configmap(name, app="dyn"), namespace=NS)
    assert created.metadata.name == name and created.metadata.uid
    assert isinstance(created.metadata.resourceVersion, str)

    assert api.get(name=name, namespace=NS).data.k == "v"
    listed = api.get(namespace=NS, label_selector="app=dyn")
    assert listed.kind == "ConfigMapList"
    assert name in [item.metadata.name for item in listed.items]
    others = api.get(namespace=NS, label_selector="app=x").items
    assert name not in [item.metadata.name for item in others]

    # strategic merge (the dynamic client's default), merge patch, JSON patch
    patched = api.patch(name=name, namespace=NS, body={"metadata": {"labels": {"s": "1"}}})
    assert dict(patched.metadata.labels) == {"app": "dyn", "s": "1"}
    patched = api.patch(name=name, namespace=NS, body={"data": {"k": None, "m": "2"}},
                        content_type="application/merge-patch+json")
    assert dict(patched.data) == {"m": "2"}
    patched = api.patch(name=name, namespace=NS,
                        body=[{"op": "add", "path": "/data/j", "value": "3"}],
                        content_type="application/json-patch+json")
    assert dict(patched.data) == {"m": "2", "j": "3"}

    current = api.get(name=name, namespace=NS).to_dict()
    current["data"] = {"replaced": "yes"}
    replaced = api.replace(body=current, namespace=NS)
    assert dict(replaced.data) == {"replaced": "yes"}
    assert int(replaced.metadata.resourceVersion) > int(current["metadata"]["resourceVersion"])
    with pytest.raises(ConflictError):
        api.replace(body=current, namespace=NS)  # stale resourceVersion

    status = api.delete(name=name, namespace=NS)
    assert status.kind in ("Status", "ConfigMap")
    with pytest.raises(NotFoundError):
        api.get(name=name, namespace=NS)


def test_server_side_apply(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="v1", kind="ConfigMap")
    name = unique("dyn-ssa")
    applied = api.server_side_apply(body=configmap(name), namespace=NS, field_manager="x")
    assert applied.data.k == "v"
    managers = {(m.manager, m.operation) for m in applied.metadata.managedFields}
    assert ("x", "Apply") in managers

    # Another manager changing a field "x" owns is a conflict, unless it forces.
    other = configmap(name)
    other["data"] = {"k": "w"}
    with pytest.raises(ConflictError):
        api.server_side_apply(body=other, namespace=NS, field_manager="y")
    forced = api.server_side_apply(body=other, namespace=NS, field_manager="y",
                                   force_conflicts=True)
    assert forced.data.k == "w"
    api.delete(name=name, namespace=NS)


def test_watch(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="v1", kind="ConfigMap")
    name = unique("dyn-watch")
    start = api.get(namespace=NS).metadata.resourceVersion
    api.create(body=configmap(name), namespace=NS)
    api.patch(name=name, namespace=NS, body={"data": {"k": "2"}})
    api.delete(name=name, namespace=NS)

    # From the list's resourceVersion, the three writes are replayed in order.
    seen: list[tuple[str, str]] = []
    for event in api.watch(namespace=NS, resource_version=start, timeout=10):
        if event["object"].metadata.name == name:
            seen.append((event["type"], event["raw_object"]["data"]["k"]))
            if event["type"] == "DELETED":
                break
    assert seen == [("ADDED", "v"), ("MODIFIED", "2"), ("DELETED", "2")]


def test_watch_live_by_name(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="v1", kind="ConfigMap")
    name = unique("dyn-live")

    def writes() -> None:
        api.create(body=configmap(name), namespace=NS)
        api.delete(name=name, namespace=NS)

    types: list[str] = []
    writer = threading.Timer(0.3, writes)
    writer.start()
    for event in api.watch(namespace=NS, name=name, timeout=10):
        types.append(event["type"])
        if event["type"] == "DELETED":
            break
    writer.join()
    assert types == ["ADDED", "DELETED"]


def test_deployment(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    name = unique("dyn-deploy")
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.28"}]}}}}
    created = api.create(body=body, namespace=NS)
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted by the server

    # strategic merge keys containers by name: the image changes, the list stays one long
    patched = api.patch(name=name, namespace=NS, body={"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    assert [c.image for c in patched.spec.template.spec.containers] == ["busybox:1.36"]
    assert patched.metadata.generation == 2

    scale = api.subresources["scale"]
    assert scale.get(name=name, namespace=NS).spec.replicas == 1
    scaled = scale.patch(name=name, namespace=NS, body={"spec": {"replicas": 3}},
                         content_type="application/merge-patch+json")
    assert scaled.kind == "Scale" and scaled.spec.replicas == 3
    assert api.get(name=name, namespace=NS).spec.replicas == 3

    status = api.status.get(name=name, namespace=NS)
    assert status.kind == "Deployment" and status.metadata.name == name

    api.delete(name=name, namespace=NS, propagation_policy="Background")
    with pytest.raises(NotFoundError):
        api.get(name=name, namespace=NS)


def test_job(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="batch/v1", kind="Job")
    name = unique("dyn-job")
    body = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox:1.28", "command": ["true"]}]}}}}
    created = api.create(body=body, namespace=NS)
    uid = created.metadata.uid
    # The server generates the selector and labels the template with the job's uid.
    assert created.spec.selector.matchLabels["batch.kubernetes.io/controller-uid"] == uid
    assert created.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == name
    assert created.spec.backoffLimit == 6

    listed = api.get(namespace=NS, field_selector=f"metadata.name={name}")
    assert [j.metadata.name for j in listed.items] == [name]

    # the pod template of a Job is immutable
    with pytest.raises(Exception) as err:
        api.patch(name=name, namespace=NS, body={"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    assert getattr(err.value, "status", None) == 422

    api.delete(name=name, namespace=NS, propagation_policy="Background")
    with pytest.raises(NotFoundError):
        api.get(name=name, namespace=NS)


def test_partial_object_metadata(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="v1", kind="Namespace")
    resp = api.get(header_params={
        "Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"})
    assert (resp.kind, resp.apiVersion) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert "default" in [item.metadata.name for item in resp.items]
    assert resp.items[0].spec is None  # metadata only


def test_delete_collection_by_label(dyn: DynamicClient) -> None:
    api = dyn.resources.get(api_version="v1", kind="ConfigMap")
    group = unique("batch")
    names = [unique("dyn-col") for _ in range(3)]
    for name in names:
        api.create(body=configmap(name, group=group), namespace=NS)
    keep = unique("dyn-keep")
    api.create(body=configmap(keep, group="other"), namespace=NS)

    deleted = api.delete(namespace=NS, label_selector=f"group={group}")
    assert deleted.kind == "ConfigMapList"
    assert sorted(item.metadata.name for item in deleted.items) == sorted(names)
    assert api.get(namespace=NS, label_selector=f"group={group}").items == []
    assert api.get(name=keep, namespace=NS).metadata.name == keep
    api.delete(name=keep, namespace=NS)
