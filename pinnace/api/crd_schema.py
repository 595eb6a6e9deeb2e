"""The structural OpenAPI v3 schema of a custom resource: pruning, defaulting, validation.

A CustomResourceDefinition version carries `schema.openAPIV3Schema`, a structural
schema (every node has a type, or is int-or-string / preserve-unknown-fields). The API
server does three things with it to every custom object it writes, in this order, as
kube-apiserver's apiextensions handler does:

    prune      drop fields the schema does not name (unless a node preserves unknown
               fields); `fieldValidation=Strict` refuses them, `Warn` reports them.
               Nulls in non-nullable fields are dropped too, so a default can fill them.
    default    fill `default`s of missing properties, top down (a defaulted object's
               own properties are defaulted in turn).
    validate   types, required, enum, format, pattern, minimum/maximum (exclusive),
               multipleOf, lengths, item and property counts, uniqueItems, nullable,
               allOf/anyOf/oneOf/not; one `Cause` per bad field, with Kubernetes'
               messages, so the caller answers 422 naming every field.
               On an update, values the update leaves unchanged are not judged
               again (validation ratcheting), but for transition rules (oldSelf).

`apiVersion`, `kind` and `metadata` of the root and of `x-kubernetes-embedded-resource`
nodes are always kept; the root's metadata is ObjectMeta, checked by the generic path;
an embedded object must name its apiVersion and kind, and its metadata is checked as
ObjectMeta (name optional).

`x-kubernetes-validations` (CEL rules) are not evaluated here: the walker collects each
node's rules with the value (and the old value on update) and hands them to one
function, `RuleEvaluator`, that the caller provides (the CEL module); without one the
rules are ignored.

Pure functions on JSON-like values; no I/O.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from pinnace.api.errors import Cause
from pinnace.api.field_errors import FieldErrors, render
from pinnace.api.names import (
    check_annotations,
    check_labels,
    dns1035_problems,
    label_problems,
    path_segment_problems,
)
from pinnace.api.patch import json_equal

Schema = dict[str, Any]

_ALWAYS_KEPT = ("apiVersion", "kind", "metadata")
_OLD_SELF = re.compile(r"\boldSelf\b")


@dataclass
class RuleSite:
    """The CEL rules of one schema node, with the value they judge."""

    path: str
    rules: list[dict[str, Any]]
    value: Any
    old: Any = None
    has_old: bool = False
    schema: Schema = field(default_factory=dict)


# given the rule sites of an object, the causes of the rules that fail
RuleEvaluator = Callable[[list[RuleSite]], list[Cause]]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _types(node: Schema) -> str:
    return node.get("type") or ""


# ------------------------------------------------------------------------------ pruning

def prune(obj: Any, schema: Schema) -> tuple[Any, list[str]]:
    """A copy of `obj` without the fields the schema does not name; returns it and the
    paths of the fields dropped (for Strict and Warn field validation)."""
    unknown: list[str] = []
    out = _prune(obj, schema, "", unknown, root=True)
    return out, unknown


def _prune(value: Any, node: Schema, path: str, unknown: list[str], *, root: bool = False
           ) -> Any:
    if isinstance(value, dict):
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        embedded = root or node.get("x-kubernetes-embedded-resource") is True
        out: dict[str, Any] = {}
        for key, sub in value.items():
            sub_path = _join(path, key)
            if embedded and key in _ALWAYS_KEPT:
                out[key] = sub
                continue
            if key in props:
                child = props[key]
            elif isinstance(extra, dict):
                child = extra
            elif extra is True or preserve:
                out[key] = sub
                continue
            else:
                unknown.append(sub_path)
                continue
            if sub is None and not child.get("nullable"):
                continue  # dropped, so that a default can fill it
            out[key] = _prune(sub, child, sub_path, unknown)
        return out
    if isinstance(value, list):
        items = node.get("items")
        if isinstance(items, dict):
            return [_prune(v, items, f"{path}[{i}]", unknown) for i, v in enumerate(value)]
        return list(value)
    return value


# ---------------------------------------------------------------------------- defaulting

def apply_defaults(obj: Any, schema: Schema) -> None:
    """Fill the schema's defaults into `obj` (in place; idempotent)."""
    _default(obj, schema)


def _default(value: Any, node: Schema) -> None:
    if isinstance(value, dict):
        props = node.get("properties") or {}
        for key, child in props.items():
            if key not in value and "default" in child:
                value[key] = _copy(child["default"])
        for key, sub in value.items():
            if key in props:
                _default(sub, props[key])
            elif isinstance(node.get("additionalProperties"), dict):
                _default(sub, node["additionalProperties"])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            _default(item, node["items"])


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# ---------------------------------------------------------------------------- validation

def validate(obj: Any, schema: Schema, old: Any = None, *,
             rules: RuleEvaluator | None = None) -> list[Cause]:
    """Every violation of the schema by `obj`, as field causes (empty: valid). The root's
    apiVersion, kind and metadata are the generic path's to check."""
    errs = FieldErrors()
    sites: list[RuleSite] = []
    if isinstance(obj, dict):
        body = {k: v for k, v in obj.items() if k not in _ALWAYS_KEPT}
        node = dict(schema)
        node["properties"] = {k: v for k, v in (schema.get("properties") or {}).items()
                              if k not in _ALWAYS_KEPT}
        node["required"] = [r for r in schema.get("required") or () if r not in _ALWAYS_KEPT]
        old_body = {k: v for k, v in old.items() if k not in _ALWAYS_KEPT} \
            if isinstance(old, dict) else None
        _validate(body, node, "", errs, sites, old_body, old is not None)
    if rules is not None and sites:
        if any(c.reason == "FieldValueTypeInvalid" for c in errs.causes):
            # rules would judge values of the wrong type: Kubernetes skips them and says so
            errs.add("<nil>", 'Invalid value: "object": some validation rules were not '
                     "checked because the object was invalid; correct the existing errors "
                     "to complete validation", "FieldValueInvalid")
        else:
            for cause in rules(sites):
                errs.add(cause.field, cause.message, cause.reason)
    return errs.causes


_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string",
               list: "array", dict: "object"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return _TYPE_NAMES.get(type(value), "object")


def _type_ok(value: Any, node: Schema) -> bool:
    t = _types(node)
    if node.get("x-kubernetes-int-or-string"):
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            isinstance(value, str)
    if not t:
        return True
    actual = _json_type(value)
    if t == "number":
        return actual in ("number", "integer")
    if t == "integer" and isinstance(value, float) and value.is_integer():
        return True
    return actual == t


def _validate(value: Any, node: Schema, path: str, errs: FieldErrors, sites: list[RuleSite],
              old: Any, has_old: bool, *, ratchet: bool = True) -> None:
    if ratchet and has_old and json_equal(value, old):
        # validation ratcheting (Kubernetes 1.30+): a value an update leaves as it was is
        # not judged again, so tightening a schema does not lock existing objects in;
        # transition rules (oldSelf) still run
        kept: list[RuleSite] = []
        _validate(value, node, path, FieldErrors(), kept, old, has_old, ratchet=False)
        for site in kept:
            rules = [r for r in site.rules if _OLD_SELF.search(str(r.get("rule", "")))]
            if rules:
                sites.append(RuleSite(site.path, rules, site.value, site.old, site.has_old,
                                      site.schema))
        return
    where = path or "<root>"
    if value is None:
        if not node.get("nullable") and (_types(node) or node.get("x-kubernetes-int-or-string")):
            errs.add(where, f'Invalid value: "null": {where} in body must be of type '
                     f'{_types(node) or "integer,string"}: "null"', "FieldValueTypeInvalid")
        return
    if not _type_ok(value, node):
        expected = "integer,string" if node.get("x-kubernetes-int-or-string") else _types(node)
        actual = _json_type(value)
        errs.add(where, f'Invalid value: "{actual}": {where} in body must be of type '
                 f'{expected}: "{actual}"', "FieldValueTypeInvalid")
        return
    _value_checks(value, node, where, errs)
    for combinator in ("allOf", "anyOf", "oneOf"):
        _combinator(combinator, value, node.get(combinator), where, errs)
    if isinstance(node.get("not"), dict) and not _quiet(value, node["not"]):
        errs.invalid(where, value, f"{where} in body must not be valid against the schema")
    if node.get("x-kubernetes-embedded-resource") is True and isinstance(value, dict):
        _embedded(value, path, errs)
    if node.get("x-kubernetes-validations"):
        sites.append(RuleSite(path, list(node["x-kubernetes-validations"]), value, old,
                              has_old, node))
    if isinstance(value, dict):
        props = node.get("properties") or {}
        for key in node.get("required") or ():
            if key not in value:
                errs.required(_join(path, key))
        extra = node.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, sub in value.items():
            child = props.get(key) or (extra if isinstance(extra, dict) else None)
            if child is not None:
                _validate(sub, child, _join(path, key), errs, sites, old_map.get(key),
                          key in old_map)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        old_list = old if isinstance(old, list) else []
        for i, item in enumerate(value):
            # transition rules on list items compare like for like only for maps keyed
            # by list-map-keys; by position is the fallback kept simple here
            _validate(item, node["items"], f"{path}[{i}]", errs, sites,
                      old_list[i] if i < len(old_list) else None, i < len(old_list))


def _embedded(value: dict[str, Any], path: str, errs: FieldErrors) -> None:
    """An embedded object (`x-kubernetes-embedded-resource`) names its apiVersion and
    kind, and its metadata is ObjectMeta (a name is optional), as Kubernetes checks."""
    for key in ("apiVersion", "kind"):
        where = _join(path, key)
        text = value.get(key)
        if key not in value:
            errs.required(where)
        elif not isinstance(text, str):
            errs.invalid(where, text, "must be a string")
        elif not text:
            errs.invalid(where, text, "must not be empty")
        elif key == "apiVersion" and (text.count("/") > 1 or text.startswith("/")):
            errs.invalid(where, text, f"unexpected GroupVersion string: {text}")
        elif key == "kind" and dns1035_problems(text.lower()):
            errs.invalid(where, text, "may have mixed case, but should otherwise match: " +
                         ",".join(dns1035_problems(text.lower())))
    meta = value.get("metadata")
    if meta is None:
        return
    where = _join(path, "metadata")
    if not isinstance(meta, dict):
        errs.invalid(where, meta, "must be an object")
        return
    name, namespace = meta.get("name"), meta.get("namespace")
    if isinstance(name, str) and name:
        for problem in path_segment_problems(name):
            errs.invalid(f"{where}.name", name, problem)
    if isinstance(namespace, str) and namespace:
        for problem in label_problems(namespace):
            errs.invalid(f"{where}.namespace", namespace, problem)
    check_labels(meta.get("labels"), f"{where}.labels", errs)
    check_annotations(meta.get("annotations"), f"{where}.annotations", errs)


def _quiet(value: Any, node: Schema) -> bool:
    """Whether value satisfies node (for combinators), without reporting."""
    errs = FieldErrors()
    _validate(value, node, "x", errs, [], None, False)
    return not errs.causes


def _combinator(name: str, value: Any, options: Any, where: str, errs: FieldErrors) -> None:
    if not isinstance(options, list) or not options:
        return
    passing = sum(1 for option in options if isinstance(option, dict) and _quiet(value, option))
    if name == "allOf" and passing < len(options):
        for option in options:
            if isinstance(option, dict):
                sub = FieldErrors()
                _validate(value, option, where, sub, [], None, False)
                for c in sub.causes:
                    errs.add(c.field, c.message, c.reason)
    elif name == "anyOf" and passing == 0:
        errs.invalid(where, value, f"{where} in body must validate at least one schema (anyOf)")
    elif name == "oneOf" and passing != 1:
        errs.invalid(where, value, f"{where} in body must validate one and only one schema "
                     "(oneOf)")


def _value_checks(value: Any, node: Schema, where: str, errs: FieldErrors) -> None:
    enum = node.get("enum")
    if isinstance(enum, list) and value not in enum:
        errs.add(where, f"Unsupported value: {render(value)}: supported values: "
                 + ", ".join(render(e) for e in enum), "FieldValueNotSupported")
    if isinstance(value, int | float) and not isinstance(value, bool):
        _number_checks(value, node, where, errs)
    elif isinstance(value, str):
        _string_checks(value, node, where, errs)
    elif isinstance(value, list):
        if "maxItems" in node and len(value) > node["maxItems"]:
            errs.add(where, f"Too many: {len(value)}: must have at most {node['maxItems']} "
                     "items", "FieldValueTooMany")
        if "minItems" in node and len(value) < node["minItems"]:
            errs.invalid(where, len(value), f"{where} in body should have at least "
                         f"{node['minItems']} items")
        if node.get("uniqueItems"):
            seen: list[Any] = []
            for item in value:
                if item in seen:
                    errs.duplicate(where, item)
                seen.append(item)
    elif isinstance(value, dict):
        if "maxProperties" in node and len(value) > node["maxProperties"]:
            errs.add(where, f"Too many: {len(value)}: must have at most "
                     f"{node['maxProperties']} items", "FieldValueTooMany")
        if "minProperties" in node and len(value) < node["minProperties"]:
            errs.invalid(where, len(value), f"{where} in body should have at least "
                         f"{node['minProperties']} properties")


def _number_checks(value: float, node: Schema, where: str, errs: FieldErrors) -> None:
    if "minimum" in node:
        low = node["minimum"]
        if node.get("exclusiveMinimum") and value <= low:
            errs.invalid(where, value, f"{where} in body should be greater than {low}")
        elif value < low:
            errs.invalid(where, value, f"{where} in body should be greater than or equal "
                         f"to {low}")
    if "maximum" in node:
        high = node["maximum"]
        if node.get("exclusiveMaximum") and value >= high:
            errs.invalid(where, value, f"{where} in body should be less than {high}")
        elif value > high:
            errs.invalid(where, value, f"{where} in body should be less than or equal to "
                         f"{high}")
    step = node.get("multipleOf")
    if isinstance(step, int | float) and step > 0 and \
            not math.isclose(value / step, round(value / step)):
        errs.invalid(where, value, f"{where} in body should be a multiple of {step}")


def _string_checks(value: str, node: Schema, where: str, errs: FieldErrors) -> None:
    if "maxLength" in node and len(value) > node["maxLength"]:
        errs.add(where, f"Too long: may not be more than {node['maxLength']} bytes",
                 "FieldValueTooLong")
    if "minLength" in node and len(value) < node["minLength"]:
        errs.invalid(where, value, f"{where} in body should be at least {node['minLength']} "
                     "chars long")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        compiled = _regex(pattern)
        if compiled is not None and compiled.search(value) is None:
            errs.invalid(where, value, f"{where} in body should match '{pattern}'")
    fmt = node.get("format")
    check = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if check is not None and not check(value):
        errs.invalid(where, value, f"{where} in body must be of type {fmt}: {render(value)}")


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None  # the CRD's validation refuses such patterns; never crash a write


# -- formats (the ones kube-openapi's strfmt registry knows, where cheap to check) --------

def _parses(parse: Callable[[str], Any]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            parse(value)
        except (ValueError, TypeError):
            return False
        return True
    return check


def _date_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$")

_FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _parses(_date_time),
    "datetime": _parses(_date_time),
    "date": _parses(lambda v: datetime.strptime(v, "%Y-%m-%d")),
    "byte": _parses(_b64),
    "uuid": _parses(uuid.UUID),
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
    "cidr": _parses(lambda v: ipaddress.ip_network(v, strict=False)),
    "hostname": lambda v: bool(_HOSTNAME.match(v)),
    "email": lambda v: bool(_EMAIL.match(v)),
    "mac": lambda v: bool(_MAC.match(v)),
    "duration": lambda v: bool(_DURATION.match(v)),
    "uri": lambda v: bool(_URI.match(v)),
}


# ------------------------------------------------------------------- the schema itself

_KNOWN_TYPES = ("object", "array", "string", "integer", "number", "boolean")


def structural_errors(schema: Any, path: str) -> list[Cause]:
    """What makes a CRD's schema unusable (non-structural), as causes at `path`."""
    errs = FieldErrors()
    _check_node(schema, path, errs, root=True)
    return errs.causes


def _check_node(node: Any, path: str, errs: FieldErrors, *, root: bool = False) -> None:
    if not isinstance(node, dict):
        errs.invalid(path, node, "must be an object")
        return
    t = node.get("type")
    special = node.get("x-kubernetes-int-or-string") or \
        node.get("x-kubernetes-preserve-unknown-fields")
    if t is None and not special:
        errs.required(_join(path, "type"), "must not be empty for specified object fields")
    elif t is not None and t not in _KNOWN_TYPES:
        errs.add(_join(path, "type"), f"Unsupported value: {render(t)}: supported values: "
                 + ", ".join(render(k) for k in _KNOWN_TYPES), "FieldValueNotSupported")
    if root and t not in (None, "object"):
        errs.invalid(_join(path, "type"), t, "must be object at the root")
    if isinstance(node.get("pattern"), str) and _regex(node["pattern"]) is None:
        errs.invalid(_join(path, "pattern"), node["pattern"], "must be a valid regular "
                     "expression")
    for key, sub in (node.get("properties") or {}).items():
        _check_node(sub, f"{path}.properties[{key}]", errs)
    if isinstance(node.get("items"), dict):
        _check_node(node["items"], _join(path, "items"), errs)
    elif t == "array" and not node.get("x-kubernetes-preserve-unknown-fields"):
        errs.required(_join(path, "items"), "must be specified")
    if isinstance(node.get("additionalProperties"), dict):
        _check_node(node["additionalProperties"], _join(path, "additionalProperties"), errs)
    if "default" in node and node["default"] is not None:
        bad = FieldErrors()
        _validate(node["default"], node, "", bad, [], None, False)
        for c in bad.causes:
            errs.invalid(_join(path, "default"), node["default"], c.message)
