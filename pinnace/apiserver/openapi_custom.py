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


def _custom_schema(rt: ResourceType) -> dict[str, Any]:
    """A custom version's schema as Kubernetes publishes it: the definition's
    openAPIV3Schema with metadata as ObjectMeta and the group-version-kind."""
    node = json.loads(json.dumps(rt.custom.schema))
    props = node.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string", "description": (
        "APIVersion defines the versioned schema of this representation of an object.")})
    props.setdefault("kind", {"type": "string", "description": (
        "Kind is a string value representing the REST resource this object represents.")})
    props["metadata"] = {"allOf": [ref(META + "ObjectMeta")], "description": (
        "Standard object's metadata.")}
    node["x-kubernetes-group-version-kind"] = [
        {"group": rt.group, "kind": rt.kind, "version": rt.version}]
    return node


def _custom_list_schema(rt: ResourceType) -> dict[str, Any]:
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
            doc["components"]["schemas"][rt.schema_ref] = _custom_schema(rt)
            doc["components"]["schemas"][rt.schema_ref + "List"] = _custom_list_schema(rt)
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
