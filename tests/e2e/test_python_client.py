"""Done-when 3: the official `kubernetes` Python package works against pinnace unchanged."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.e2e.cluster import Cluster

NS = "default"


@pytest.fixture(scope="module")
def api_client(cluster: Cluster) -> Iterator[client.ApiClient]:
    c = cluster.client()
    yield c
    c.close()


def pod(name: str, labels: dict[str, str]) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.28")]))


def pod_template(labels: dict[str, str], restart: str = "Always") -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(restart_policy=restart, containers=[
            client.V1Container(name="c", image="busybox:1.28", command=["true"])]))


# kind -> (create, read, list, patch, replace, delete, body factory, patch field check)
def cases(api_client: client.ApiClient) -> dict[str, dict[str, Any]]:
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    sel = client.V1LabelSelector(match_labels={"app": "t"})
    return {
        "pod": dict(
            create=lambda b: core.create_namespaced_pod(NS, b),
            read=lambda n: core.read_namespaced_pod(n, NS),
            list=lambda s: core.list_namespaced_pod(NS, label_selector=s),
            patch=lambda n, p: core.patch_namespaced_pod(n, NS, p),
            replace=lambda n, b: core.replace_namespaced_pod(n, NS, b),
            delete=lambda n: core.delete_namespaced_pod(n, NS),
            body=lambda n: pod(n, {"app": "t"})),
        "configmap": dict(
            create=lambda b: core.create_namespaced_config_map(NS, b),
            read=lambda n: core.read_namespaced_config_map(n, NS),
            list=lambda s: core.list_namespaced_config_map(NS, label_selector=s),
            patch=lambda n, p: core.patch_namespaced_config_map(n, NS, p),
            replace=lambda n, b: core.replace_namespaced_config_map(n, NS, b),
            delete=lambda n: core.delete_namespaced_config_map(n, NS),
            body=lambda n: client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=n, labels={"app": "t"}), data={"k": "v"})),
        "service": dict(
            create=lambda b: core.create_namespaced_service(NS, b),
            read=lambda n: core.read_namespaced_service(n, NS),
            list=lambda s: core.list_namespaced_service(NS, label_selector=s),
            patch=lambda n, p: core.patch_namespaced_service(n, NS, p),
            replace=lambda n, b: core.replace_namespaced_service(n, NS, b),
            delete=lambda n: core.delete_namespaced_service(n, NS),
            body=lambda n: client.V1Service(
                metadata=client.V1ObjectMeta(name=n, labels={"app": "t"}),
                spec=client.V1ServiceSpec(selector={"app": "t"}, ports=[
                    client.V1ServicePort(port=80)]))),
        "deployment": dict(
            create=lambda b: apps.create_namespaced_deployment(NS, b),
            read=lambda n: apps.read_namespaced_deployment(n, NS),
            list=lambda s: apps.list_namespaced_deployment(NS, label_selector=s),
            patch=lambda n, p: apps.patch_namespaced_deployment(n, NS, p),
            replace=lambda n, b: apps.replace_namespaced_deployment(n, NS, b),
            delete=lambda n: apps.delete_namespaced_deployment(n, NS),
            body=lambda n: client.V1Deployment(
                metadata=client.V1ObjectMeta(name=n, labels={"app": "t"}),
                spec=client.V1DeploymentSpec(selector=sel, template=pod_template({"app": "t"})))),
        "daemonset": dict(
            create=lambda b: apps.create_namespaced_daemon_set(NS, b),
            read=lambda n: apps.read_namespaced_daemon_set(n, NS),
            list=lambda s: apps.list_namespaced_daemon_set(NS, label_selector=s),
            patch=lambda n, p: apps.patch_namespaced_daemon_set(n, NS, p),
            replace=lambda n, b: apps.replace_namespaced_daemon_set(n, NS, b),
            delete=lambda n: apps.delete_namespaced_daemon_set(n, NS),
            body=lambda n: client.V1DaemonSet(
                metadata=client.V1ObjectMeta(name=n, labels={"app": "t"}),
                spec=client.V1DaemonSetSpec(selector=sel, template=pod_template({"app": "t"})))),
        "job": dict(
            create=lambda b: batch.create_namespaced_job(NS, b),
            read=lambda n: batch.read_namespaced_job(n, NS),
            list=lambda s: batch.list_namespaced_job(NS, label_selector=s),
            patch=lambda n, p: batch.patch_namespaced_job(n, NS, p),
            replace=lambda n, b: batch.replace_namespaced_job(n, NS, b),
            delete=lambda n: batch.delete_namespaced_job(n, NS, propagation_policy="Background"),
            body=lambda n: client.V1Job(
                metadata=client.V1ObjectMeta(name=n, labels={"app": "t"}),
                spec=client.V1JobSpec(template=pod_template({"app": "t"}, "Never")))),
        "pv": dict(
            create=lambda b: core.create_persistent_volume(b),
            read=lambda n: core.read_persistent_volume(n),
            list=lambda s: core.list_persistent_volume(label_selector=s),
            patch=lambda n, p: core.patch_persistent_volume(n, p),
            replace=lambda n, b: core.replace_persistent_volume(n, b),
            delete=lambda n: core.delete_persistent_volume(n),
            body=lambda n: client.V1PersistentVolume(
                metadata=client.V1ObjectMeta(name=n, labels={"app": "t"}),
                spec=client.V1PersistentVolumeSpec(
                    capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"],
                    host_path=client.V1HostPathVolumeSource(path="/tmp/pv")))),
        "pvc": dict(
            create=lambda b: core.create_namespaced_persistent_volume_claim(NS, b),
            read=lambda n: core.read_namespaced_persistent_volume_claim(n, NS),
            list=lambda s: core.list_namespaced_persistent_volume_claim(NS, label_selector=s),
            patch=lambda n, p: core.patch_namespaced_persistent_volume_claim(n, NS, p),
            replace=lambda n, b: core.replace_namespaced_persistent_volume_claim(n, NS, b),
            delete=lambda n: core.delete_namespaced_persistent_volume_claim(n, NS),
            body=lambda n: client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name=n, labels={"app": "t"}),
                spec=client.V1PersistentVolumeClaimSpec(
                    access_modes=["ReadWriteOnce"],
                    resources=client.V1VolumeResourceRequirements(
                        requests={"storage": "1Gi"})))),
    }


@pytest.mark.parametrize("kind", ["pod", "configmap", "service", "deployment", "daemonset",
                                  "job", "pv", "pvc"])
def test_crud(api_client: client.ApiClient, kind: str) -> None:
    ops = cases(api_client)[kind]
    name = f"py-{kind}"
    created = ops["create"](ops["body"](name))
    assert created.metadata.name == name and created.metadata.uid
    assert isinstance(created.metadata.resource_version, str)

    read = ops["read"](name)
    assert read.metadata.uid == created.metadata.uid

    listed = ops["list"]("app=t")
    assert name in [o.metadata.name for o in listed.items]
    assert name not in [o.metadata.name for o in ops["list"]("app=other").items]

    # strategic merge (a dict), merge (a dict with the content type forced) and JSON patch
    patched = ops["patch"](name, {"metadata": {"labels": {"strategic": "yes"}}})
    assert patched.metadata.labels == {"app": "t", "strategic": "yes"}
    api_client.set_default_header("Content-Type", "application/merge-patch+json")
    try:
        patched = ops["patch"](name, {"metadata": {"labels": {"merge": "yes"}}})
    finally:
        api_client.default_headers.pop("Content-Type", None)
    assert patched.metadata.labels["merge"] == "yes"
    patched = ops["patch"](name, [{"op": "add", "path": "/metadata/labels/json", "value": "y"}])
    assert patched.metadata.labels["json"] == "y"

    current = ops["read"](name)
    current.metadata.annotations = {"replaced": "yes"}
    replaced = ops["replace"](name, current)
    assert replaced.metadata.annotations == {"replaced": "yes"}
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)

    # replacing with the stale version is a conflict
    with pytest.raises(ApiException) as err:
        ops["replace"](name, current)
    assert err.value.status == 409

    ops["delete"](name)
    # volumes and claims carry the pv-/pvc-protection finalizer, as in Kubernetes: they
    # are gone once the protection controller has seen nothing uses them
    deadline = time.monotonic() + 10
    with pytest.raises(ApiException) as err:
        while time.monotonic() < deadline:
            ops["read"](name)
            time.sleep(0.1)
    assert err.value.status == 404


def test_watch_stream_in_order(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def follow() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, NS, resource_version=start,
                           timeout_seconds=20):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED" and ev["object"].metadata.name == "watched-py":
                w.stop()
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched-py"), data={"a": "1"})
    core.create_namespaced_config_map(NS, body)
    core.patch_namespaced_config_map("watched-py", NS, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("watched-py", NS)
    thread.start()  # started after the writes: they must be replayed from `start`
    assert done.wait(25)
    mine = [t for t, n in seen if n == "watched-py"]
    assert mine == ["ADDED", "MODIFIED", "DELETED"]
