"""Kubernetes 1.32 OpenAPI definitions, as shipped by the `kubernetes-validate` package.

Loaded once, lazily. Definitions are JSON Schema (draft 2020) objects keyed by
their Kubernetes name (`io.k8s.api.core.v1.Pod`); references look like
`{"$ref": "#/$defs/<name>"}` and types are often `["string", "null"]`.
Validation, strategic merge patch, server-side apply and /openapi/v3 read them
through `definition()` and `resolve()`.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

KUBERNETES_VERSION = "1.32"
_SCHEMA_DIR = "kubernetes-json-schema/v1.32.0-local"
_REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """Every definition by name (read-only: callers must not mutate)."""
    path = resources.files("kubernetes_validate").joinpath(f"{_SCHEMA_DIR}/_definitions.json")
    with path.open("rb") as f:
        return json.load(f)["$defs"]


def definition(name: str) -> dict[str, Any] | None:
    return definitions().get(name)


def ref_name(node: dict[str, Any]) -> str | None:
    """The definition name a `$ref` node points at, or None."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return ref[len(_REF_PREFIX):]
    return None


@functools.cache
def _memo() -> tuple[dict[int, Any], dict[int, frozenset[str]]]:
    """resolve() and types_of() of every node inside the definitions, keyed by id: they
    sit on the hot path of every write. The definitions live for the whole process, so
    their ids are stable; nodes built elsewhere are computed each time."""
    resolved: dict[int, Any] = {}
    types: dict[int, frozenset[str]] = {}
    stack: list[Any] = list(definitions().values())
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            resolved[id(node)] = _resolve(node)
            types[id(node)] = _types_of(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return resolved, types


def is_definition_node(node: Any) -> bool:
    """True for a node inside the loaded definitions (safe to memoise by id)."""
    return id(node) in _memo()[0]


def resolve(node: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow `$ref` (also one wrapped in `allOf`) to the definition it names."""
    if node is None:
        return None
    hit = _memo()[0].get(id(node), _MISS)
    return _resolve(node) if hit is _MISS else hit


_MISS = object()


def _resolve(node: dict[str, Any] | None) -> dict[str, Any] | None:
    while node is not None:
        name = ref_name(node)
        if name is None:
            all_of = node.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1:
                node = all_of[0]
                continue
            return node
        node = definition(name)
    return None


def types_of(node: dict[str, Any]) -> frozenset[str]:
    """The JSON types a schema node allows, without "null" (read-only set)."""
    hit = _memo()[1].get(id(node))
    return _types_of(node) if hit is None else hit


def _types_of(node: dict[str, Any]) -> frozenset[str]:
    t = node.get("type")
    if isinstance(t, str):
        return frozenset((t,))
    if isinstance(t, list):
        return frozenset(x for x in t if x != "null")
    return frozenset()
