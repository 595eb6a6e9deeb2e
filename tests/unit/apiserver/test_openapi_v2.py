"""/openapi/v2: the Swagger document (JSON) and its gnostic protobuf encoding.

The protobuf is read back here with a minimal wire-format reader, field numbers from
gnostic's OpenAPIv2.proto, so the test checks the encoding independently of the writer;
kubectl decoding it for real is tests/e2e/test_kubectl_list_apply.py."""

from __future__ import annotations

import json
import struct
from typing import Any

import yaml

from pinnace.api import crd
from pinnace.api.kinds import REGISTRY, Registry
from pinnace.apiserver import openapi_v2

CONFIGMAP = "io.k8s.api.core.v1.ConfigMap"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, Any]]:
    """(number, value) of one message: varints as int, doubles as float, the rest bytes."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = struct.unpack("<d", buf[i:i + 8])[0], i + 8
        else:
            assert wire == 2, wire
            length, i = _varint(buf, i)
            value, i = buf[i:i + length], i + length
        out.append((number, value))
    return out


def named(buf: bytes, number: int) -> dict[str, bytes]:
    """A repeated Named* field (name=1, value=2) as a dict."""
    out = {}
    for n, entry in fields(buf):
        if n == number:
            f = dict(fields(entry))
            out[f[1].decode()] = f[2]
    return out


def field(buf: bytes, number: int) -> Any:
    return dict(fields(buf))[number]


def test_json_document_is_swagger_with_every_definition() -> None:
    doc = json.loads(openapi_v2.document_json())
    assert doc["swagger"] == "2.0"
    cm = doc["definitions"][CONFIGMAP]
    assert cm["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}]
    assert cm["properties"]["metadata"]["$ref"] == \
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert "enum" not in cm["properties"]["apiVersion"]
    assert doc["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "type": "string", "format": "int-or-string"}
    containers = doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"]["$ref"] == "#/definitions/io.k8s.api.core.v1.Container"


def test_json_paths_are_v2_operations() -> None:
    doc = json.loads(openapi_v2.document_json())
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert patch["operationId"] == "patchCoreV1NamespacedConfigMap"
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "ConfigMap"
    by_name = {p["name"]: p for p in patch["parameters"]}
    assert by_name["fieldValidation"] == {**by_name["fieldValidation"], "in": "query",
                                          "type": "string"}
    assert by_name["body"]["in"] == "body" and by_name["body"]["required"] is True
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert patch["responses"]["200"]["schema"] == {"$ref": f"#/definitions/{CONFIGMAP}"}


def test_protobuf_is_gnostic_document() -> None:
    doc = openapi_v2.document_protobuf()
    assert field(doc, 1) == b"2.0"  # swagger
    assert field(field(doc, 2), 1) == b"Kubernetes"  # info.title
    definitions = named(field(doc, 9), 1)
    assert len(definitions) == len(json.loads(openapi_v2.document_json())["definitions"])
    cm = definitions[CONFIGMAP]
    extensions = named(cm, 31)
    gvk = yaml.safe_load(field(extensions["x-kubernetes-group-version-kind"], 2))
    assert gvk == [{"group": "", "kind": "ConfigMap", "version": "v1"}]
    props = named(field(cm, 25), 1)
    assert field(props["metadata"], 1) == \
        b"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    data = props["data"]
    assert field(field(data, 22), 1) == b"object"  # type: TypeItem
    # additionalProperties (21) holds a Schema (1) of type (22) string
    assert field(field(field(field(data, 21), 1), 22), 1) == b"string"


def test_protobuf_operations_and_parameters() -> None:
    doc = openapi_v2.document_protobuf()
    paths = named(field(doc, 8), 2)
    item = paths["/api/v1/namespaces/{namespace}/configmaps/{name}"]
    patch = field(item, 8)
    params = [field(p, 1) for n, p in fields(patch) if n == 8]  # ParametersItem.parameter
    query = {}
    for p in params:
        kinds = dict(fields(p))
        if 2 in kinds:  # non-body -> query sub-schema (3)
            sub = dict(fields(kinds[2]))
            if 3 in sub:
                q = dict(fields(sub[3]))
                query[q[4].decode()] = q
    assert query["fieldValidation"][2] == b"query" and query["fieldValidation"][6] == b"string"
    defs = named(field(doc, 9), 1)
    spec = named(field(defs["io.k8s.api.apps.v1.DeploymentSpec"], 25), 1)
    assert field(field(spec["replicas"], 22), 1) == b"integer"
    assert field(spec["selector"], 1) == \
        b"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"


def test_negotiation_like_kube_openapi() -> None:
    proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    assert openapi_v2.negotiate(proto) == (openapi_v2.document_protobuf(),
                                           "application/com.github.proto-openapi.spec.v2.v1.0"
                                           "+protobuf")
    assert openapi_v2.negotiate("")[1] == "application/json"
    assert openapi_v2.negotiate("*/*")[1] == "application/json"
    assert openapi_v2.negotiate(f"application/json;q=0.5, {proto}")[1].endswith("protobuf")
    assert openapi_v2.negotiate("text/plain") is None


def _with_custom_kind(schema: dict) -> tuple[Registry, str]:
    definition = {
        "metadata": {"name": "gizmos.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "gizmos", "kind": "Gizmo"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}]}}
    kinds = REGISTRY.copy()
    for rt in crd.resource_types(definition):
        kinds.add(rt)
    return kinds, "com.example.v1.Gizmo"


def test_a_custom_kind_joins_the_document_of_its_registry_only() -> None:
    before = openapi_v2.etag()
    kinds, name = _with_custom_kind({"type": "object", "properties": {
        "spec": {"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "string", "nullable": True},
            "b": {"type": "array", "items": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"x": {"type": "string"}}},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                       "x-kubernetes-int-or-string": True}}}}})
    doc = openapi_v2.swagger_document(kinds)
    spec = doc["definitions"][name]["properties"]["spec"]
    # what kubectl must not refuse: null for a nullable field, anything under a free one
    assert spec["required"] == ["b"]
    assert spec["properties"]["a"] == {}
    assert spec["properties"]["free"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert "anyOf" not in spec["properties"]["either"]
    assert doc["definitions"][name]["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Gizmo", "version": "v1"}]
    assert "/apis/example.com/v1/namespaces/{namespace}/gizmos/{name}" in doc["paths"]
    assert name not in openapi_v2.swagger_document()["definitions"]
    assert openapi_v2.etag() == before != openapi_v2.etag(kinds)
    # forgetting the kind builds the document again
    for rt in [rt for rt in kinds if rt.custom is not None]:
        kinds.remove(rt)
    assert name not in openapi_v2.swagger_document(kinds)["definitions"]


def test_a_free_form_custom_kind_is_published_as_a_bare_object() -> None:
    kinds, name = _with_custom_kind({"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": True})
    assert openapi_v2.swagger_document(kinds)["definitions"][name] == {
        "type": "object", "x-kubernetes-group-version-kind": [
            {"group": "example.com", "kind": "Gizmo", "version": "v1"}]}
