"""OpenAPI v3 documents of custom resources, built from their definitions' schemas.

A custom version's schema is published as Kubernetes publishes it: the definition's
`openAPIV3Schema` with `metadata` as ObjectMeta and the group-version-kind; its list
kind beside it; the paths and operations as for any kind (`openapi_paths.PathBuilder`),
without strategic merge patch. The documents of one kinds registry are cached until a
definition changes what is served (the registry's generation), so `kubectl explain`
sees a change at once.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from pinnace.api.kinds import Registry, ResourceType
from pinnace.apiserver.openapi_paths import (
    META,
    META_TYPES,
    PathBuilder,
    collect_refs,
    discovery_path,
    document,
    gv_names,
    ref,
)

# per kinds registry: (its generation, path -> document bytes); rebuilt when a
# definition changes what is served, so `kubectl explain` sees it at once
_CUSTOM: weakref.WeakKeyDictionary[Registry, tuple[int, dict[str, bytes]]] = \
    weakref.WeakKeyDictionary()


def custom_kinds(kinds: Registry, path: str) -> list[ResourceType] | None:
    """The custom resource types of `apis/<g>/<v>` or `apis/<g>` (None: not custom)."""
    parts = path.split("/")
    if len(parts) not in (2, 3) or parts[0] != "apis":
        return None
    served = [rt for rt in kinds if rt.group == parts[1] and
              (len(parts) == 2 or rt.version == parts[2])]
    if not served or any(rt.custom is None for rt in served):
        return None
    return served


def custom_schema(rt: ResourceType, *, v2: bool = False) -> dict[str, Any]:
    """A custom version's schema as Kubernetes publishes it: the definition's
    openAPIV3Schema with metadata as ObjectMeta and the group-version-kind. For the
    Swagger 2.0 document (`v2`), cut down as apiextensions-apiserver does so that
    kubectl's client-side validation accepts what the server accepts."""
    node = json.loads(json.dumps(rt.custom.schema))
    gvk = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    if v2 and node.get("x-kubernetes-preserve-unknown-fields"):
        # any property would make kubectl refuse every other field
        return {"type": "object", "x-kubernetes-group-version-kind": gvk}
    if v2:
        _for_v2(node)
    props = node.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string", "description": (
        "APIVersion defines the versioned schema of this representation of an object.")})
    props.setdefault("kind", {"type": "string", "description": (
        "Kind is a string value representing the REST resource this object represents.")})
    props["metadata"] = {"allOf": [ref(META + "ObjectMeta")], "description": (
        "Standard object's metadata.")}
    node["x-kubernetes-group-version-kind"] = gvk
    return node


def _for_v2(node: dict[str, Any]) -> None:
    """Swagger 2.0 and kubectl's validator know no junctors and no nullable; untyped,
    schemaless and free-form nodes must not carry properties or items, or kubectl would
    refuse what the server keeps (ToStructuralOpenAPIV2 in apiextensions-apiserver)."""
    for key in ("allOf", "oneOf", "anyOf", "not"):
        node.pop(key, None)
    if node.pop("nullable", False):
        node.pop("type", None)
        node.pop("items", None)
        node.pop("properties", None)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("items", None)
        node.pop("properties", None)
        if node.get("type") == "object":
            del node["type"]
    if node.get("type") == "array" and "items" not in node:
        del node["type"]
    props = node.get("properties")
    if isinstance(props, dict):
        nullable = {name for name, prop in props.items()
                    if isinstance(prop, dict) and prop.get("nullable")}
        if nullable and isinstance(node.get("required"), list):
            node["required"] = [r for r in node["required"] if r not in nullable]
            if not node["required"]:
                del node["required"]
        for prop in props.values():
            if isinstance(prop, dict):
                _for_v2(prop)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        if extra.get("nullable"):
            node.pop("required", None)
        _for_v2(extra)
    if isinstance(node.get("items"), dict):
        _for_v2(node["items"])


def custom_list_schema(rt: ResourceType) -> dict[str, Any]:
    return {
        "description": f"{rt.list_kind} is a list of {rt.kind}",
        "type": "object", "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {"type": "array", "items": ref(rt.schema_ref)},
            "kind": {"type": "string"},
            "metadata": {"allOf": [ref(META + "ListMeta")]},
        },
        "x-kubernetes-group-version-kind": [
            {"group": rt.group, "kind": rt.list_kind, "version": rt.version}],
    }


def _custom_document(path: str, served: list[ResourceType]) -> bytes:
    group = served[0].group
    if path.count("/") == 1:
        camel = gv_names(group, "")[0]
        doc = document({f"/apis/{group}/": discovery_path(
            f"get{camel}APIGroup", camel[:1].lower() + camel[1:], "APIGroup")},
            list(META_TYPES))
    else:
        version = served[0].version
        camel, tag = gv_names(group, version)
        paths = {f"/apis/{group}/{version}/": discovery_path(
            f"get{camel}APIResources", tag, "APIResourceList")}
        roots = [*META_TYPES, META + "ObjectMeta", META + "ListMeta"]
        for rt in served:
            paths.update(PathBuilder(rt).paths())
        collect_refs(paths, roots)
        doc = document(paths, roots)
        for rt in served:
            doc["components"]["schemas"][rt.schema_ref] = custom_schema(rt)
            doc["components"]["schemas"][rt.schema_ref + "List"] = custom_list_schema(rt)
    return json.dumps(doc, separators=(",", ":")).encode()


def document_bytes(path: str, served: list[ResourceType], kinds: Registry) -> bytes:
    """The document of `path` (whose custom kinds are `served`), cached per kinds
    registry until its generation changes."""
    generation, docs = _CUSTOM.get(kinds, (-1, {}))
    if generation != kinds.generation:
        docs = {}
        _CUSTOM[kinds] = (kinds.generation, docs)
    data = docs.get(path)
    if data is None:
        data = docs[path] = _custom_document(path, served)
    return data
