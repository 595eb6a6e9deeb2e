"""OpenAPI v3 index and documents, in the shapes kube-apiserver publishes."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pinnace.apiserver import openapi, openapi_paths

SCHEMA = "#/components/schemas/"


def _doc(path: str) -> dict[str, Any]:
    data = openapi.openapi_v3_document(path)
    assert data is not None
    return json.loads(data)


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_index_lists_every_group_version_with_its_hash() -> None:
    paths = openapi.openapi_v3_index()["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/rbac.authorization.k8s.io/v1",
            "apis/storage.k8s.io/v1", "apis/coordination.k8s.io/v1"} <= set(paths)
    url = urlsplit(paths["apis/apps/v1"]["serverRelativeURL"])
    assert url.path == "/openapi/v3/apis/apps/v1"
    digest = parse_qs(url.query)["hash"][0]
    assert digest == openapi.hash_for("apis/apps/v1")
    data = openapi.openapi_v3_document("apis/apps/v1")
    assert digest == hashlib.sha512(data).hexdigest().upper()


def test_unknown_paths_have_no_document() -> None:
    assert openapi.openapi_v3_document("apis/apps/v2") is None
    assert openapi.openapi_v3_document("apis/nope.example.com/v1") is None
    assert openapi.openapi_v3_document("api/v2") is None


def test_documents_are_cached_bytes() -> None:
    assert openapi.openapi_v3_document("api/v1") is openapi.openapi_v3_document("/api/v1")


def test_every_ref_resolves_inside_its_document() -> None:
    for path in openapi.openapi_v3_index()["paths"]:
        doc = _doc(path)
        assert doc["openapi"].startswith("3.0")
        schemas = doc["components"]["schemas"]
        for node in _walk(doc):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith(SCHEMA), ref
                assert ref[len(SCHEMA):] in schemas, (path, ref)


def test_schemas_use_kubernetes_v3_forms() -> None:
    schemas = _doc("apis/apps/v1")["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["type"] == "object"
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert deployment["properties"]["kind"] == {
        "description": deployment["properties"]["kind"]["description"], "type": "string"}
    spec = deployment["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": SCHEMA + "io.k8s.api.apps.v1.DeploymentSpec"}]
    assert spec["description"]
    strategy = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    int_or_string = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert int_or_string["format"] == "int-or-string"
    assert "type" not in int_or_string
    assert schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"] == [
        {"type": "string"}, {"type": "number"}]
    for node in _walk(schemas):
        assert not isinstance(node.get("type"), list), node
    for name in ("ObjectMeta", "Status", "DeleteOptions", "Patch", "WatchEvent",
                 "APIResourceList", "ListMeta"):
        assert "io.k8s.apimachinery.pkg.apis.meta.v1." + name in schemas


def test_patch_merge_keys_survive_for_strategic_merge() -> None:
    schemas = _doc("api/v1")["components"]["schemas"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["items"] == {"$ref": SCHEMA + "io.k8s.api.core.v1.Container"}


def test_group_version_document_holds_only_its_kinds() -> None:
    schemas = _doc("apis/coordination.k8s.io/v1")["components"]["schemas"]
    assert "io.k8s.api.coordination.v1.Lease" in schemas
    assert "io.k8s.api.core.v1.Pod" not in schemas
    assert "io.k8s.api.apps.v1.Deployment" not in schemas


def test_item_paths_have_every_operation() -> None:
    paths = _doc("apis/apps/v1")["paths"]
    item = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert {"get", "put", "patch", "delete", "parameters"} == set(item)
    patch = item["patch"]
    assert patch["operationId"] == "patchAppsV1NamespacedDeployment"
    assert patch["x-kubernetes-action"] == "patch"
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment",
                                                         "version": "v1"}
    assert {p["name"] for p in patch["parameters"]} == {"dryRun", "fieldManager",
                                                        "fieldValidation", "force"}
    assert set(patch["requestBody"]["content"]) == {
        "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
    ok = patch["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": SCHEMA + "io.k8s.api.apps.v1.Deployment"}
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}


def test_collection_and_all_namespaces_paths() -> None:
    paths = _doc("api/v1")["paths"]
    pods = paths["/api/v1/namespaces/{namespace}/pods"]
    assert pods["get"]["x-kubernetes-action"] == "list"
    assert pods["get"]["operationId"] == "listCoreV1NamespacedPod"
    assert {"watch", "labelSelector", "fieldSelector", "limit", "continue",
            "resourceVersion"} <= {p["name"] for p in pods["get"]["parameters"]}
    assert pods["post"]["x-kubernetes-action"] == "post"
    assert pods["delete"]["x-kubernetes-action"] == "deletecollection"
    assert pods["delete"]["operationId"] == "deleteCoreV1CollectionNamespacedPod"
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    nodes = paths["/api/v1/nodes/{name}"]
    assert nodes["get"]["operationId"] == "readCoreV1Node"
    assert {p["name"] for p in nodes["parameters"]} == {"name", "pretty"}
    assert set(paths["/api/v1/namespaces/{namespace}/bindings"]) == {"post", "parameters"}


def test_subresource_paths() -> None:
    paths = _doc("api/v1")["paths"]
    base = "/api/v1/namespaces/{namespace}/pods/{name}"
    status = paths[base + "/status"]
    assert set(status) == {"get", "put", "patch", "parameters"}
    assert status["patch"]["operationId"] == "patchCoreV1NamespacedPodStatus"
    log = paths[base + "/log"]["get"]
    assert "text/plain" in log["responses"]["200"]["content"]
    assert {"container", "follow", "tailLines"} <= {p["name"] for p in log["parameters"]}
    exec_ = paths[base + "/exec"]
    assert exec_["post"]["x-kubernetes-action"] == "connect"
    assert exec_["get"]["operationId"] == "connectCoreV1GetNamespacedPodExec"
    eviction = paths[base + "/eviction"]["post"]
    assert eviction["x-kubernetes-group-version-kind"] == {"group": "policy", "kind": "Eviction",
                                                           "version": "v1"}
    body = eviction["requestBody"]["content"]["*/*"]["schema"]
    assert body == {"$ref": SCHEMA + "io.k8s.api.policy.v1.Eviction"}
    scale = _doc("apis/apps/v1")["paths"][
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Scale"
    assert scale["put"]["operationId"] == "replaceAppsV1NamespacedDeploymentScale"


def test_group_names_in_operation_ids() -> None:
    paths = _doc("apis/rbac.authorization.k8s.io/v1")["paths"]
    roles = paths["/apis/rbac.authorization.k8s.io/v1/clusterroles"]
    assert roles["get"]["operationId"] == "listRbacAuthorizationV1ClusterRole"
    assert roles["get"]["tags"] == ["rbacAuthorization_v1"]


def test_building_every_document_is_fast() -> None:
    for cached in (openapi._document_bytes, openapi._hash, openapi_paths._components):
        cached.cache_clear()
    start = time.perf_counter()
    openapi.openapi_v3_index()
    assert time.perf_counter() - start < 1.0
