"""The parts every OpenAPI v3 document is built from: Kubernetes' JSON Schemas in OpenAPI
3.0 form, the paths and operations of one resource type (`PathBuilder`), and the
document frame (`document`). `openapi.py` builds the built-in kinds' documents from them,
`openapi_custom.py` the documents of custom resources.

Schemas come from the Kubernetes 1.32 definitions in `pinnace.api.schema` (JSON Schema
as shipped by kubernetes-validate) converted to the form kube-apiserver publishes:

- `{"$ref": "#/$defs/X"}` becomes `#/components/schemas/X`; a ref with siblings
  (description, patch strategy...) is wrapped as `{"allOf": [{"$ref": ...}], ...}`,
  because OpenAPI 3.0 ignores the siblings of a bare `$ref`;
- `type: [T, "null"]` becomes `type: T`;
- IntOrString becomes `{"format": "int-or-string", "oneOf": [integer, string]}` with no
  top-level type, as Kubernetes publishes it (kubectl explain then shows `<IntOrString>`);
- the `enum` pinned on `apiVersion`/`kind` by kubernetes-validate is dropped;
- `x-kubernetes-*` extensions (merge keys, patch strategies, list and map types,
  group-version-kind) are kept: kubectl computes strategic merge patches and
  `kubectl explain` output from them.

Each operation carries an `operationId`, `x-kubernetes-action` and
`x-kubernetes-group-version-kind`. kubectl decides that the server validates fields
(`--validate=strict`) from the `fieldValidation` parameter of the item `patch` operation.
"""

from __future__ import annotations

import functools
from typing import Any

from pinnace.api import schema
from pinnace.api.kinds import ResourceType
from pinnace.apiserver.discovery import GIT_VERSION, Subresource, subresources

_DEFS_PREFIX = "#/$defs/"
SCHEMA_PREFIX = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# meta.k8s.io types every group-version document carries (the operations refer to them).
META_TYPES = tuple(
    META + name
    for name in ("Status", "DeleteOptions", "Patch", "WatchEvent", "APIResourceList",
                 "APIGroup", "APIGroupList", "APIVersions")
)
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"

# ---------------------------------------------------------------------------- schemas


def _single_type(value: Any) -> Any:
    if isinstance(value, list):
        types = [t for t in value if t != "null"]
        return types[0] if len(types) == 1 else types
    return value


def _convert(node: Any, refs: set[str]) -> Any:
    """One JSON Schema node in OpenAPI v3 form; names of referenced definitions go to refs."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "type":
            out[key] = _single_type(value)
        elif key == "properties":
            out[key] = {name: _convert(prop, refs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value, refs)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [_convert(v, refs) for v in value]
        else:
            out[key] = value
    name = schema.ref_name(node)
    if name is None:
        return out
    refs.add(name)
    ref = {"$ref": SCHEMA_PREFIX + name}
    return {"allOf": [ref], **out} if out else ref


def _convert_definition(name: str, node: dict[str, Any], refs: set[str]) -> dict[str, Any]:
    if name == _INT_OR_STRING:
        return {
            "description": "IntOrString holds either an int32 or a string; JSON and YAML "
                           "carry whichever of the two it holds.",
            "format": "int-or-string",
            "oneOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
        }
    out = _convert(node, refs)
    props = out.get("properties")
    if isinstance(props, dict):
        for field in ("apiVersion", "kind"):
            if isinstance(props.get(field), dict) and "enum" in props[field]:
                props[field] = {k: v for k, v in props[field].items() if k != "enum"}
    return out


@functools.cache
def _components() -> dict[str, tuple[dict[str, Any], frozenset[str]]]:
    """Every definition converted, with the definitions it refers to directly."""
    out = {}
    for name, node in schema.definitions().items():
        refs: set[str] = set()
        out[name] = (_convert_definition(name, node, refs), frozenset(refs))
    return out


def _reachable(roots: list[str]) -> dict[str, dict[str, Any]]:
    components = _components()
    seen: set[str] = set()
    stack = [r for r in roots if r in components]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(r for r in components[name][1] if r not in seen and r in components)
    return {name: components[name][0] for name in sorted(seen)}


# ---------------------------------------------------------------------- operations


def _param(name: str, where: str, description: str, type_: str = "string",
           required: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"description": description, "in": where, "name": name,
                         "schema": {"type": type_, "uniqueItems": True}}
    if required:
        p["required"] = True
    return p


_PRETTY = _param("pretty", "query", "If 'true', the output is pretty printed.")
_DRY_RUN = _param("dryRun", "query", "When present (value All), the change is validated "
                  "and admitted but not persisted.")
_FIELD_MANAGER = _param("fieldManager", "query", "Name of the actor making the change, "
                        "recorded in managedFields; required for apply patches.")
_FIELD_VALIDATION = _param("fieldValidation", "query", "How unknown or duplicate fields "
                           "in the request body are handled: Ignore, Warn (default) or "
                           "Strict (the request fails).")
_FORCE = _param("force", "query", "Force an apply patch: take ownership of fields that "
                "conflict with other managers. Must be unset for other patch types.",
                "boolean")
_WRITE_PARAMS = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
_LIST_PARAMS = [
    _param("allowWatchBookmarks", "query", "Ask for BOOKMARK watch events.", "boolean"),
    _param("continue", "query", "The continue token of a previous paginated list."),
    _param("fieldSelector", "query", "Restrict the list by object fields."),
    _param("labelSelector", "query", "Restrict the list by labels."),
    _param("limit", "query", "Maximum number of items to return; the list is paginated "
           "with a continue token.", "integer"),
    _param("resourceVersion", "query", "The resource version the list or watch starts from."),
    _param("resourceVersionMatch", "query", "How resourceVersion applies to a list: "
           "Exact or NotOlderThan."),
    _param("sendInitialEvents", "query", "Start a watch with the current objects as ADDED "
           "events, ended by a bookmark.", "boolean"),
    _param("timeoutSeconds", "query", "Timeout for the list or watch call.", "integer"),
    _param("watch", "query", "Watch for changes and return them as a stream of events.",
           "boolean"),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _param("gracePeriodSeconds", "query", "Seconds before the object is deleted; zero "
           "deletes immediately.", "integer"),
    _param("ignoreStoreReadErrorWithClusterBreakingPotential", "query", "Delete an object "
           "that cannot be read from storage.", "boolean"),
    _param("orphanDependents", "query", "Deprecated: use propagationPolicy.", "boolean"),
    _param("propagationPolicy", "query", "Garbage collection of dependents: Orphan, "
           "Background or Foreground."),
]
_LOG_PARAMS = [
    _param("container", "query", "The container to stream logs of."),
    _param("follow", "query", "Follow the log stream.", "boolean"),
    _param("insecureSkipTLSVerifyBackend", "query", "Skip verifying the serving "
           "certificate of the node agent.", "boolean"),
    _param("limitBytes", "query", "Bytes to read before ending the log.", "integer"),
    _param("previous", "query", "Logs of the previous, terminated container.", "boolean"),
    _param("sinceSeconds", "query", "Only logs newer than this many seconds.", "integer"),
    _param("stream", "query", "Which stream to return: All, Stdout or Stderr."),
    _param("tailLines", "query", "Lines from the end of the log to show.", "integer"),
    _param("timestamps", "query", "Prefix each line with an RFC3339 timestamp.", "boolean"),
]
_EXEC_PARAMS = [
    _param("command", "query", "The command to run, one argument per parameter."),
    _param("container", "query", "The container to run the command in."),
    _param("stderr", "query", "Redirect the standard error stream.", "boolean"),
    _param("stdin", "query", "Redirect the standard input stream.", "boolean"),
    _param("stdout", "query", "Redirect the standard output stream.", "boolean"),
    _param("tty", "query", "Allocate a terminal.", "boolean"),
]
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_PREFIX + name}


def _content(schema_node: dict[str, Any], *, watch: bool = False) -> dict[str, Any]:
    types = ["application/json", "application/yaml"]
    if watch:
        types.append("application/json;stream=watch")
    return {t: {"schema": schema_node} for t in types}


def _responses(schema_node: dict[str, Any], codes: tuple[str, ...] = ("200",),
               *, watch: bool = False) -> dict[str, Any]:
    text = {"200": "OK", "201": "Created", "202": "Accepted"}
    out: dict[str, Any] = {
        code: {"content": _content(schema_node, watch=watch), "description": text[code]}
        for code in codes
    }
    out["401"] = {"description": "Unauthorized"}
    return out


def _operation(action: str, op_id: str, description: str, *, tag: str,
               gvk: dict[str, str], params: list[dict[str, Any]],
               responses: dict[str, Any], body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"description": description, "operationId": op_id}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"content": body, "required": action != "delete"}
    op["responses"] = responses
    op["tags"] = [tag]
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = gvk
    return op


def gv_names(group: str, version: str) -> tuple[str, str]:
    """('rbac.authorization.k8s.io', 'v1') -> ('RbacAuthorizationV1', 'rbacAuthorization_v1')."""
    parts = (group.removesuffix(".k8s.io") or "core").split(".")
    camel = "".join(p[:1].upper() + p[1:] for p in parts)
    return camel + version.capitalize(), camel[:1].lower() + camel[1:] + "_" + version


_METHOD_OF_VERB = {"get": "get", "update": "put", "patch": "patch", "create": "post",
                   "delete": "delete"}
_CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})


class PathBuilder:
    """The paths of one resource type."""

    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt
        self.gv_camel, self.tag = gv_names(rt.group, rt.version)
        self.scope = "Namespaced" if rt.namespaced else ""
        self.gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
        self.kind_ref = ref(rt.schema_ref)
        root = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        self.collection_path = f"{root}{ns}/{rt.plural}"
        self.item_path = self.collection_path + "/{name}"
        self.all_namespaces_path = f"{root}/{rt.plural}"

    def _path_params(self, *, item: bool) -> list[dict[str, Any]]:
        params = []
        if item:
            params.append(_param("name", "path", f"name of the {self.rt.kind}", required=True))
        if self.rt.namespaced:
            params.append(_param("namespace", "path", "object name and auth scope, such as "
                                 "for teams and projects", required=True))
        return [*params, _PRETTY]

    def _op(self, action: str, verb: str, what: str, description: str, **kw: Any) -> dict:
        op_id = f"{verb}{self.gv_camel}{what}"
        return _operation(action, op_id, description, tag=self.tag,
                          gvk=kw.pop("gvk", self.gvk), **kw)

    def paths(self) -> dict[str, dict[str, Any]]:
        rt, verbs = self.rt, set(self.rt.verbs)
        name = f"{self.scope}{rt.kind}"
        list_ref = ref(rt.schema_ref + "List")
        status_ref = ref(META + "Status")
        out: dict[str, dict[str, Any]] = {}

        collection: dict[str, Any] = {}
        if "list" in verbs:
            collection["get"] = self._op(
                "list", "list", name, f"list or watch objects of kind {rt.kind}",
                params=_LIST_PARAMS, responses=_responses(list_ref, watch=True))
        if "create" in verbs:
            collection["post"] = self._op(
                "post", "create", name, f"create a {rt.kind}", params=_WRITE_PARAMS,
                body={"*/*": {"schema": self.kind_ref}},
                responses=_responses(self.kind_ref, ("200", "201", "202")))
        if "deletecollection" in verbs:
            collection["delete"] = self._op(
                "deletecollection", "delete", f"Collection{name}",
                f"delete collection of {rt.kind}", params=_DELETE_PARAMS + _LIST_PARAMS,
                body={"*/*": {"schema": ref(META + "DeleteOptions")}},
                responses=_responses(status_ref))
        if collection:
            collection["parameters"] = self._path_params(item=False)
            out[self.collection_path] = collection

        item: dict[str, Any] = {}
        if "get" in verbs:
            item["get"] = self._op("get", "read", name, f"read the specified {rt.kind}",
                                   params=[], responses=_responses(self.kind_ref))
        if "update" in verbs:
            item["put"] = self._op(
                "put", "replace", name, f"replace the specified {rt.kind}",
                params=_WRITE_PARAMS, body={"*/*": {"schema": self.kind_ref}},
                responses=_responses(self.kind_ref, ("200", "201")))
        if "patch" in verbs:
            item["patch"] = self._patch(name, f"partially update the specified {rt.kind}",
                                        self.kind_ref, self.gvk)
        if "delete" in verbs:
            item["delete"] = self._op(
                "delete", "delete", name, f"delete a {rt.kind}", params=_DELETE_PARAMS,
                body={"*/*": {"schema": ref(META + "DeleteOptions")}},
                responses=_responses(self.kind_ref, ("200", "202")))
        if item:
            item["parameters"] = self._path_params(item=True)
            out[self.item_path] = item

        if rt.namespaced and "list" in verbs:
            out[self.all_namespaces_path] = {
                "get": self._op("list", "list", f"{rt.kind}ForAllNamespaces",
                                f"list or watch objects of kind {rt.kind}",
                                params=_LIST_PARAMS, responses=_responses(list_ref, watch=True)),
                "parameters": [_PRETTY],
            }

        for sub in subresources(rt):
            item_ops = self._subresource(sub)
            if item_ops:
                item_ops["parameters"] = self._path_params(item=True)
                out[f"{self.item_path}/{sub.name}"] = item_ops
        return out

    def _patch(self, what: str, description: str, response: dict[str, Any],
               gvk: dict[str, str]) -> dict[str, Any]:
        patch_ref = ref(META + "Patch")
        # custom resources take no strategic merge patch, and say so: kubectl reads this
        # list to pick a merge patch for `kubectl apply` of a custom object
        types = _PATCH_TYPES if self.rt.custom is None else tuple(
            t for t in _PATCH_TYPES if "strategic" not in t)
        return self._op(
            "patch", "patch", what, description, gvk=gvk,
            params=[*_WRITE_PARAMS, _FORCE],
            body={t: {"schema": patch_ref} for t in types},
            responses=_responses(response, ("200", "201")))

    def _subresource(self, sub: Subresource) -> dict[str, Any]:
        rt = self.rt
        suffix = sub.name[:1].upper() + sub.name[1:]
        what = f"{self.scope}{rt.kind}{suffix}"
        gvk = {"group": sub.group, "kind": sub.kind, "version": sub.version}
        definition = (f"io.k8s.api.{(sub.group.removesuffix('.k8s.io') or 'core').split('.')[0]}"
                      f".{sub.version}.{sub.kind}")
        sub_ref = ref(definition) if schema.definition(definition) else {"type": "string"}
        ops: dict[str, Any] = {}
        if sub.name in _CONNECT_SUBRESOURCES:
            params = _EXEC_PARAMS if sub.name in ("exec", "attach") else []
            for verb in sub.verbs:
                method = _METHOD_OF_VERB[verb]
                ops[method] = _operation(
                    "connect", f"connect{self.gv_camel}{method.capitalize()}{what}",
                    f"connect {method.upper()} requests to {sub.name} of {rt.kind}",
                    tag=self.tag, gvk=gvk, params=params,
                    responses=_responses({"type": "string"}))
            return ops
        if sub.name == "log":
            ops["get"] = self._op(
                "get", "read", what, f"read log of the specified {rt.kind}", gvk=gvk,
                params=_LOG_PARAMS,
                responses={"200": {"content": {"text/plain": {"schema": {"type": "string"}}},
                                   "description": "OK"},
                           "401": {"description": "Unauthorized"}})
            return ops
        for verb in sub.verbs:
            if verb == "get":
                ops["get"] = self._op("get", "read", what,
                                      f"read {sub.name} of the specified {rt.kind}", gvk=gvk,
                                      params=[], responses=_responses(sub_ref))
            elif verb == "update":
                ops["put"] = self._op("put", "replace", what,
                                      f"replace {sub.name} of the specified {rt.kind}",
                                      gvk=gvk, params=_WRITE_PARAMS,
                                      body={"*/*": {"schema": sub_ref}},
                                      responses=_responses(sub_ref, ("200", "201")))
            elif verb == "patch":
                ops["patch"] = self._patch(
                    what, f"partially update {sub.name} of the specified {rt.kind}",
                    sub_ref, gvk)
            elif verb == "create":
                ops["post"] = self._op("post", "create", what, f"create {sub.name} of a "
                                       f"{rt.kind}", gvk=gvk, params=_WRITE_PARAMS,
                                       body={"*/*": {"schema": sub_ref}},
                                       responses=_responses(sub_ref, ("200", "201", "202")))
        return ops


# ----------------------------------------------------------------------- documents


def document(paths: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _reachable(roots),
            "securitySchemes": {
                "BearerToken": {"description": "Bearer Token authentication",
                                "in": "header", "name": "authorization", "type": "apiKey"},
            },
        },
        "security": [{"BearerToken": []}],
    }


def discovery_path(op_id: str, tag: str, definition: str) -> dict[str, Any]:
    return {"get": {
        "description": "get available resources" if "Resources" in op_id
        else "get information of a group",
        "operationId": op_id,
        "responses": _responses(ref(META + definition)),
        "tags": [tag],
    }}


def collect_refs(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_PREFIX):
            out.append(ref[len(SCHEMA_PREFIX):])
        for value in node.values():
            collect_refs(value, out)
    elif isinstance(node, list):
        for value in node:
            collect_refs(value, out)
