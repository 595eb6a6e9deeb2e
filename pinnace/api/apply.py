"""Server-side apply and `metadata.managedFields`.

Modelled on Kubernetes' structured-merge-diff, driven by the OpenAPI definitions:

- A *field set* is a Python set of paths; a path is a tuple of fieldsV1 elements:
  `f:<name>` (struct field or map key), `k:<json of key fields>` (item of a
  list-type map), `v:<json>` (item of a set), `i:<n>` (index). A path in the set
  is owned ("member"); fieldsV1 writes members with children as `".": {}`.
- Lists are associative by `x-kubernetes-list-map-keys` (or the legacy patch merge
  key), sets by value, else atomic; maps are granular unless
  `x-kubernetes-map-type: atomic` — in Kubernetes' definitions and in custom
  resources' schemas alike (`custom_shape`: metadata as ObjectMeta). A value with no
  schema is a granular map or an atomic list. Empty maps/lists are leaves, so owning
  `emptyDir: {}` is possible.
- Apply: merge the config into live; prune what this manager applied last time and
  no longer applies, unless someone else owns it; then every field whose value
  changed and that another manager owns is a conflict (409, or with force the
  field moves to the applier). The applier's set is exactly its config's set.
- Update (create/update/patch): the manager gains every field whose value it set
  or changed; other managers lose those fields and every removed field.
- Like Kubernetes, apiVersion, kind and the identity/system fields of metadata are
  never tracked, and an entry's time only moves when the object changed.
"""

from __future__ import annotations

import json
import marshal
from dataclasses import dataclass, field
from typing import Any

from pinnace.api.errors import ApiError, Cause, bad_request
from pinnace.api.kinds import REGISTRY
from pinnace.api.patch import (
    Shape,
    api_errors_only,
    copy_json,
    json_equal,
    root_shape,
    shape_of,
)

__all__ = ["apply", "custom_shape", "fields_of", "update_managed_fields"]

Path = tuple[str, ...]
FieldSet = set[Path]

_MISSING: Any = object()
_OBJECT_META = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
BEFORE_FIRST_APPLY = "before-first-apply"
# list-map key fields the server defaults; Kubernetes' schemas carry these defaults so
# that an applied port without protocol is the same item as the defaulted live one
_KEY_DEFAULTS = {"protocol": "TCP"}

_UNTRACKED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    *(("f:metadata", f"f:{name}") for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")),
})


# ---------------------------------------------------------------------------- paths of values


def _go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, sorted keys, <>& escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _elements(value: list, shape: Shape) -> list[tuple[str, Any]] | None:
    """(path element, item) of a list, or None when the list is atomic here."""
    if shape.kind != "list" or shape.list_type not in ("map", "set"):
        return None
    out, seen = [], set()
    for item in value:
        if shape.list_type == "map":
            if not isinstance(item, dict):
                return None
            keys = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in sorted(shape.map_keys)
                    if k in item or k in _KEY_DEFAULTS}
            if not keys:
                return None
            element = "k:" + _go_json(keys)
        else:
            if isinstance(item, (dict, list)):
                return None
            element = "v:" + _go_json(item)
        if element in seen:
            return None  # duplicates cannot be tracked item by item
        seen.add(element)
        out.append((element, item))
    return out


def _mode(value: Any, shape: Shape) -> str:
    if isinstance(value, dict):
        if shape.kind in ("struct", "map", "unknown") and not shape.atomic_map:
            return "map"
        return "leaf"
    if isinstance(value, list) and _elements(value, shape) is not None:
        return "list"
    return "leaf"


def _collect(value: Any, shape: Shape, path: Path, out: FieldSet) -> None:
    mode = _mode(value, shape)
    if mode == "leaf" or not value:
        if path:
            out.add(path)
    elif mode == "map":
        for key, child in value.items():
            _collect(child, shape.child(key), (*path, f"f:{key}"), out)
    else:
        item_shape = shape.item()
        for element, item in _elements(value, shape) or ():
            out.add((*path, element))
            if isinstance(item, dict):
                for key, child in item.items():
                    _collect(child, item_shape.child(key), (*path, element, f"f:{key}"), out)


def _compare(old: Any, new: Any, shape: Shape, path: Path,
             added: FieldSet, modified: FieldSet, removed: FieldSet) -> None:
    if old is _MISSING:
        _collect(new, shape, path, added)
        return
    if new is _MISSING:
        _collect(old, shape, path, removed)
        return
    if type(old) is type(new) and old == new:
        # the common case, decided in C: an unchanged subtree (decoding already enforced
        # the schema's types, so Python's True == 1 cannot hide a change here)
        return
    mode = _mode(old, shape)
    if mode != _mode(new, shape) or mode == "leaf" or (not old and not new):
        if not json_equal(old, new):
            modified.add(path)
        return
    if mode == "map":
        for key in {**old, **new}:
            _compare(old.get(key, _MISSING), new.get(key, _MISSING), shape.child(key),
                     (*path, f"f:{key}"), added, modified, removed)
        return
    before = dict(_elements(old, shape) or ())
    after = dict(_elements(new, shape) or ())
    item_shape = shape.item()
    for element in {**before, **after}:
        item_path = (*path, element)
        if element not in before:
            added.add(item_path)
            if isinstance(after[element], dict):
                _compare({}, after[element], item_shape, item_path, added, modified, removed)
        elif element not in after:
            removed.add(item_path)
            if isinstance(before[element], dict):
                _compare(before[element], {}, item_shape, item_path, added, modified, removed)
        elif isinstance(before[element], dict) and isinstance(after[element], dict):
            b, a = before[element], after[element]
            for key in {**b, **a}:
                _compare(b.get(key, _MISSING), a.get(key, _MISSING), item_shape.child(key),
                         (*item_path, f"f:{key}"), added, modified, removed)


def _merge(live: Any, config: Any, shape: Shape) -> Any:
    """Merge an apply configuration into live (live is a private copy, reused)."""
    if live is _MISSING:
        return copy_json(config)
    mode = _mode(config, shape)
    if mode != _mode(live, shape) or mode == "leaf":
        return copy_json(config)
    if mode == "map":
        for key, child in config.items():
            live[key] = _merge(live.get(key, _MISSING), child, shape.child(key))
        return live
    lhs, rhs = _elements(live, shape) or [], _elements(config, shape) or []
    in_rhs = {e for e, _ in rhs}
    by_key = dict(lhs)
    item_shape = shape.item()
    out, li, ri, done = [], 0, 0, set()
    # live-only items keep their place before the next item the config names
    while li < len(lhs) or ri < len(rhs):
        if li < len(lhs) and (lhs[li][0] not in in_rhs or lhs[li][0] in done):
            if lhs[li][0] not in in_rhs:
                out.append(lhs[li][1])
            li += 1
            continue
        if ri < len(rhs):
            element, item = rhs[ri]
            out.append(_merge(by_key.get(element, _MISSING), item, item_shape))
            done.add(element)
            ri += 1
        else:
            li += 1
    return out


# ---------------------------------------------------------------------------- path edits


def _parse_key(element: str) -> Any:
    try:
        return json.loads(element[2:])
    except ValueError:
        return _MISSING


def _find(node: Any, element: str) -> tuple[Any, Any]:
    """(container, index-or-key) of a path element inside node, or (None, None)."""
    kind = element[:2]
    if kind == "f:" and isinstance(node, dict) and element[2:] in node:
        return node, element[2:]
    if not isinstance(node, list):
        return None, None
    want = _parse_key(element)
    for i, item in enumerate(node):
        if kind == "k:" and isinstance(want, dict) and isinstance(item, dict) and all(
                json_equal(item.get(k, _KEY_DEFAULTS.get(k, _MISSING)), v)
                for k, v in want.items()):
            return node, i
        if kind == "v:" and want is not _MISSING and json_equal(item, want):
            return node, i
        if kind == "i:" and element[2:] == str(i):
            return node, i
    return None, None


def _remove_path(obj: dict, path: Path) -> None:
    node: Any = obj
    for element in path[:-1]:
        container, where = _find(node, element)
        if container is None:
            return
        node = container[where]
    container, where = _find(node, path[-1])
    if container is not None:
        del container[where]


def _with_named_parents(paths: FieldSet) -> FieldSet:
    out = set(paths)
    for p in paths:
        out.update(p[:i] for i in range(1, len(p)) if p[i - 1].startswith("f:"))
    return out


def _is_key_field(path: Path) -> bool:
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    keys = _parse_key(path[-2])
    return isinstance(keys, dict) and path[-1][2:] in keys


def _untracked(path: Path, reset: frozenset[str]) -> bool:
    return (path in _UNTRACKED or path[:2] == ("f:metadata", "f:managedFields")
            or (bool(path) and path[0][2:] in reset))


def _tracked(paths: FieldSet, reset: frozenset[str]) -> FieldSet:
    return {p for p in paths if p and not _untracked(p, reset)}


def _prune(obj: dict, last: FieldSet, keep: FieldSet, reset: frozenset[str]) -> None:
    """Remove what the applier owned last time and nobody owns now."""
    keep = _with_named_parents(keep)
    kept_prefixes = {p[:i] for p in keep for i in range(1, len(p) + 1)}
    for path in sorted(_with_named_parents(last) - keep, key=len):
        if _untracked(path, reset) or path in kept_prefixes or _is_key_field(path):
            continue
        _remove_path(obj, path)


# ---------------------------------------------------------------------------- fieldsV1


def _element_order(element: str) -> tuple[int, str]:
    return ({".": 0, "f:": 1, "k:": 2, "v:": 3, "i:": 4}.get(element[:2], 5), element)


# fieldsV1 already rendered, by field set: most writes re-render the same few sets (every
# entry of an object is written again on each write), and rendering is the costly part.
# Kept as marshal bytes, so that every caller gets its own dict (~10x faster than render).
_RENDERED: dict[frozenset[Path], bytes] = {}
_RENDERED_MAX = 4096


def encode_fields(paths: FieldSet) -> dict[str, Any]:
    """A field set in Kubernetes' fieldsV1 form."""
    key = frozenset(paths)
    hit = _RENDERED.get(key)
    if hit is not None:
        return marshal.loads(hit)
    out = _render_fields(paths)
    if len(_RENDERED) >= _RENDERED_MAX:
        _RENDERED.clear()
    _RENDERED[key] = marshal.dumps(out)
    return out


def _render_fields(paths: FieldSet) -> dict[str, Any]:
    trie: dict[str, Any] = {}
    for path in paths:
        node = trie
        for element in path:
            node = node.setdefault(element, {})

    def render(node: dict[str, Any], prefix: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node and prefix in paths:
            out["."] = {}
        for element in sorted(node, key=_element_order):
            out[element] = render(node[element], (*prefix, element))
        return out

    return render(trie, ())


def decode_fields(fields: Any, prefix: Path = ()) -> FieldSet:
    """The field set a fieldsV1 value describes (malformed parts are ignored)."""
    out: FieldSet = set()
    if not isinstance(fields, dict):
        return out
    for element, child in fields.items():
        if element == ".":
            if prefix:
                out.add(prefix)
        elif isinstance(child, dict) and child:
            out |= decode_fields(child, (*prefix, element))
        else:
            out.add((*prefix, element))
    return out


@api_errors_only
def fields_of(obj: dict, schema_ref: str) -> dict[str, Any]:
    """fieldsV1 of every field of `obj` (untracked metadata left out)."""
    out: FieldSet = set()
    _collect(_without_managed(obj), root_shape(schema_ref), (), out)
    return encode_fields(_tracked(out, frozenset()))


# ---------------------------------------------------------------------------- managers


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    subresource: str = ""
    fields: FieldSet = field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        # appliers keep one entry whatever apiVersion they use; updaters one per version
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, self.subresource, version)

    def describe(self) -> str:
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                               "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = encode_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


_DECODED: dict[bytes, frozenset[Path]] = {}


def _decoded(fields: Any) -> FieldSet:
    """`decode_fields`, remembered by the fieldsV1 value (its marshal bytes): the entries
    of an object are decoded again on each of its writes."""
    try:
        raw = marshal.dumps(fields)
    except ValueError:
        return decode_fields(fields)
    hit = _DECODED.get(raw)
    if hit is None:
        if len(_DECODED) >= _RENDERED_MAX:
            _DECODED.clear()
        hit = _DECODED[raw] = frozenset(decode_fields(fields))
    return set(hit)


def _entries(managed: Any) -> list[_Entry]:
    out: dict[tuple[str, str, str, str], _Entry] = {}
    for raw in managed if isinstance(managed, list) else ():
        if not isinstance(raw, dict) or not isinstance(raw.get("manager", ""), str):
            continue
        entry = _Entry(str(raw.get("manager", "")), str(raw.get("operation", "")),
                       str(raw.get("apiVersion", "")), str(raw.get("time") or ""),
                       str(raw.get("subresource") or ""), _decoded(raw.get("fieldsV1")))
        if entry.identity in out:
            out[entry.identity].fields |= entry.fields
        else:
            out[entry.identity] = entry
    return list(out.values())


def _managed_of(obj: Any) -> Any:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta.get("managedFields") if isinstance(meta, dict) else None


def _without_managed(obj: Any) -> dict:
    """obj without metadata.managedFields: a shallow copy (callers that change the result
    copy it deeply themselves), since copying whole objects dominated every write."""
    if not isinstance(obj, dict):
        return {}
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _write(obj: dict, entries: list[_Entry]) -> dict:
    kept = [e for e in entries if e.fields]
    kept.sort(key=lambda e: (e.operation, e.time, e.manager, e.api_version, e.subresource))
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if kept:
        meta["managedFields"] = [e.to_dict() for e in kept]
    else:
        meta.pop("managedFields", None)
    return obj


def _path_string(path: Path) -> str:
    out = ""
    for element in path:
        if element.startswith("f:"):
            out += "." + element[2:]
        elif element.startswith("k:"):
            keys = _parse_key(element)
            if isinstance(keys, dict):
                out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif element.startswith("v:"):
            out += "[=" + element[2:] + "]"
        else:
            out += "[" + element[2:] + "]"
    return out


def _conflict_error(conflicts: list[tuple[_Entry, Path]]) -> ApiError:
    causes = [Cause(_path_string(p), f"conflict with {e.describe()}", "FieldManagerConflict")
              for e, p in conflicts]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = (f"Apply failed with 1 conflict: conflict with {entry.describe()}: "
                   f"{_path_string(path)}")
    else:
        lines: list[str] = []
        for who in sorted({e.describe() for e, _ in conflicts}):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {_path_string(p)}" for e, p in conflicts if e.describe() == who)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, causes=causes)


# ---------------------------------------------------------------------------- operations


@api_errors_only
def apply(live: dict | None, config: dict, *, manager: str, force: bool, now: str,
          api_version: str, schema_ref: str = "", shape: Shape | None = None,
          reset_fields: tuple[str, ...] = ()) -> dict:
    """Server-side apply of `config` by `manager`; returns the new object.

    The object's schema is the definition `schema_ref`, or `shape` (a custom
    resource's). `reset_fields` names top-level fields this endpoint does not track
    (e.g. `status` on the main resource). Raises ApiError 409 Conflict unless `force`.
    """
    if not isinstance(config, dict):
        raise bad_request("error decoding YAML: the apply configuration must be an object")
    if _managed_of(config) is not None:
        raise bad_request("metadata.managedFields must be nil")
    reset = frozenset(reset_fields)
    shape = shape or root_shape(schema_ref)
    config = _drop_nulls(config)
    before = _without_managed(live)
    entries = _entries(_managed_of(live))
    if live is not None and not entries:
        # objects never tracked: what is there belongs to one synthetic updater
        everything: FieldSet = set()
        _collect(before, shape, (), everything)
        entries = [_Entry(BEFORE_FIRST_APPLY, "Update", api_version, "", "",
                          _tracked(everything, reset))]
    mine = next((e for e in entries if e.identity == (manager, "Apply", "", "")), None)
    others = [e for e in entries if e is not mine]

    applied: FieldSet = set()
    _collect(config, shape, (), applied)
    applied = _tracked(applied, reset)
    merged = _merge(copy_json(before), config, shape)
    if mine is not None:
        keep = applied.union(*(e.fields for e in others))
        _prune(merged, mine.fields, keep, reset)

    added: FieldSet = set()
    modified: FieldSet = set()
    removed: FieldSet = set()
    _compare(before, merged, shape, (), added, modified, removed)
    changed = added | modified
    conflicts = sorted(((e, p) for e in others for p in e.fields & changed),
                       key=lambda c: (c[0].describe(), c[1]))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for entry in others:
        entry.fields -= changed | removed
    unchanged = json_equal(before, merged)
    time = mine.time if (mine is not None and unchanged and mine.time) else now
    entry = _Entry(manager, "Apply", api_version, time, "", applied)
    return _write(merged, [*others, entry])


@api_errors_only
def update_managed_fields(old: dict | None, new: dict, *, manager: str, operation: str,
                          now: str, api_version: str, subresource: str = "",
                          schema_ref: str = "", shape: Shape | None = None,
                          reset_fields: tuple[str, ...] = ()) -> dict:
    """`new` with managedFields after a create/update/patch by `manager`.

    Without `schema_ref` or `shape` the schema is found from the object's apiVersion
    and kind.
    """
    if not isinstance(new, dict):
        raise bad_request("the object must be a JSON object")
    reset = frozenset(reset_fields)
    shape = shape or _shape_for(schema_ref, new)
    given = _managed_of(new)
    # a writer that changed managedFields itself replaces them, as in Kubernetes
    base = given if given is not None and not json_equal(given, _managed_of(old)) \
        else _managed_of(old)
    entries = _entries(base)
    before = _without_managed(old) if old is not None else {}
    after = _without_managed(new)
    added: FieldSet = set()
    modified: FieldSet = set()
    removed: FieldSet = set()
    _compare(before, after, shape, (), added, modified, removed)
    changed = _tracked(added | modified, reset)
    for entry in entries:
        entry.fields -= changed | removed
    if changed:
        me = _Entry(manager, operation, api_version, now, subresource)
        found = next((e for e in entries if e.identity == me.identity), None)
        if found is None:
            entries.append(me)
            found = me
        found.fields |= changed
        found.time = now
    return _write(after, entries)


def custom_shape(schema: dict[str, Any]) -> Shape:
    """The shape of a custom resource by its version's structural schema, with metadata
    as ObjectMeta (owner references by uid, finalizers a set), as Kubernetes tracks it."""
    node = dict(schema)
    node["properties"] = {**(schema.get("properties") or {}),
                          "metadata": {"$ref": _OBJECT_META}}
    return shape_of(node)


def _shape_for(schema_ref: str, obj: Any) -> Shape:
    if not schema_ref and isinstance(obj, dict):
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if isinstance(api_version, str) and isinstance(kind, str):
            resource = REGISTRY.by_api_version(api_version, kind)
            schema_ref = resource.schema_ref if resource is not None else ""
    return root_shape(schema_ref)


def _drop_nulls(value: Any) -> Any:
    """An apply configuration's nulls mean "not specified"."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value
