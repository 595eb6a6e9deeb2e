"""OpenAPI v3 documents: the `/openapi/v3` index and one document per served path.

The built-in kinds' documents are generated from `pinnace.api.kinds.REGISTRY` with the
parts in `openapi_paths` (converted schemas, paths and operations: collection, item,
all-namespaces list and subresource paths); custom resources' documents come from
`openapi_custom`, built from their definitions.

Each document is built once and cached as bytes (a custom one until a definition
changes); `hash_for` is the uppercase hex SHA-512 of those bytes, which the index puts
in `serverRelativeURL` so clients can cache documents forever.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from pinnace.api.kinds import REGISTRY, Registry
from pinnace.apiserver import openapi_custom
from pinnace.apiserver.openapi_paths import (
    META_TYPES,
    PathBuilder,
    collect_refs,
    discovery_path,
    document,
    gv_names,
)


def _group_version_document(group: str, version: str) -> dict[str, Any] | None:
    kinds = REGISTRY.in_group_version(group, version)
    if not kinds:
        return None
    camel, tag = gv_names(group, version)
    root = f"/apis/{group}/{version}/" if group else f"/api/{version}/"
    paths = {root: discovery_path(f"get{camel}APIResources", tag, "APIResourceList")}
    roots = list(META_TYPES)
    for rt in kinds:
        paths.update(PathBuilder(rt).paths())
        roots += [rt.schema_ref, rt.schema_ref + "List"]
    collect_refs(paths, roots)
    return document(paths, roots)


def _build(path: str) -> dict[str, Any] | None:
    parts = path.strip("/").split("/")
    group_versions = REGISTRY.group_versions()
    if parts == ["api"]:
        return document({"/api/": discovery_path("getCoreAPIVersions", "core",
                                                   "APIVersions")}, list(META_TYPES))
    if parts == ["apis"]:
        return document({"/apis/": discovery_path("getAPIVersions", "apis",
                                                    "APIGroupList")}, list(META_TYPES))
    if len(parts) == 2 and parts[0] == "api":
        return _group_version_document("", parts[1])
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in group_versions:
        camel = gv_names(parts[1], "")[0]
        tag = camel[:1].lower() + camel[1:]
        root = f"/apis/{parts[1]}/"
        return document({root: discovery_path(f"get{camel}APIGroup", tag, "APIGroup")},
                         list(META_TYPES))
    if len(parts) == 3 and parts[0] == "apis" and parts[1]:
        return _group_version_document(parts[1], parts[2])
    return None


def served_paths(kinds: Registry = REGISTRY) -> list[str]:
    """Every path the index lists: `api`, `api/v1`, `apis`, `apis/<g>`, `apis/<g>/<v>`."""
    out = ["api", "apis"]
    for group, versions in kinds.group_versions().items():
        if group:
            out.append(f"apis/{group}")
        out += [f"apis/{group}/{v}" if group else f"api/{v}" for v in versions]
    return sorted(out)


@functools.cache
def _document_bytes(path: str) -> bytes | None:
    if path not in served_paths():
        return None
    doc = _build(path)
    return json.dumps(doc, separators=(",", ":")).encode() if doc is not None else None


def _bytes_for(path: str, kinds: Registry) -> bytes | None:
    served = openapi_custom.custom_kinds(kinds, path)
    if served is None:
        return _document_bytes(path)
    return openapi_custom.document_bytes(path, served, kinds)


def openapi_v3_document(path: str, kinds: Registry = REGISTRY) -> bytes | None:
    """The JSON OpenAPI 3.0 document for `path` (`api/v1`, `apis/apps/v1`, ...), or None.
    Built on first use, then served from the cache."""
    return _bytes_for(path.strip("/"), kinds)


def hash_for(path: str, kinds: Registry = REGISTRY) -> str:
    """The uppercase hex SHA-512 of the document's bytes, as kube-apiserver computes it
    ("" for an unserved path)."""
    path = path.strip("/")
    if openapi_custom.custom_kinds(kinds, path) is None:
        return _hash(path)
    data = _bytes_for(path, kinds)
    return hashlib.sha512(data).hexdigest().upper() if data is not None else ""


@functools.cache
def _hash(path: str) -> str:
    data = _document_bytes(path)
    return hashlib.sha512(data).hexdigest().upper() if data is not None else ""


def openapi_v3_index(kinds: Registry = REGISTRY) -> dict[str, Any]:
    """The `/openapi/v3` body: each served path with a hash-pinned URL."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={hash_for(path, kinds)}"}
            for path in served_paths(kinds)
        }
    }
