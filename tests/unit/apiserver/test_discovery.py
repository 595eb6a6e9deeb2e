"""Discovery documents as kubectl and the Python client read them."""

from __future__ import annotations

import json

from kubernetes.client import ApiClient
from kubernetes.client.models import V1APIGroupList, V1APIResourceList, VersionInfo

from pinnace.apiserver import discovery


def _deserialize(body: dict, klass: type) -> object:
    """Decode a body the way the official client decodes a server reply."""
    return ApiClient().deserialize(json.dumps(body), klass.__name__, "application/json")


def _by_name(group: str, version: str) -> dict[str, dict]:
    body = discovery.api_resource_list(group, version)
    assert body is not None
    return {r["name"]: r for r in body["resources"]}


def test_version_reports_kubernetes_1_32() -> None:
    info = discovery.version_info()
    assert (info["major"], info["minor"]) == ("1", "32")
    assert info["gitVersion"].startswith("v1.32.0")
    parsed = _deserialize(info, VersionInfo)
    assert parsed.git_version == info["gitVersion"]
    assert set(info) == {"major", "minor", "gitVersion", "gitCommit", "gitTreeState",
                         "buildDate", "goVersion", "compiler", "platform"}


def test_core_api_versions() -> None:
    body = discovery.api_versions("10.0.0.1:6443")
    assert body["kind"] == "APIVersions"
    assert body["versions"] == ["v1"]
    assert body["serverAddressByClientCIDRs"] == [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]


def test_group_list_names_every_group_but_core() -> None:
    body = discovery.api_group_list()
    groups = {g["name"]: g for g in body["groups"]}
    assert "" not in groups
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert {"batch", "rbac.authorization.k8s.io", "storage.k8s.io",
            "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io"} <= set(groups)
    parsed = _deserialize(body, V1APIGroupList)
    assert any(g.name == "apps" for g in parsed.groups)


def test_single_group_and_unknown_group() -> None:
    apps = discovery.api_group("apps")
    assert apps is not None
    assert apps["kind"] == "APIGroup"
    assert apps["versions"] == [{"groupVersion": "apps/v1", "version": "v1"}]
    assert discovery.api_group("nope.example.com") is None
    assert discovery.api_group("") is None


def test_core_resources_carry_names_verbs_and_short_names() -> None:
    res = _by_name("", "v1")
    pods = res["pods"]
    assert pods["singularName"] == "pod"
    assert pods["namespaced"] is True
    assert pods["kind"] == "Pod"
    assert pods["shortNames"] == ["po"]
    assert pods["categories"] == ["all"]
    assert set(pods["verbs"]) == {"create", "delete", "deletecollection", "get", "list",
                                  "patch", "update", "watch"}
    assert pods["storageVersionHash"] == discovery.storage_version_hash("", "v1", "Pod")
    assert res["namespaces"]["namespaced"] is False
    assert res["bindings"]["verbs"] == ["create"]


def test_subresources_speak_their_own_kinds() -> None:
    res = _by_name("", "v1")
    assert res["pods/status"] == {"name": "pods/status", "singularName": "",
                                  "namespaced": True, "kind": "Pod",
                                  "verbs": ["get", "patch", "update"]}
    assert res["pods/log"]["verbs"] == ["get"]
    assert res["pods/exec"]["verbs"] == ["create", "get"]
    assert res["pods/exec"]["kind"] == "PodExecOptions"
    assert res["pods/binding"]["verbs"] == ["create"]
    eviction = res["pods/eviction"]
    assert (eviction["group"], eviction["version"], eviction["kind"]) == ("policy", "v1",
                                                                          "Eviction")
    assert eviction["verbs"] == ["create"]
    assert "group" not in res["pods/status"]
    scale = _by_name("apps", "v1")["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert scale["verbs"] == ["get", "patch", "update"]


def test_resource_list_decodes_in_the_official_client() -> None:
    body = discovery.api_resource_list("apps", "v1")
    assert body["groupVersion"] == "apps/v1"
    parsed = _deserialize(body, V1APIResourceList)
    names = {r.name for r in parsed.resources}
    assert {"deployments", "deployments/status", "deployments/scale", "replicasets",
            "statefulsets", "daemonsets", "controllerrevisions"} <= names
    assert discovery.api_resource_list("apps", "v2") is None
    assert discovery.api_resource_list("", "v2") is None


def test_storage_version_hash_is_stable_base64() -> None:
    a = discovery.storage_version_hash("apps", "v1", "Deployment")
    assert a == discovery.storage_version_hash("apps", "v1", "Deployment")
    assert a != discovery.storage_version_hash("apps", "v1", "ReplicaSet")
    assert len(a) == 12 and a.endswith("=")


def test_aggregated_core_group() -> None:
    body = discovery.aggregated_discovery(legacy=True)
    assert body["kind"] == "APIGroupDiscoveryList"
    assert body["apiVersion"] == "apidiscovery.k8s.io/v2"
    [core] = body["items"]
    assert "name" not in core["metadata"]
    [v1] = core["versions"]
    assert v1["version"] == "v1" and v1["freshness"] == "Current"
    pods = next(r for r in v1["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert pods["scope"] == "Namespaced"
    assert pods["singularResource"] == "pod"
    assert pods["shortNames"] == ["po"]
    subs = {s["subresource"]: s for s in pods["subresources"]}
    assert subs["eviction"]["responseKind"] == {"group": "policy", "version": "v1",
                                                "kind": "Eviction"}
    assert subs["status"]["verbs"] == ["get", "patch", "update"]
    nodes = next(r for r in v1["resources"] if r["resource"] == "nodes")
    assert nodes["scope"] == "Cluster"


def test_aggregated_named_groups() -> None:
    body = discovery.aggregated_discovery(legacy=False)
    groups = {g["metadata"]["name"]: g for g in body["items"]}
    assert "apps" in groups and "" not in groups
    deployments = next(r for r in groups["apps"]["versions"][0]["resources"]
                       if r["resource"] == "deployments")
    assert deployments["categories"] == ["all"]
    scale = next(s for s in deployments["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert discovery.AGGREGATED_CONTENT_TYPE == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
