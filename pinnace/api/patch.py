"""Patches: JSON patch (RFC 6902), merge patch (RFC 7386), strategic merge patch.

Pure functions on JSON-like values; inputs are never mutated (results are built
from deep copies). Every failure is an `ApiError`:

- JSON patch: a malformed patch is 400 BadRequest; an operation that cannot apply
  (missing path, failed test) is 422 Invalid with the reason in a cause, as the
  Kubernetes API server answers (`the server rejected our request ...`).
- Strategic merge patch follows Kubernetes' `strategicpatch` package, driven by the
  OpenAPI definitions of `schema.py`: a list whose `x-kubernetes-patch-strategy`
  contains `merge` is merged by its `x-kubernetes-patch-merge-key` (lists of
  primitives as ordered sets); every other list is replaced. Directives:
  `$patch` (replace/delete on maps, replace/delete as list elements), `$retainKeys`,
  `$deleteFromPrimitiveList/<f>` and `$setElementOrder/<f>`. Where the schema is
  unknown the patch behaves as a merge patch.

`Shape` (the schema facts one node carries) is shared with `apply.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import marshal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pinnace.api import schema
from pinnace.api.errors import ApiError, Cause, bad_request

__all__ = ["Shape", "api_errors_only", "copy_json", "json_equal", "json_patch", "merge_patch",
           "root_shape", "shape_of", "strategic_merge_patch"]

_MISSING = object()
_F = TypeVar("_F", bound=Callable[..., Any])


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data; the C JSON codec is several times faster than
    copy.deepcopy, which dominated every write."""
    if isinstance(value, dict | list):
        return json.loads(json.dumps(value))
    return value


def api_errors_only(fn: _F) -> _F:
    """Turn Python's recursion limit (absurdly deep documents) into a 400."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RecursionError:
            raise bad_request("the document is nested too deeply") from None
    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------------- schema shapes


@dataclass(frozen=True)
class Shape:
    """What a schema node says about the value at one place of an object.

    kind: "struct" (known properties), "map" (additionalProperties), "list", "scalar"
    or "unknown" (no schema: maps are granular, lists atomic).
    """

    kind: str
    node: dict[str, Any] | None = None
    items: dict[str, Any] | None = None
    strategies: frozenset[str] = frozenset()
    merge_key: str = ""
    list_type: str = ""  # "atomic" | "set" | "map" as server-side apply sees the list
    map_keys: tuple[str, ...] = ()
    atomic_map: bool = False

    # the shapes below this one, made once: a custom resource's schema is not among the
    # definitions shape_of memoises, but its root shape lives as long as its strategy
    # (keys: property names, _EXTRA for any other key, _ITEM for list items)
    below: dict[str, Shape] = dataclasses.field(default_factory=dict, compare=False,
                                                repr=False)

    def child(self, key: str) -> Shape:
        """The shape of a property / map value; unknown when the schema does not say."""
        if self.kind not in ("struct", "map") or self.node is None:
            return UNKNOWN
        props = self.node.get("properties")
        slot = key if isinstance(props, dict) and key in props else _EXTRA
        hit = self.below.get(slot)
        if hit is None:
            extra = self.node.get("additionalProperties")
            hit = shape_of(props[key]) if slot == key else \
                shape_of(extra) if isinstance(extra, dict) else UNKNOWN
            self.below[slot] = hit
        return hit

    def item(self) -> Shape:
        hit = self.below.get(_ITEM)
        if hit is None:
            hit = self.below[_ITEM] = shape_of(self.items) if self.items is not None \
                else UNKNOWN
        return hit


UNKNOWN = Shape("unknown")
_EXTRA, _ITEM = "\0additionalProperties", "\0items"


_SHAPES: dict[int, Shape] = {}


def shape_of(prop: dict[str, Any] | None) -> Shape:
    """The shape of a property node; extensions may sit on the node or its definition.
    Memoised for the schema's own nodes, which every patch and apply walks again."""
    if not isinstance(prop, dict):
        return UNKNOWN
    shape = _SHAPES.get(id(prop))
    if shape is None:
        shape = _shape_of(prop)
        if schema.is_definition_node(prop):
            _SHAPES[id(prop)] = shape
    return shape


def _shape_of(prop: dict[str, Any]) -> Shape:
    node = schema.resolve(prop)
    if node is None:
        return UNKNOWN

    def ext(name: str) -> Any:
        return prop.get(name, node.get(name))

    strategies = frozenset(s.strip() for s in str(ext("x-kubernetes-patch-strategy") or "")
                           .split(",") if s.strip())
    types = schema.types_of(node)
    if "array" in types:
        items = node.get("items") if isinstance(node.get("items"), dict) else None
        merge_key = str(ext("x-kubernetes-patch-merge-key") or "")
        list_type = str(ext("x-kubernetes-list-type") or "")
        map_keys = tuple(ext("x-kubernetes-list-map-keys") or ())
        if not list_type:
            # server-side apply's reading of legacy patch metadata
            if "merge" in strategies and merge_key:
                list_type, map_keys = "map", (merge_key,)
            elif "merge" in strategies:
                list_type = "set"
            else:
                list_type = "atomic"
        return Shape("list", node, items, strategies, merge_key, list_type, map_keys)
    if "object" in types or "properties" in node or "additionalProperties" in node:
        atomic = ext("x-kubernetes-map-type") == "atomic"
        if isinstance(node.get("properties"), dict):
            return Shape("struct", node, strategies=strategies, atomic_map=atomic)
        if isinstance(node.get("additionalProperties"), dict):
            return Shape("map", node, strategies=strategies, atomic_map=atomic)
        return Shape("unknown", strategies=strategies, atomic_map=atomic)
    if types:
        return Shape("scalar", node)
    return UNKNOWN


def root_shape(schema_ref: str) -> Shape:
    if not isinstance(schema_ref, str) or schema.definition(schema_ref) is None:
        return UNKNOWN
    return shape_of({"$ref": f"#/$defs/{schema_ref}"})


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: True is not 1, 1 equals 1.0, dicts ignore order."""
    # Python's own == (in C) differs from JSON's only where True == 1: unequal there is
    # unequal here; when equal, the same marshal bytes (which tell bool, int and float
    # apart; version 2 has no back-references) prove it. Only the rare rest (1 beside
    # 1.0, keys in another order) takes the walk below, ~100x slower.
    if a != b:
        return False
    try:
        if marshal.dumps(a, 2) == marshal.dumps(b, 2):
            return True
    except ValueError:  # not marshallable: the walk decides
        pass
    return _json_equal_walk(a, b)


def _json_equal_walk(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal_walk(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal_walk(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------- JSON patch


def _rejected(message: str) -> ApiError:
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                    f"request: {message}",
                    causes=[Cause("", message, "UnexpectedServerResponse")])


def _pointer(path: Any, what: str) -> list[str]:
    if not isinstance(path, str):
        raise bad_request(f"json patch: {what} must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch: invalid JSON pointer {path!r}")
    tokens = []
    for raw in path[1:].split("/"):
        rest = raw.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise bad_request(f"json patch: invalid escape in JSON pointer {path!r}")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _index(token: str, size: int, allow_end: bool) -> int | None:
    if allow_end and token == "-":
        return size
    if not token.isdigit() or (len(token) > 1 and token[0] == "0") or not token.isascii():
        return None
    i = int(token)
    limit = size if allow_end else size - 1
    return i if i <= limit else None


def _parent(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and (i := _index(token, len(node), False)) is not None:
            node = node[i]
        else:
            raise _rejected(f"{op} operation does not apply: doc is missing path: {path!r}")
    return node


def _get(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and (i := _index(last, len(parent), False)) is not None:
        return parent[i]
    raise _rejected(f"{op} operation does not apply: doc is missing path: {path!r}")


def _add(doc: Any, tokens: list[str], value: Any, op: str, path: str) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (i := _index(last, len(parent), True)) is not None:
        parent.insert(i, value)
    else:
        raise _rejected(f"{op} operation does not apply: doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    if not tokens:
        raise _rejected(f"{op} operation does not apply: cannot remove the whole document")
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and (i := _index(last, len(parent), False)) is not None:
        del parent[i]
    else:
        raise _rejected(f"{op} operation does not apply: doc is missing path: {path!r}")
    return doc


@api_errors_only
def json_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch to a copy of `doc`."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal into Go value of type jsonpatch.Patch: "
                          "the patch must be a JSON array")
    if len(ops) > 10000:
        raise ApiError(413, "RequestEntityTooLarge",
                       f"The allowed maximum operations in a JSON patch is 10000, got {len(ops)}")
    result = copy_json(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise bad_request("json patch: each operation must be a JSON object")
        kind = op.get("op")
        if kind not in ("add", "remove", "replace", "move", "copy", "test"):
            raise bad_request(f"json patch: unexpected operation {kind!r}")
        if "path" not in op:
            raise bad_request(f"json patch: {kind} operation is missing \"path\"")
        path = op["path"]
        tokens = _pointer(path, "path")
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"json patch: {kind} operation is missing \"value\"")
        if kind in ("move", "copy"):
            if "from" not in op:
                raise bad_request(f"json patch: {kind} operation is missing \"from\"")
            source = _pointer(op["from"], "from")
        if kind == "add":
            result = _add(result, tokens, copy_json(op["value"]), kind, path)
        elif kind == "remove":
            result = _remove(result, tokens, kind, path)
        elif kind == "replace":
            _get(result, tokens, kind, path)  # must exist
            if tokens:
                result = _remove(result, tokens, kind, path)
            result = _add(result, tokens, copy_json(op["value"]), kind, path)
        elif kind == "test":
            if not json_equal(_get(result, tokens, kind, path), op["value"]):
                raise _rejected(f"testing value {path} failed: test failed")
        elif kind == "copy":
            value = copy_json(_get(result, source, kind, op["from"]))
            result = _add(result, tokens, value, kind, path)
        else:  # move
            if tokens[:len(source)] == source and len(tokens) > len(source):
                raise _rejected(f"move operation does not apply: {path!r} is a child of "
                                f"{op['from']!r}")
            value = _get(result, source, kind, op["from"])
            if source == tokens:
                continue
            result = _remove(result, source, kind, op["from"])
            result = _add(result, tokens, value, kind, path)
    return result


# ---------------------------------------------------------------------------- merge patch


@api_errors_only
def merge_patch(doc: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: null deletes, a non-object replaces."""
    return _merge_patch(copy_json(doc), patch)


def _merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy_json(patch)
    result = doc if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------- strategic merge

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


@api_errors_only
def strategic_merge_patch(doc: dict, patch: dict, schema_ref: str) -> dict:
    """Apply a Kubernetes strategic merge patch to a copy of `doc`."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch: the patch must be a JSON object")
    original = copy_json(doc) if isinstance(doc, dict) else {}
    result = _merge_map(original, copy_json(patch), root_shape(schema_ref))
    return result if isinstance(result, dict) else {}


def _bad_directive(value: Any, where: Any) -> ApiError:
    shown = json.dumps(where, default=str)[:200]
    return bad_request(f"unknown patch type: {value!r} in map: {shown}")


def _merge_map(original: Any, patch: dict, shape: Shape) -> Any:
    """Merge `patch` into `original` (both already private copies; `original` is reused)."""
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            del patch[_DIRECTIVE]
            return _merge_map({}, patch, shape)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise _bad_directive(directive, patch)
        del patch[_DIRECTIVE]
    if not isinstance(original, dict):
        original = {}
    if _RETAIN_KEYS in patch:
        retain = patch.pop(_RETAIN_KEYS)
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise bad_request("strategic merge patch: $retainKeys must be a list of strings")
        for key in [k for k in original if k not in retain]:
            del original[key]
    for key in [k for k in patch if isinstance(k, str) and k.startswith(_SET_ORDER)]:
        _apply_set_order(original, patch, key, shape)
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if not isinstance(value, list):
                raise bad_request(f"strategic merge patch: {key} must be a list")
            current = original.get(field)
            if isinstance(current, list):
                original[field] = [x for x in current if not any(json_equal(x, d) for d in value)]
            continue
        if key.startswith("$"):
            if key.startswith(_SET_ORDER):
                continue
            raise bad_request(f"strategic merge patch: unknown directive {key!r}")
        if value is None:
            original.pop(key, None)
            continue
        original[key] = _merge_value(original.get(key, _MISSING), value, shape.child(key))
    return original


def _merge_value(original: Any, patch: Any, shape: Shape) -> Any:
    if isinstance(patch, dict):
        # strategic merge patch ignores x-kubernetes-map-type: selectors merge too
        return _merge_map(original if isinstance(original, dict) else {}, patch, shape)
    if isinstance(patch, list):
        if original is _MISSING or not isinstance(original, list):
            original = []
        if shape.kind == "list" and "merge" in shape.strategies:
            return _merge_list(original, patch, shape)
        return _replace_list(patch, shape)
    return patch


def _strip(value: Any) -> Any:
    """A patch value taken whole: nulls inside maps dropped (they mean "absent")."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _replace_list(patch: list, shape: Shape) -> list:
    item_shape = shape.item() if shape.kind == "list" else UNKNOWN
    out = []
    for item in patch:
        if isinstance(item, dict):
            if item.get(_DIRECTIVE) == "replace" and len(item) == 1:
                continue
            out.append(_merge_map({}, item, item_shape))
        else:
            out.append(_strip(item))
    return out


def _key_of(item: Any, merge_key: str) -> Any:
    if isinstance(item, dict) and merge_key in item:
        return json.dumps(item[merge_key], sort_keys=True)
    return _MISSING


def _scalar_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=str) + type(item).__name__


def _special_elements(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Handle `$patch` list elements; returns (original, patch without them)."""
    plain, replace = [], False
    for item in patch:
        if not (isinstance(item, dict) and _DIRECTIVE in item):
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "replace":
            replace = True
        elif directive == "delete":
            if merge_key and merge_key in item:
                key = _key_of(item, merge_key)
                original = [x for x in original if _key_of(x, merge_key) != key]
            elif not merge_key and set(item) == {_DIRECTIVE}:
                continue
            else:
                raise bad_request(f"map: {json.dumps(item, default=str)[:200]} does not contain "
                                  f"declared merge key: {merge_key}")
        elif directive == "merge":
            raise bad_request("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_directive(directive, item)
    if replace:
        return [], plain
    return original, plain


def _merge_list(original: list, patch: list, shape: Shape, order: list | None = None) -> list:
    merge_key = shape.merge_key
    original, patch = _special_elements(list(original), patch, merge_key)
    item_shape = shape.item()
    maps = any(isinstance(x, dict) for x in original + patch)
    if maps:
        if not all(isinstance(x, dict) for x in original + patch):
            raise bad_request("strategic merge patch: list elements are of different types")
        if not merge_key:
            return _replace_list(patch, shape)
        merged = list(original)
        index = {_key_of(x, merge_key): i for i, x in enumerate(merged)}
        for item in patch:
            key = _key_of(item, merge_key)
            if key is _MISSING:
                raise bad_request(f"map: {json.dumps(item, default=str)[:200]} does not contain "
                                  f"declared merge key: {merge_key}")
            if key in index:
                merged[index[key]] = _merge_map(merged[index[key]], item, item_shape)
            else:
                index[key] = len(merged)
                merged.append(_merge_map({}, item, item_shape))
        keyf = (lambda x: _key_of(x, merge_key))  # noqa: E731
    else:
        if any(isinstance(x, list) for x in original + patch):
            raise bad_request("strategic merge patch: lists of lists are not supported")
        merged, seen = [], set()
        for item in original + patch:
            if _scalar_key(item) not in seen:
                seen.add(_scalar_key(item))
                merged.append(item)
        keyf = _scalar_key
    wanted = {keyf(x) for x in (order if order is not None else patch)
              if keyf(x) is not _MISSING}
    patch_items = [x for x in merged if keyf(x) in wanted]
    server_only = [x for x in merged if keyf(x) not in wanted]
    return _normalize_order(patch_items, server_only, order if order is not None else patch,
                            original, keyf)


def _normalize_order(patch_items: list, server_only: list, patch_order: list,
                     server_order: list, keyf: Any) -> list:
    """Sort patch items by the patch's order, server-only items by the live order, then
    interleave them the way Kubernetes does: a server-only item goes first only when
    both are in the live list and it came first there."""
    def position(order: list) -> dict[Any, int]:
        return {keyf(x): i for i, x in reversed(list(enumerate(order)))}

    p_pos, s_pos = position(patch_order), position(server_order)
    patch_items = sorted(patch_items, key=lambda x: p_pos.get(keyf(x), len(p_pos)))
    server_only = sorted(server_only, key=lambda x: s_pos.get(keyf(x), len(s_pos)))
    out, i, j = [], 0, 0
    while i < len(server_only) or j < len(patch_items):
        if j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        else:
            li, ri = s_pos.get(keyf(server_only[i])), s_pos.get(keyf(patch_items[j]))
            if li is not None and ri is not None and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def _apply_set_order(original: dict, patch: dict, directive: str, shape: Shape) -> None:
    field = directive[len(_SET_ORDER):]
    order = patch[directive]
    if not isinstance(order, list):
        raise bad_request(f"strategic merge patch: {directive} must be a list")
    field_shape = shape.child(field)
    if field_shape.kind != "list" or "merge" not in field_shape.strategies:
        return  # the list is replaced whole; order comes from the patch itself
    merge_key = field_shape.merge_key
    if merge_key and not all(isinstance(x, dict) and merge_key in x for x in order):
        raise bad_request(f"strategic merge patch: {directive} items must carry the merge key "
                          f"{merge_key!r}")
    live = original.get(field)
    live = live if isinstance(live, list) else []
    given = patch.pop(field, _MISSING)
    if given is _MISSING and field not in original:
        return
    if given is None:
        original.pop(field, None)
        return
    if given is not _MISSING and not isinstance(given, list):
        raise bad_request(f"strategic merge patch: {field} must be a list")
    original[field] = _merge_list(live, given if given is not _MISSING else [], field_shape,
                                  order=order)
