"""Typed decoding: the first check of every create and update body, before validation.

Kubernetes decodes the JSON body into Go structs. Wrong JSON types fail there (400
BadRequest, "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal
..."), and unknown fields are dropped, rejected or reported as warnings depending on the
request's `fieldValidation`. pinnace walks the object along the OpenAPI schema
(`schema.py`) instead of Go types and returns the pruned copy, so what is stored is
exactly what Kubernetes would store: unknown fields gone, nulls for fields unset, nulls in
lists and maps turned into Go's zero values, quantities in canonical form ("1000m" -> "1").

`check_structure` raises only `ApiError` (400); the first wrong type ends the walk, as
Go's decoder reports one. `quantity_value` is the exact value of a quantity, shared with
validation and defaulting.
"""

from __future__ import annotations

import base64
import binascii
import re
from fractions import Fraction
from typing import Any

from pinnace.api import quantity, schema
from pinnace.api.errors import TYPE_INVALID, Cause, bad_request

__all__ = ["check_structure", "quantity_value"]

_DEFS = "io.k8s.apimachinery.pkg."
_INT_OR_STRING = _DEFS + "util.intstr.IntOrString"
_QUANTITY = _DEFS + "api.resource.Quantity"
_TIMES = {_DEFS + "apis.meta.v1.Time", _DEFS + "apis.meta.v1.MicroTime"}
# Go types that take any JSON (runtime.RawExtension, FieldsV1, apiextensions JSON).
_OPAQUE = {_DEFS + "runtime.RawExtension", _DEFS + "apis.meta.v1.FieldsV1",
           "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class _TypeError(Exception):
    """First wrong JSON type met; Go's decoder reports one."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(ref: str) -> str:
    """'io.k8s.api.core.v1.Container' -> 'v1.Container' (Go's package.Type)."""
    parts = ref.split(".")
    return ".".join(parts[-2:])


def _go_type(node: dict[str, Any] | None) -> str:
    if node is None:
        return "interface {}"
    name = schema.ref_name(node)
    if name is None and isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
        name = schema.ref_name(node["allOf"][0])
    if name is not None:
        return _short(name)
    types = schema.types_of(node)
    if "array" in types:
        return "[]" + _go_type(node.get("items"))
    if "object" in types:
        extra = node.get("additionalProperties")
        return "map[string]" + _go_type(extra) if isinstance(extra, dict) else "struct"
    if "integer" in types:
        return node.get("format") or "int"
    if "number" in types:
        return "float64"
    if "boolean" in types:
        return "bool"
    return "string"


class _Decoder:
    """Walks a value along a schema node, returning the decoded (pruned) value."""

    def __init__(self) -> None:
        self.unknown: list[str] = []

    def decode(self, value: Any, node: dict[str, Any] | None, path: str, owner: str,
               go_path: str) -> Any:
        name = schema.ref_name(node) if node else None
        if node and name is None and isinstance(node.get("allOf"), list):
            name = schema.ref_name(node["allOf"][0]) if len(node["allOf"]) == 1 else None
        if name in _OPAQUE or node is None:
            return value
        if name == _INT_OR_STRING:
            if isinstance(value, str):
                return value
            return self._integer(value, {"format": "int32"}, path, owner, go_path,
                                 go_type="intstr.IntOrString")
        if name == _QUANTITY:
            return self._quantity(value, path)
        if name in _TIMES:
            if not isinstance(value, str):
                self._fail(value, "v1.Time", path, owner, go_path)
            if value and not _RFC3339.match(value):
                raise _TypeError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": '
                                 f"cannot parse {value!r} as RFC 3339", path)
            return value
        if name is not None:
            owner = name.rsplit(".", 1)[-1]
        resolved = schema.resolve(node)
        if resolved is None:
            return value
        types = schema.types_of(resolved)
        if "object" in types:
            return self._object(value, resolved, node, path, owner, go_path)
        if "array" in types:
            if not isinstance(value, list):
                self._fail(value, _go_type(node), path, owner, go_path)
            items = resolved.get("items")
            return [self._item(v, items, f"{path}[{i}]", owner, go_path)
                    for i, v in enumerate(value)]
        if "string" in types:
            if not isinstance(value, str):
                self._fail(value, _go_type(node), path, owner, go_path)
            if resolved.get("format") == "byte":
                _check_base64(value, path)
            return value
        if "integer" in types:
            return self._integer(value, resolved, path, owner, go_path)
        if "number" in types:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self._fail(value, "float64", path, owner, go_path)
            return value
        if "boolean" in types:
            if not isinstance(value, bool):
                self._fail(value, "bool", path, owner, go_path)
            return value
        return value  # no type in the schema: any JSON

    def _item(self, value: Any, node: dict[str, Any] | None, path: str, owner: str,
              go_path: str) -> Any:
        # Go decodes null into a list element or map value as the zero value.
        if value is None:
            return _zero(node)
        return self.decode(value, node, path, owner, go_path)

    def _object(self, value: Any, resolved: dict[str, Any], node: dict[str, Any], path: str,
                owner: str, go_path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self._fail(value, _go_type(node), path, owner, go_path)
        props = resolved.get("properties")
        extra = resolved.get("additionalProperties")
        out: dict[str, Any] = {}
        if not isinstance(props, dict) and not isinstance(extra, dict):
            return value  # free-form object
        for key, sub in value.items():
            if not isinstance(key, str):
                raise _TypeError("json: object keys must be strings", path)
            if isinstance(props, dict):
                child = f"{path}.{key}" if path else key
                child_go = f"{go_path}.{key}" if go_path else key
                if key not in props:
                    if isinstance(extra, dict):
                        out[key] = self._item(sub, extra, f"{path}[{key}]", owner, go_path)
                    elif extra is not True:
                        self.unknown.append(child)
                    continue
                if sub is None:
                    continue  # null for a field means unset (Go leaves the zero value)
                out[key] = self.decode(sub, props[key], child, owner, child_go)
            else:
                out[key] = self._item(sub, extra, f"{path}[{key}]", owner, go_path)
        return out

    def _integer(self, value: Any, node: dict[str, Any], path: str, owner: str, go_path: str,
                 go_type: str = "") -> int:
        fmt = node.get("format") or "int64"
        go_type = go_type or fmt
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(value, go_type, path, owner, go_path)
        if isinstance(value, float):
            # kubectl sends YAML `2.0` as JSON `2`; a real fraction fails in Go.
            if not value.is_integer():
                self._fail(value, go_type, path, owner, go_path, number=True)
            value = int(value)
        low, high = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
        if not low <= value <= high:
            self._fail(value, go_type, path, owner, go_path, number=True)
        return value

    def _quantity(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _TypeError("quantities must be strings or numbers", path)
        if quantity_value(value) is None:
            raise _TypeError(quantity.FORMAT_ERROR, path)
        # Kubernetes stores a quantity in canonical form: "1000m" reads back as "1".
        return quantity.canonicalize(value)

    @staticmethod
    def _fail(value: Any, go_type: str, path: str, owner: str, go_path: str,
              number: bool = False) -> None:
        kind = f"number {value}" if number else _json_kind(value)
        where = (f"Go struct field {owner}.{go_path}" if go_path else "Go value")
        raise _TypeError(f"json: cannot unmarshal {kind} into {where} of type {go_type}", path)


def _zero(node: dict[str, Any] | None) -> Any:
    resolved = schema.resolve(node) if node else None
    types = schema.types_of(resolved) if resolved else frozenset()
    if "object" in types and isinstance(resolved.get("properties"), dict):
        return {}
    if types == {"string"}:
        return ""
    if types == {"integer"} or types == {"number"}:
        return 0
    if types == {"boolean"}:
        return False
    return None


def _check_base64(value: str, path: str) -> None:
    try:
        base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _TypeError("illegal base64 data at input byte "
                         f"{_bad_base64_offset(value)}", path) from None


def _bad_base64_offset(value: str) -> int:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    for i, ch in enumerate(value):
        if ch not in alphabet:
            return i
    return len(value) - len(value) % 4


def check_structure(obj: Any, schema_ref: str, *,
                    field_validation: str) -> tuple[Any, list[str]]:
    """Decode `obj` as the kind `schema_ref`: wrong types -> 400; unknown fields pruned.

    Returns the pruned copy and the warnings to send (`fieldValidation=Warn`).
    `Strict` turns unknown fields into a 400, `Ignore` drops them silently.
    """
    parts = schema_ref.split(".")
    kind, version = parts[-1], parts[-2] if len(parts) > 1 else ""
    prefix = f'{kind} in version "{version}" cannot be handled as a {kind}: '
    decoder = _Decoder()
    try:
        if not isinstance(obj, dict):
            raise _TypeError(f"json: cannot unmarshal {_json_kind(obj)} into Go value of "
                             f"type {_short(schema_ref)}", "")
        out = decoder.decode(obj, {"$ref": "#/$defs/" + schema_ref}, "", kind, "")
    except _TypeError as e:
        raise bad_request(prefix + e.message, [Cause(e.field, e.message, TYPE_INVALID)]) from None
    except RecursionError:
        raise bad_request(prefix + "json: exceeded max depth") from None
    messages = [f'unknown field "{p}"' for p in decoder.unknown]
    if messages and field_validation == "Strict":
        raise bad_request(prefix + "strict decoding error: " + ", ".join(messages))
    return out, messages if field_validation == "Warn" else []


# --- quantities ----------------------------------------------------------------------------------

# Exponents this large only make huge exact numbers that Kubernetes caps anyway.
_HUGE_EXPONENT = re.compile(r"[eE][-+]?[0-9]{4,}$")


def quantity_value(value: Any) -> Fraction | None:
    """The exact value of a quantity (string or number), or None if malformed."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and (len(value) > 256 or _HUGE_EXPONENT.search(value)):
        return None
    try:
        return quantity.parse_quantity(value)
    except (ValueError, ArithmeticError):
        return None
