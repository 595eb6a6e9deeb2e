"""Decoding checks and semantic validation of objects, as the API server does them.

Two steps, in the order Kubernetes runs them on every create and update:

1. `check_structure` is the typed-decoding step. Kubernetes decodes the JSON body into
   Go structs; wrong JSON types fail there (400 BadRequest, "cannot be handled as a
   Pod: json: cannot unmarshal ...") and unknown fields are dropped, rejected or
   reported as warnings depending on `fieldValidation`. pinnace walks the object
   along the OpenAPI schema (`schema.py`) instead of Go types and returns the
   pruned copy, so what is stored is exactly what Kubernetes would store.
2. `validate` is the registry strategy's `Validate`/`ValidateUpdate`: per-kind rules
   in Kubernetes' field-path wording, collected as `Cause`s and raised together as
   one 422 Invalid. It runs after defaulting (`defaults.py`), like Kubernetes.

Pure functions on JSON-like dicts; no I/O. Never raises anything but `ApiError`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from fractions import Fraction
from typing import Any

from pinnace.api import quantity, schema
from pinnace.api.errors import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TYPE_INVALID,
    ApiError,
    Cause,
    bad_request,
    invalid,
)
from pinnace.api.kinds import ResourceType

__all__ = ["check_structure", "quantity_value", "selector_matches", "validate"]

NOT_FOUND = "FieldValueNotFound"

# ---------------------------------------------------------------------------------------
# 1. typed decoding
# ---------------------------------------------------------------------------------------

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
    types = schema.types_of(resolved) if resolved else set()
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


# ---------------------------------------------------------------------------------------
# quantities
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# 2. semantic validation: field errors in Kubernetes' wording
# ---------------------------------------------------------------------------------------

def _render(value: Any) -> str:
    """A value the way Kubernetes' field errors print it (Go's %q / %d / %#v)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{_render(k)}:{_render(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(_render(v) for v in value) + "}"
    return repr(value)


class _Errors:
    """Collects `Cause`s with the messages of k8s.io/apimachinery/pkg/util/validation/field."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, field: str, message: str, reason: str) -> None:
        cause = Cause(field, message, reason)
        if cause not in self.causes:
            self.causes.append(cause)

    def required(self, field: str, detail: str = "") -> None:
        self.add(field, "Required value" + (f": {detail}" if detail else ""), REQUIRED)

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.add(field, f"Invalid value: {_render(value)}: {detail}", INVALID)

    def not_supported(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        allowed = ", ".join(_render(s) for s in supported)
        self.add(field, f"Unsupported value: {_render(value)}: supported values: {allowed}",
                 NOT_SUPPORTED)

    def duplicate(self, field: str, value: Any) -> None:
        self.add(field, f"Duplicate value: {_render(value)}", DUPLICATE)

    def forbidden(self, field: str, detail: str) -> None:
        self.add(field, f"Forbidden: {detail}", FORBIDDEN)

    def not_found(self, field: str, value: Any) -> None:
        self.add(field, f"Not found: {_render(value)}", NOT_FOUND)

    def too_long(self, field: str, limit: int) -> None:
        self.add(field, f"Too long: must have at most {limit} bytes", TOO_LONG)

    def immutable(self, field: str, value: Any) -> None:
        self.invalid(field, value, "field is immutable")

    def enum(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        if value is not None and value not in supported:
            self.not_supported(field, value, supported)

    def at_least(self, field: str, value: Any, low: int) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            self.invalid(field, value, f"must be greater than or equal to {low}")


# --- names -----------------------------------------------------------------------------

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + r")*"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED + r")?"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"
_IANA_SVC = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric "
                  "character (e.g. 'example.com', regex used for validation is "
                  f"'{_SUBDOMAIN}')")
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
              f"or '123-abc', regex used for validation is '{_LABEL}')")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character "
                f"(e.g. 'my-name',  or 'abc-123', regex used for validation is '{_DNS1035}')")
_QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                  "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                  f"'my.name',  or '123-abc', regex used for validation is '{_QUALIFIED}')")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                    f"validation is '{_LABEL_VALUE}')")
_CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or "
                   f"'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                   f"validation is '{_CONFIG_KEY}')")


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _subdomain_problems(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not _full(_SUBDOMAIN, value):
        out.append(_SUBDOMAIN_MSG)
    return out


def _label_problems(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _full(_LABEL, value):
        out.append(_LABEL_MSG)
    return out


def _dns1035_problems(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _full(_DNS1035, value):
        out.append(_DNS1035_MSG)
    return out


def _path_segment_problems(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def _qualified_name_problems(value: str) -> list[str]:
    """Label and annotation keys: [prefix/]name."""
    prefix, slash, name = value.rpartition("/")
    if slash and not prefix:
        return ["prefix part must be non-empty"]
    out = []
    if not name:
        out.append("name part must be non-empty")
    else:
        if len(name) > 63:
            out.append("name part must be no more than 63 characters")
        if not _full(_QUALIFIED, name):
            out.append(_QUALIFIED_MSG)
    if prefix:
        out.extend("prefix part " + p for p in _subdomain_problems(prefix))
    return out


def _label_value_problems(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _full(_LABEL_VALUE, value):
        out.append(_LABEL_VALUE_MSG)
    return out


def _config_key_problems(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not _full(_CONFIG_KEY, value):
        out.append(_CONFIG_KEY_MSG)
    if value in (".", ".."):
        out.append(f"must not be '{value}'")
    elif value.startswith(".."):
        out.append("must not start with '..'")
    return out


_NAME_RULES = {
    "Namespace": _label_problems,
    "Service": _dns1035_problems,
    "Role": _path_segment_problems, "RoleBinding": _path_segment_problems,
    "ClusterRole": _path_segment_problems, "ClusterRoleBinding": _path_segment_problems,
}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _labels(labels: Any, path: str, errs: _Errors) -> None:
    for key, value in _dict(labels).items():
        for msg in _qualified_name_problems(key):
            errs.invalid(path, key, msg)
        for msg in _label_value_problems(_str(value)):
            errs.invalid(path, value, msg)


def _meta(rt: ResourceType, meta: dict[str, Any], errs: _Errors) -> None:
    name = _str(meta.get("name"))
    if not name:
        errs.required("metadata.name", "name or generateName is required")
    else:
        for msg in _NAME_RULES.get(rt.kind, _subdomain_problems)(name):
            errs.invalid("metadata.name", name, msg)
    namespace = meta.get("namespace")
    if rt.namespaced and namespace:
        for msg in _label_problems(_str(namespace)):
            errs.invalid("metadata.namespace", namespace, msg)
    elif not rt.namespaced and namespace:
        errs.forbidden("metadata.namespace", "not allowed on this type")
    _labels(meta.get("labels"), "metadata.labels", errs)
    _annotations(meta.get("annotations"), "metadata.annotations", errs)


def _annotations(annotations: Any, path: str, errs: _Errors) -> None:
    total = 0
    for key, value in _dict(annotations).items():
        for msg in _qualified_name_problems(key.lower()):
            errs.invalid(path, key, msg)
        total += len(key) + len(_str(value))
    if total > 256 * 1024:
        errs.too_long(path, 256 * 1024)


# --- schema `required` lists ------------------------------------------------------------

_SKIP_REQUIRED = {"status", "managedFields"}


def _required_fields(value: Any, node: dict[str, Any] | None, path: str, errs: _Errors,
                     depth: int = 0) -> None:
    """Every `required` property of the schema along the object must be set."""
    resolved = schema.resolve(node) if node else None
    if resolved is None or depth > 64:
        return
    types = schema.types_of(resolved)
    if "array" in types and isinstance(value, list):
        for i, item in enumerate(value):
            _required_fields(item, resolved.get("items"), f"{path}[{i}]", errs, depth + 1)
        return
    if "object" not in types or not isinstance(value, dict):
        return
    props = resolved.get("properties")
    if not isinstance(props, dict):
        extra = resolved.get("additionalProperties")
        if isinstance(extra, dict):
            for key, sub in value.items():
                _required_fields(sub, extra, f"{path}[{key}]", errs, depth + 1)
        return
    for key in resolved.get("required") or ():
        if value.get(key) is None or value.get(key) == "":
            errs.required(f"{path}.{key}" if path else key)
    for key, sub in value.items():
        if key in props and key not in _SKIP_REQUIRED:
            _required_fields(sub, props[key], f"{path}.{key}" if path else key, errs, depth + 1)


# --- pods and pod templates -------------------------------------------------------------

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_VOLUME_SOURCES = tuple(sorted(
    set(schema.definition("io.k8s.api.core.v1.Volume")["properties"]) - {"name"}))
_PV_SOURCES = tuple(sorted(
    set(schema.definition("io.k8s.api.core.v1.PersistentVolumeSpec")["properties"])
    - {"accessModes", "capacity", "claimRef", "mountOptions", "nodeAffinity",
       "persistentVolumeReclaimPolicy", "storageClassName", "volumeAttributesClassName",
       "volumeMode"}))
_ENV_NAME_MSG = ("a valid environment variable name must consist only of printable ASCII "
                 "characters other than '='")


def _port_number(path: str, value: Any, errs: _Errors, low: int = 1) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= 65535:
        errs.invalid(path, value, f"must be between {low} and 65535, inclusive")


def _resources(res: Any, path: str, errs: _Errors) -> None:
    res = _dict(res)
    parsed: dict[str, dict[str, Fraction]] = {}
    for part in ("limits", "requests"):
        parsed[part] = {}
        for name, value in _dict(res.get(part)).items():
            amount = quantity_value(value)
            field = f"{path}.{part}[{name}]"
            if amount is None:
                errs.invalid(field, value, "must be a valid quantity")
            elif amount < 0:
                errs.invalid(field, value, "must be greater than or equal to 0")
            else:
                parsed[part][name] = amount
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            errs.invalid(f"{path}.requests", res["requests"][name],
                         f"must be less than or equal to {name} limit of "
                         f"{res['limits'][name]}")


def _container(ctr: dict[str, Any], path: str, volumes: set[str], errs: _Errors) -> None:
    name = _str(ctr.get("name"))
    if not name:
        errs.required(f"{path}.name")
    else:
        for msg in _label_problems(name):
            errs.invalid(f"{path}.name", name, msg)
    if not _str(ctr.get("image")).strip():
        errs.required(f"{path}.image")
    errs.enum(f"{path}.imagePullPolicy", ctr.get("imagePullPolicy"), _PULL_POLICIES)
    errs.enum(f"{path}.terminationMessagePolicy", ctr.get("terminationMessagePolicy"),
              ("File", "FallbackToLogsOnError"))
    port_names: set[str] = set()
    for i, port in enumerate(_list(ctr.get("ports"))):
        ppath = f"{path}.ports[{i}]"
        port = _dict(port)
        if port.get("containerPort") is None:
            errs.required(f"{ppath}.containerPort")
        _port_number(f"{ppath}.containerPort", port.get("containerPort"), errs)
        _port_number(f"{ppath}.hostPort", port.get("hostPort"), errs, low=0)
        errs.enum(f"{ppath}.protocol", port.get("protocol"), _PROTOCOLS)
        pname = _str(port.get("name"))
        if pname:
            if len(pname) > 15 or not _IANA_SVC.match(pname) or "--" in pname:
                errs.invalid(f"{ppath}.name", pname,
                             "must be no more than 15 characters and a valid IANA_SVC_NAME")
            elif pname in port_names:
                errs.duplicate(f"{ppath}.name", pname)
            port_names.add(pname)
    env_names: set[str] = set()
    for i, env in enumerate(_list(ctr.get("env"))):
        env_name = _str(_dict(env).get("name"))
        if not env_name:
            errs.required(f"{path}.env[{i}].name")
        elif "=" in env_name or not env_name.isascii() or not env_name.isprintable():
            errs.invalid(f"{path}.env[{i}].name", env_name, _ENV_NAME_MSG)
        env_names.add(env_name)
    mount_paths: set[str] = set()
    for i, mount in enumerate(_list(ctr.get("volumeMounts"))):
        mpath = f"{path}.volumeMounts[{i}]"
        mount = _dict(mount)
        vname = _str(mount.get("name"))
        if not vname:
            errs.required(f"{mpath}.name")
        elif vname not in volumes:
            errs.not_found(f"{mpath}.name", vname)
        target = _str(mount.get("mountPath"))
        if not target:
            errs.required(f"{mpath}.mountPath")
        elif target in mount_paths:
            errs.invalid(f"{mpath}.mountPath", target, "must be unique")
        mount_paths.add(target)
    _resources(ctr.get("resources"), f"{path}.resources", errs)


def _volume(vol: dict[str, Any], path: str, errs: _Errors) -> None:
    sources = [s for s in _VOLUME_SOURCES if vol.get(s) is not None]
    if len(sources) > 1:
        errs.forbidden(f"{path}.{sources[1]}", "may not specify more than 1 volume type")
    for key in ("configMap", "secret"):
        for i, item in enumerate(_list(_dict(vol.get(key)).get("items"))):
            item_path = _str(_dict(item).get("path"))
            if item_path.startswith("/") or ".." in item_path.split("/"):
                errs.invalid(f"{path}.{key}.items[{i}].path", item_path,
                             "must be a relative path without '..'")
    host = vol.get("hostPath")
    if isinstance(host, dict):
        errs.enum(f"{path}.hostPath.type", host.get("type"),
                  ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice"))


def _pod_spec(spec: Any, path: str, errs: _Errors, *,
              restart_policies: tuple[str, ...] = _RESTART_POLICIES) -> None:
    spec = _dict(spec)
    volumes: set[str] = set()
    for i, vol in enumerate(_list(spec.get("volumes"))):
        vol = _dict(vol)
        vname = _str(vol.get("name"))
        vpath = f"{path}.volumes[{i}]"
        if not vname:
            errs.required(f"{vpath}.name")
        else:
            for msg in _label_problems(vname):
                errs.invalid(f"{vpath}.name", vname, msg)
            if vname in volumes:
                errs.duplicate(f"{vpath}.name", vname)
        volumes.add(vname)
        _volume(vol, vpath, errs)
    containers = _list(spec.get("containers"))
    if not containers:
        errs.required(f"{path}.containers")
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, ctr in enumerate(_list(spec.get(field))):
            cpath = f"{path}.{field}[{i}]"
            ctr = _dict(ctr)
            _container(ctr, cpath, volumes, errs)
            cname = _str(ctr.get("name"))
            if cname in names:
                errs.duplicate(f"{cpath}.name", cname)
            names.add(cname)
    policy = spec.get("restartPolicy")
    if policy is None or policy == "":
        errs.required(f"{path}.restartPolicy", "valid values: " + ", ".join(
            _render(p) for p in restart_policies))
    else:
        errs.enum(f"{path}.restartPolicy", policy, restart_policies)
    errs.enum(f"{path}.dnsPolicy", spec.get("dnsPolicy"), _DNS_POLICIES)
    errs.enum(f"{path}.preemptionPolicy", spec.get("preemptionPolicy"),
              ("Never", "PreemptLowerPriority"))
    errs.at_least(f"{path}.terminationGracePeriodSeconds",
                  spec.get("terminationGracePeriodSeconds"), 0)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not isinstance(deadline, bool) and deadline < 1:
        errs.invalid(f"{path}.activeDeadlineSeconds", deadline,
                     "must be between 1 and 2147483647, inclusive")
    for key in ("serviceAccountName", "nodeName", "subdomain", "hostname"):
        value = spec.get(key)
        if value:
            problems = (_label_problems if key in ("subdomain", "hostname")
                        else _subdomain_problems)(_str(value))
            for msg in problems:
                errs.invalid(f"{path}.{key}", value, msg)
    _labels(spec.get("nodeSelector"), f"{path}.nodeSelector", errs)
    for i, tol in enumerate(_list(spec.get("tolerations"))):
        tol = _dict(tol)
        errs.enum(f"{path}.tolerations[{i}].operator", tol.get("operator"), ("Equal", "Exists"))
        errs.enum(f"{path}.tolerations[{i}].effect", tol.get("effect"),
                  ("", "NoExecute", "NoSchedule", "PreferNoSchedule"))
        if tol.get("operator") == "Exists" and tol.get("value"):
            errs.invalid(f"{path}.tolerations[{i}].operator", tol.get("value"),
                         "value must be empty when `operator` is 'Exists'")


def _template(template: Any, path: str, errs: _Errors, *,
              restart_policies: tuple[str, ...] = _RESTART_POLICIES) -> None:
    template = _dict(template)
    meta = _dict(template.get("metadata"))
    _labels(meta.get("labels"), f"{path}.metadata.labels", errs)
    _annotations(meta.get("annotations"), f"{path}.metadata.annotations", errs)
    _pod_spec(template.get("spec"), f"{path}.spec", errs, restart_policies=restart_policies)


# --- label selectors ----------------------------------------------------------------------

def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a metav1.LabelSelector (matchLabels + matchExpressions) select `labels`?"""
    for key, value in _dict(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in _list(selector.get("matchExpressions")):
        expr = _dict(expr)
        key, op, values = expr.get("key"), expr.get("operator"), _list(expr.get("values"))
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _selector(selector: Any, path: str, errs: _Errors) -> None:
    selector = _dict(selector)
    _labels(selector.get("matchLabels"), f"{path}.matchLabels", errs)
    for i, expr in enumerate(_list(selector.get("matchExpressions"))):
        expr = _dict(expr)
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        errs.enum(f"{epath}.operator", op, ("In", "NotIn", "Exists", "DoesNotExist"))
        values = _list(expr.get("values"))
        if op in ("In", "NotIn") and not values:
            errs.required(f"{epath}.values",
                          "must be specified when `operator` is 'In' or 'NotIn'")
        if op in ("Exists", "DoesNotExist") and values:
            errs.forbidden(f"{epath}.values",
                           "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        for msg in _qualified_name_problems(_str(expr.get("key"))):
            errs.invalid(f"{epath}.key", expr.get("key"), msg)


def _selector_and_template(spec: dict[str, Any], kind: str, errs: _Errors, *,
                           required: bool = True) -> None:
    selector = spec.get("selector")
    labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
    if selector is None:
        if required:
            errs.required("spec.selector")
        return
    selector = _dict(selector)
    _selector(selector, "spec.selector", errs)
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid("spec.selector", selector, f"empty selector is invalid for {kind}")
        return
    if not selector_matches(selector, labels):
        errs.invalid("spec.template.metadata.labels", labels,
                     "`selector` does not match template `labels`")


# --- per kind ---------------------------------------------------------------------------

def _v_pod(obj: dict[str, Any], errs: _Errors) -> None:
    _pod_spec(obj.get("spec"), "spec", errs)


def _v_workload(obj: dict[str, Any], errs: _Errors, kind: str) -> None:
    spec = _dict(obj.get("spec"))
    _selector_and_template(spec, kind, errs)
    _template(spec.get("template"), "spec.template", errs, restart_policies=("Always",))
    errs.at_least("spec.replicas", spec.get("replicas"), 0)
    errs.at_least("spec.minReadySeconds", spec.get("minReadySeconds"), 0)
    errs.at_least("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"), 0)


def _v_deployment(obj: dict[str, Any], errs: _Errors) -> None:
    _v_workload(obj, errs, "deployment")
    spec = _dict(obj.get("spec"))
    strategy = _dict(spec.get("strategy"))
    errs.enum("spec.strategy.type", strategy.get("type"), ("Recreate", "RollingUpdate"))
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
        errs.forbidden("spec.strategy.rollingUpdate",
                       "may not be specified when strategy `type` is 'Recreate'")
    rolling = _dict(strategy.get("rollingUpdate"))
    for key in ("maxUnavailable", "maxSurge"):
        _int_or_percent(rolling.get(key), f"spec.strategy.rollingUpdate.{key}", errs)
    if _is_zero(rolling.get("maxUnavailable")) and _is_zero(rolling.get("maxSurge")):
        errs.invalid("spec.strategy.rollingUpdate.maxUnavailable", rolling["maxUnavailable"],
                     "may not be 0 when `maxSurge` is 0")
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= (spec.get("minReadySeconds") or 0):
        errs.invalid("spec.progressDeadlineSeconds", deadline,
                     "must be greater than minReadySeconds")


def _is_zero(value: Any) -> bool:
    return value is not None and str(value).rstrip("%") in ("0",)


def _int_or_percent(value: Any, path: str, errs: _Errors) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            errs.invalid(path, value,
                         "a valid percent string must be a numeric string followed by an ending "
                         "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
        elif int(value[:-1]) > 100:
            errs.invalid(path, value, "must not be greater than 100%")
    else:
        errs.at_least(path, value, 0)


def _v_daemonset(obj: dict[str, Any], errs: _Errors) -> None:
    _v_workload(obj, errs, "daemonset")
    strategy = _dict(_dict(obj.get("spec")).get("updateStrategy"))
    errs.enum("spec.updateStrategy.type", strategy.get("type"), ("OnDelete", "RollingUpdate"))
    rolling = _dict(strategy.get("rollingUpdate"))
    for key in ("maxUnavailable", "maxSurge"):
        _int_or_percent(rolling.get(key), f"spec.updateStrategy.rollingUpdate.{key}", errs)


def _v_statefulset(obj: dict[str, Any], errs: _Errors) -> None:
    _v_workload(obj, errs, "statefulset")
    spec = _dict(obj.get("spec"))
    errs.enum("spec.podManagementPolicy", spec.get("podManagementPolicy"),
              ("OrderedReady", "Parallel"))
    strategy = _dict(spec.get("updateStrategy"))
    errs.enum("spec.updateStrategy.type", strategy.get("type"), ("OnDelete", "RollingUpdate"))
    errs.at_least("spec.updateStrategy.rollingUpdate.partition",
                  _dict(strategy.get("rollingUpdate")).get("partition"), 0)
    for i, claim in enumerate(_list(spec.get("volumeClaimTemplates"))):
        _pvc_spec(_dict(claim).get("spec"), f"spec.volumeClaimTemplates[{i}].spec", errs)


def _job_spec(spec: Any, path: str, errs: _Errors, *, generated_selector: bool) -> None:
    spec = _dict(spec)
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs.at_least(f"{path}.{key}", spec.get(key), 0)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline < 1:
        errs.invalid(f"{path}.activeDeadlineSeconds", deadline,
                     "must be greater than or equal to 1")
    errs.enum(f"{path}.completionMode", spec.get("completionMode"), ("NonIndexed", "Indexed"))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        errs.required(f"{path}.completions",
                      "when completion mode is Indexed")
    errs.enum(f"{path}.podReplacementPolicy", spec.get("podReplacementPolicy"),
              ("TerminatingOrFailed", "Failed"))
    _template(spec.get("template"), f"{path}.template", errs,
              restart_policies=("OnFailure", "Never"))
    if generated_selector and spec.get("selector") is not None:
        _selector(spec.get("selector"), f"{path}.selector", errs)


def _v_job(obj: dict[str, Any], errs: _Errors) -> None:
    spec = _dict(obj.get("spec"))
    _job_spec(spec, "spec", errs, generated_selector=False)
    if spec.get("selector") is not None or spec.get("manualSelector"):
        _selector_and_template(spec, "job", errs)
    name = _str(_dict(obj.get("metadata")).get("name"))
    if len(name) > 63:
        # the job name becomes the value of the `job-name` label of its pods
        errs.invalid("metadata.name", name, "must be no more than 63 characters")


def _v_cronjob(obj: dict[str, Any], errs: _Errors) -> None:
    spec = _dict(obj.get("spec"))
    schedule = _str(spec.get("schedule"))
    if schedule and not _valid_cron(schedule):
        errs.invalid("spec.schedule", schedule, "unparseable cron schedule")
    errs.enum("spec.concurrencyPolicy", spec.get("concurrencyPolicy"),
              ("Allow", "Forbid", "Replace"))
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit",
                "startingDeadlineSeconds"):
        errs.at_least(f"spec.{key}", spec.get(key), 0)
    name = _str(_dict(obj.get("metadata")).get("name"))
    if len(name) > 52:
        errs.invalid("metadata.name", name, "must be no more than 52 characters")
    template = _dict(spec.get("jobTemplate"))
    _labels(_dict(template.get("metadata")).get("labels"), "spec.jobTemplate.metadata.labels",
            errs)
    _job_spec(template.get("spec"), "spec.jobTemplate.spec", errs, generated_selector=True)


_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                "@hourly"}


def _valid_cron(schedule: str) -> bool:
    fields = schedule.split()
    if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
        fields = fields[1:]
    if len(fields) == 1:
        return fields[0] in _CRON_MACROS or fields[0].startswith("@every ")
    atom = r"(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
    return len(fields) == 5 and all(
        re.fullmatch(f"{atom}(,{atom})*", f) is not None for f in fields)


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
NODE_PORT_RANGE = (30000, 32767)


def _v_service(obj: dict[str, Any], errs: _Errors) -> None:
    spec = _dict(obj.get("spec"))
    svc_type = spec.get("type") or "ClusterIP"
    errs.enum("spec.type", svc_type, _SERVICE_TYPES)
    errs.enum("spec.sessionAffinity", spec.get("sessionAffinity"), ("ClientIP", "None"))
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        errs.enum(f"spec.{key}", spec.get(key), ("Cluster", "Local"))
    ports = _list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if svc_type == "ExternalName":
        external = _str(spec.get("externalName"))
        if not external:
            errs.required("spec.externalName")
        else:
            for msg in _subdomain_problems(external.rstrip(".")):
                errs.invalid("spec.externalName", external, msg)
    elif not ports and not headless:
        errs.required("spec.ports")
    names: set[str] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        port = _dict(port)
        path = f"spec.ports[{i}]"
        pname = _str(port.get("name"))
        if len(ports) > 1 and not pname:
            errs.required(f"{path}.name")
        elif pname:
            for msg in _label_problems(pname):
                errs.invalid(f"{path}.name", pname, msg)
            if pname in names:
                errs.duplicate(f"{path}.name", pname)
        names.add(pname)
        _port_number(f"{path}.port", port.get("port"), errs)
        errs.enum(f"{path}.protocol", port.get("protocol"), _PROTOCOLS)
        target = port.get("targetPort")
        if isinstance(target, int):
            _port_number(f"{path}.targetPort", target, errs)
        elif isinstance(target, str) and (len(target) > 15 or not _IANA_SVC.match(target)):
            errs.invalid(f"{path}.targetPort", target,
                         "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
        node_port = port.get("nodePort")
        if node_port:
            if svc_type not in ("NodePort", "LoadBalancer"):
                errs.forbidden(f"{path}.nodePort",
                               f"may not be used when `type` is '{svc_type}'")
            elif not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
                errs.invalid(f"{path}.nodePort", node_port,
                             "provided port is not in the valid range. The range of valid "
                             f"ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}")
            if (node_port, port.get("protocol")) in node_ports:
                errs.duplicate(f"{path}.nodePort", node_port)
            node_ports.add((node_port, port.get("protocol")))
    _labels(spec.get("selector"), "spec.selector", errs)


_ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
_VOLUME_MODES = ("Block", "Filesystem")


def _access_modes(modes: Any, path: str, errs: _Errors) -> None:
    if not _list(modes):
        errs.required(path, "at least 1 access mode is required")
    for mode in _list(modes):
        errs.enum(path, mode, _ACCESS_MODES)


def _v_pv(obj: dict[str, Any], errs: _Errors) -> None:
    spec = _dict(obj.get("spec"))
    capacity = _dict(spec.get("capacity"))
    if not capacity:
        errs.required("spec.capacity")
    elif "storage" not in capacity or len(capacity) > 1:
        errs.not_supported("spec.capacity", sorted(capacity), ("storage",))
    for key, value in capacity.items():
        if quantity_value(value) is None:
            errs.invalid(f"spec.capacity[{key}]", value, "must be a valid quantity")
    _access_modes(spec.get("accessModes"), "spec.accessModes", errs)
    errs.enum("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"),
              ("Delete", "Recycle", "Retain"))
    errs.enum("spec.volumeMode", spec.get("volumeMode"), _VOLUME_MODES)
    sources = [s for s in _PV_SOURCES if spec.get(s) is not None]
    if not sources:
        errs.required("spec", "must specify a volume type")
    elif len(sources) > 1:
        errs.forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type")
    if spec.get("local") is not None and spec.get("nodeAffinity") is None:
        errs.required("spec.nodeAffinity", "Local volume requires node affinity")
    for key in ("nfs", "hostPath", "local"):
        src = _dict(spec.get(key))
        if spec.get(key) is not None and not _str(src.get("path")).startswith("/"):
            errs.invalid(f"spec.{key}.path", src.get("path"), "must be an absolute path")


def _pvc_spec(spec: Any, path: str, errs: _Errors) -> None:
    spec = _dict(spec)
    _access_modes(spec.get("accessModes"), f"{path}.accessModes", errs)
    requests = _dict(_dict(spec.get("resources")).get("requests"))
    storage = requests.get("storage")
    if storage is None:
        errs.required(f"{path}.resources[storage]")
    else:
        amount = quantity_value(storage)
        if amount is None:
            errs.invalid(f"{path}.resources.requests[storage]", storage,
                         "must be a valid quantity")
        elif amount <= 0:
            errs.invalid(f"{path}.resources.requests[storage]", storage,
                         "must be greater than zero")
    errs.enum(f"{path}.volumeMode", spec.get("volumeMode"), _VOLUME_MODES)
    if spec.get("selector") is not None:
        _selector(spec.get("selector"), f"{path}.selector", errs)


def _v_pvc(obj: dict[str, Any], errs: _Errors) -> None:
    _pvc_spec(obj.get("spec"), "spec", errs)


_MAX_DATA = 1024 * 1024


def _data_keys(obj: dict[str, Any], fields: tuple[str, ...], errs: _Errors) -> int:
    seen: set[str] = set()
    total = 0
    for field in fields:
        for key, value in _dict(obj.get(field)).items():
            for msg in _config_key_problems(key):
                errs.invalid(f"{field}[{key}]", key, msg)
            if key in seen:
                errs.invalid(f"{field}[{key}]", key, "duplicate of key present in data")
            seen.add(key)
            total += len(_str(value))
    return total


def _v_configmap(obj: dict[str, Any], errs: _Errors) -> None:
    if _data_keys(obj, ("data", "binaryData"), errs) > _MAX_DATA:
        errs.too_long("", _MAX_DATA)


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _v_secret(obj: dict[str, Any], errs: _Errors) -> None:
    data = _dict(obj.get("data"))
    size = 0
    for key, value in data.items():
        for msg in _config_key_problems(key):
            errs.invalid(f"data[{key}]", key, msg)
        try:
            size += len(base64.b64decode(_str(value).encode("ascii"), validate=True))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            errs.invalid(f"data[{key}]", "<secret contents redacted>",
                         "must be a base64-encoded string")
    if size > _MAX_DATA:
        errs.too_long("data", _MAX_DATA)
    secret_type = obj.get("type") or "Opaque"
    for key in _SECRET_REQUIRED_KEYS.get(secret_type, ()):
        if key not in data:
            errs.required(f"data[{key}]")
    if secret_type == "kubernetes.io/service-account-token":
        annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.required("metadata.annotations[kubernetes.io/service-account.name]")


def _v_namespace(obj: dict[str, Any], errs: _Errors) -> None:
    for i, fin in enumerate(_list(_dict(obj.get("spec")).get("finalizers"))):
        if "/" not in _str(fin) and fin != "kubernetes":
            errs.invalid(f"spec.finalizers[{i}]", fin,
                         "name is neither a standard finalizer name nor is it fully qualified")


def _v_storageclass(obj: dict[str, Any], errs: _Errors) -> None:
    if not _str(obj.get("provisioner")):
        errs.required("provisioner")
    errs.enum("reclaimPolicy", obj.get("reclaimPolicy"), ("Delete", "Retain"))
    errs.enum("volumeBindingMode", obj.get("volumeBindingMode"),
              ("Immediate", "WaitForFirstConsumer"))


def _v_endpointslice(obj: dict[str, Any], errs: _Errors) -> None:
    errs.enum("addressType", obj.get("addressType"), ("IPv4", "IPv6", "FQDN"))
    for i, port in enumerate(_list(obj.get("ports"))):
        port = _dict(port)
        _port_number(f"ports[{i}].port", port.get("port"), errs)
        errs.enum(f"ports[{i}].protocol", port.get("protocol"), _PROTOCOLS)


_VALIDATORS = {
    "Pod": _v_pod,
    "Deployment": _v_deployment,
    "ReplicaSet": lambda o, e: _v_workload(o, e, "replicaset"),
    "DaemonSet": _v_daemonset,
    "StatefulSet": _v_statefulset,
    "Job": _v_job,
    "CronJob": _v_cronjob,
    "Service": _v_service,
    "PersistentVolume": _v_pv,
    "PersistentVolumeClaim": _v_pvc,
    "ConfigMap": _v_configmap,
    "Secret": _v_secret,
    "Namespace": _v_namespace,
    "StorageClass": _v_storageclass,
    "EndpointSlice": _v_endpointslice,
}


# --- updates ----------------------------------------------------------------------------

_POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


def _u_meta(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        before, after = old.get(key), new.get(key)
        if before and after is not None and after != before:
            errs.immutable(f"metadata.{key}", after)


def _u_pod(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    new_spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    # Neutralize what may change, then any remaining difference is forbidden.
    mutated = copy.deepcopy(new_spec)
    for field in ("containers", "initContainers"):
        olds = _list(old_spec.get(field))
        for i, ctr in enumerate(_list(mutated.get(field))):
            if i < len(olds) and isinstance(ctr, dict) and ctr.get("image"):
                ctr["image"] = _dict(olds[i]).get("image")
    before, after = old_spec.get("activeDeadlineSeconds"), new_spec.get("activeDeadlineSeconds")
    if after != before:
        if after is None or (before is not None and after > before):
            errs.invalid("spec.activeDeadlineSeconds", after,
                         "must be less than or equal to previous value")
        _set_or_drop(mutated, "activeDeadlineSeconds", before)
    old_tolerations = _list(old_spec.get("tolerations"))
    if all(t in _list(new_spec.get("tolerations")) for t in old_tolerations):
        _set_or_drop(mutated, "tolerations", old_spec.get("tolerations"))
    grace_before = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(grace_before, int) and grace_before < 0 and \
            new_spec.get("terminationGracePeriodSeconds") == 1:
        mutated["terminationGracePeriodSeconds"] = grace_before
    if mutated != old_spec:
        errs.forbidden("spec", _POD_UPDATE_MSG)


def _set_or_drop(obj: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        obj.pop(key, None)
    else:
        obj[key] = value


def _u_selector(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    before = _dict(old.get("spec")).get("selector")
    after = _dict(new.get("spec")).get("selector")
    if after != before:
        errs.immutable("spec.selector", after)


_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _u_statefulset(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    strip = lambda spec: {k: v for k, v in _dict(spec).items() if k not in _STS_MUTABLE}  # noqa: E731
    if strip(new.get("spec")) != strip(old.get("spec")):
        errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                       "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                       "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                       "forbidden")


def _u_job(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    new_spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    for key in ("selector", "template", "completionMode"):
        if new_spec.get(key) != old_spec.get(key):
            errs.immutable(f"spec.{key}", new_spec.get(key))


def _u_pvc(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    new_spec, old_spec = copy.deepcopy(_dict(new.get("spec"))), _dict(old.get("spec"))
    new_req = _dict(_dict(new_spec.get("resources")).get("requests"))
    old_req = _dict(_dict(old_spec.get("resources")).get("requests"))
    before, after = quantity_value(old_req.get("storage")), quantity_value(
        new_req.get("storage"))
    if before is not None and after is not None and after < before:
        errs.forbidden("spec.resources.requests.storage",
                       "field can not be less than previous value")
    # Expansion, and the binder filling volumeName of an unbound claim, are allowed.
    resources = _dict(new_spec.get("resources"))
    if "requests" in resources or "requests" in _dict(old_spec.get("resources")):
        _set_or_drop(resources, "requests", _dict(old_spec.get("resources")).get("requests"))
    _set_or_drop(new_spec, "volumeAttributesClassName", old_spec.get("volumeAttributesClassName"))
    if not old_spec.get("volumeName"):
        _set_or_drop(new_spec, "volumeName", old_spec.get("volumeName"))
    if new_spec != old_spec:
        errs.forbidden("spec", "spec is immutable after creation except resources.requests and "
                       "volumeAttributesClassName for bound claims")


def _u_pv(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    new_spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    if any(new_spec.get(s) != old_spec.get(s) for s in _PV_SOURCES):
        errs.forbidden("spec.persistentvolumesource",
                       "spec.persistentvolumesource is immutable after creation")
    if old_spec.get("volumeMode") and new_spec.get("volumeMode") != old_spec.get("volumeMode"):
        errs.immutable("spec.volumeMode", new_spec.get("volumeMode"))


def _u_immutable_data(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    if not old.get("immutable"):
        return
    if not new.get("immutable"):
        errs.forbidden("immutable", "field is immutable when `immutable` is set")
    for key in ("data", "binaryData"):
        if new.get(key) != old.get(key):
            errs.forbidden(key, "field is immutable when `immutable` is set")


def _u_secret(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    _u_immutable_data(new, old, errs)
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errs.immutable("type", new.get("type"))


def _u_service(new: dict[str, Any], old: dict[str, Any], errs: _Errors) -> None:
    new_spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    if "ExternalName" in (new_spec.get("type"), old_spec.get("type")):
        return
    before, after = old_spec.get("clusterIP"), new_spec.get("clusterIP")
    if before and after and after != before:
        errs.immutable("spec.clusterIP", after)


_UPDATE_VALIDATORS = {
    "Pod": _u_pod,
    "Deployment": _u_selector,
    "ReplicaSet": _u_selector,
    "DaemonSet": _u_selector,
    "StatefulSet": _u_statefulset,
    "Job": _u_job,
    "PersistentVolumeClaim": _u_pvc,
    "PersistentVolume": _u_pv,
    "ConfigMap": _u_immutable_data,
    "Secret": _u_secret,
    "Service": _u_service,
}


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """Semantic validation of a (defaulted) object; `old` is the stored object on update.

    Raises a 422 Invalid `ApiError` with one `Cause` per problem.
    """
    errs = _Errors()
    try:
        if not isinstance(obj, dict):
            raise bad_request(f"the object provided is not a {rt.kind}")
        meta = _dict(obj.get("metadata"))
        _meta(rt, meta, errs)
        if rt.schema_ref:
            body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            _required_fields(body, {"$ref": "#/$defs/" + rt.schema_ref}, "", errs)
        check = _VALIDATORS.get(rt.kind)
        if check is not None:
            check(obj, errs)
        if isinstance(old, dict):
            _u_meta(meta, _dict(old.get("metadata")), errs)
            check_update = _UPDATE_VALIDATORS.get(rt.kind)
            if check_update is not None:
                check_update(obj, old, errs)
    except ApiError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as e:
        # a shape check_structure would have refused; report rather than crash
        errs.add("", f"Invalid value: {e}", INVALID)
    if errs.causes:
        name = _str(_dict(obj.get("metadata")).get("name")) if isinstance(obj, dict) else ""
        raise invalid(rt.kind, name, errs.causes, group=rt.group)
