"""`/openapi/v2`: the Swagger 2.0 document kubectl still asks for, as JSON or gnostic protobuf.

kubectl (1.27-1.33) validates most manifests against `/openapi/v3`, but for a `kind: List`
— what `kubectl get … -o yaml` writes — it loads the v2 document, and only as protobuf:
`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, decoded with
gnostic's `openapi.v2.Document` message. A 404 there fails `kubectl apply -f list.yaml`
under the default `--validate=strict`; a JSON body fails it too.

Design:
- One Swagger document, built from what the v3 documents already say, so the two never
  disagree: definitions from the same Kubernetes 1.32 JSON Schemas (`pinnace.api.schema`),
  converted to Swagger's form (`#/definitions/X` refs, one `type`, IntOrString as
  `string`/`int-or-string` and Quantity as `string`, as kube-apiserver publishes them);
  paths from `openapi.openapi_v3_document` of every served group-version, each v3
  operation rewritten as a v2 one (typed query/path parameters, the request body as an
  `in: body` parameter, response schemas, the `x-kubernetes-*` extensions).
- JSON is the document itself. The protobuf is written by `_encode`, a table of the
  gnostic messages we need (`_MESSAGES`: JSON key -> field number and type, numbers from
  gnostic's OpenAPIv2.proto), walking the JSON document: one description of the mapping,
  no generated classes. gnostic keeps free-form values (`default`, `enum`, `example`,
  vendor extensions) as YAML text in an `Any`; JSON text is YAML, so that is what we write.
- Custom resources' definitions and paths come from `openapi_custom`, cut down for
  Swagger as apiextensions-apiserver does. The built-in part is built once per process;
  a server's whole document (and its JSON, protobuf and ETag, made on first use) is
  cached until a definition changes what the server serves (its kinds registry's
  generation). The ETag is the SHA-512 of the JSON bytes, as kube-apiserver's is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import weakref
from typing import Any

from pinnace.api import schema
from pinnace.api.kinds import REGISTRY, Registry
from pinnace.apiserver import openapi, openapi_custom
from pinnace.apiserver.discovery import GIT_VERSION

PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_V3_PREFIX = "#/components/schemas/"
_V2_PREFIX = "#/definitions/"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_SWAGGER_SCHEMA_KEYS = frozenset({
    "format", "title", "description", "default", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties", "required",
    "enum", "readOnly", "example"})

# ----------------------------------------------------------------- the JSON document


def _schema(node: Any) -> Any:
    """One JSON Schema (or v3) node in Swagger 2.0 form."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    name = schema.ref_name(node)
    ref = node.get("$ref")
    if name is not None:
        out["$ref"] = _V2_PREFIX + name
    elif isinstance(ref, str) and ref.startswith(_V3_PREFIX):
        out["$ref"] = _V2_PREFIX + ref[len(_V3_PREFIX):]
    for key, value in node.items():
        if key == "type":
            types = [t for t in value if t != "null"] if isinstance(value, list) else [value]
            if len(types) == 1:
                out["type"] = types[0]
        elif key == "properties":
            out[key] = {k: _schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _schema(value)
        elif key == "allOf":
            # v3's {"allOf": [{"$ref"}], description…}: Swagger keeps siblings of $ref
            refs = [_schema(v) for v in value]
            if len(refs) == 1 and "$ref" in refs[0]:
                out["$ref"] = refs[0]["$ref"]
            else:
                out[key] = refs
        elif key in _SWAGGER_SCHEMA_KEYS or key.startswith("x-"):
            out[key] = value
    return out


def _definition(name: str, node: dict[str, Any]) -> dict[str, Any]:
    if name == _INT_OR_STRING:
        return {"description": "IntOrString is a type that can hold an int32 or a string.",
                "type": "string", "format": "int-or-string"}
    if name == _QUANTITY:
        return {"description": "Quantity is a fixed-point representation of a number, "
                               "written as a string such as 100m or 1Gi.", "type": "string"}
    out = _schema(node)
    for field in ("apiVersion", "kind"):  # kubernetes-validate pins these; Kubernetes does not
        prop = out.get("properties", {}).get(field)
        if isinstance(prop, dict):
            prop.pop("enum", None)
    return out


def _parameter(p: dict[str, Any]) -> dict[str, Any]:
    out = {k: p[k] for k in ("description", "in", "name", "required") if k in p}
    sub = p.get("schema") or {}
    for key in ("type", "uniqueItems"):
        if key in sub:
            out[key] = sub[key]
    return out


def _operation(op: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    body = op.get("requestBody")
    if body:
        out["consumes"] = sorted(body["content"])
    produces: set[str] = set()
    responses: dict[str, Any] = {}
    for code, response in op.get("responses", {}).items():
        r: dict[str, Any] = {"description": response.get("description", "")}
        for media, content in (response.get("content") or {}).items():
            produces.add(media)
            r["schema"] = _schema(content.get("schema", {}))
        responses[code] = r
    if "description" in op:
        out["description"] = op["description"]
    out["operationId"] = op.get("operationId", "")
    params = [_parameter(p) for p in op.get("parameters", [])]
    if body:
        content = next(iter(body["content"].values()))
        params.insert(0, {"in": "body", "name": "body", "required": body.get("required", False),
                          "schema": _schema(content.get("schema", {}))})
    if params:
        out["parameters"] = params
    out["produces"] = sorted(produces)
    out["responses"] = responses
    out["schemes"] = ["https"]
    out["tags"] = op.get("tags", [])
    out.update({k: v for k, v in op.items() if k.startswith("x-")})
    return out


def _v2_paths(paths: dict[str, Any], served: str, kinds: Registry) -> None:
    raw = openapi.openapi_v3_document(served, kinds)
    if raw is None:
        return
    for path, item in json.loads(raw)["paths"].items():
        v2: dict[str, Any] = {}
        for method, op in item.items():
            if method == "parameters":
                v2[method] = [_parameter(p) for p in op]
            else:
                v2[method] = _operation(op)
        paths[path] = v2


@functools.cache
def _builtin_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for served in openapi.served_paths():
        _v2_paths(paths, served, REGISTRY)
    return paths


@functools.cache
def _builtin_definitions() -> dict[str, Any]:
    return {name: _definition(name, node) for name, node in schema.definitions().items()}


def _build(kinds: Registry) -> dict[str, Any]:
    paths = dict(_builtin_paths())
    definitions = dict(_builtin_definitions())
    for served in openapi.served_paths(kinds):
        custom = openapi_custom.custom_kinds(kinds, served)
        if custom is None:
            continue
        _v2_paths(paths, served, kinds)
        for rt in custom:
            definitions[rt.schema_ref] = _schema(openapi_custom.custom_schema(rt, v2=True))
            definitions[rt.schema_ref + "List"] = _schema(
                openapi_custom.custom_list_schema(rt))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": dict(sorted(paths.items())),
        "definitions": dict(sorted(definitions.items())),
        "securityDefinitions": {"BearerToken": {
            "description": "Bearer Token authentication", "type": "apiKey",
            "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }


class _Document:
    """One kinds registry's document at one generation, and its encodings (made on
    first use)."""

    def __init__(self, kinds: Registry) -> None:
        self.generation = kinds.generation
        self.swagger = _build(kinds)

    @functools.cached_property
    def json(self) -> bytes:
        return json.dumps(self.swagger, separators=(",", ":")).encode()

    @functools.cached_property
    def protobuf(self) -> bytes:
        return _encode("Document", self.swagger)

    @functools.cached_property
    def etag(self) -> str:
        return hashlib.sha512(self.json).hexdigest().upper()


# per kinds registry: its document, built again once a definition changes what is
# served (the registry's generation), so kubectl validates custom kinds in a List
_DOCUMENTS: weakref.WeakKeyDictionary[Registry, _Document] = weakref.WeakKeyDictionary()


def _document(kinds: Registry) -> _Document:
    doc = _DOCUMENTS.get(kinds)
    if doc is None or doc.generation != kinds.generation:
        doc = _DOCUMENTS[kinds] = _Document(kinds)
    return doc


def swagger_document(kinds: Registry = REGISTRY) -> dict[str, Any]:
    """The whole Swagger 2.0 document (read-only: callers must not mutate)."""
    return _document(kinds).swagger


# ------------------------------------------------------------ gnostic protobuf writer

# message -> JSON key -> (field number, type). Types: "s" string, "[s]" repeated string,
# "b" bool, "i" int64, "d" double, "any" / "[any]" a value as YAML, a message name,
# "[M]" repeated message, "{M}" a JSON object as a repeated Named<M> (name=1, value=2).
# Keys starting with "x-" go to the message's "x-" entry (repeated NamedAny).
_MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    "Document": {"swagger": (1, "s"), "info": (2, "Info"), "paths": (8, "Paths"),
                 "definitions": (9, "Definitions"), "security": (12, "[SecurityRequirement]"),
                 "securityDefinitions": (13, "SecurityDefinitions"), "x-": (16, "")},
    "Info": {"title": (1, "s"), "version": (2, "s"), "description": (3, "s"), "x-": (7, "")},
    "Paths": {"x-": (1, ""), "*": (2, "PathItem")},
    "PathItem": {"get": (2, "Operation"), "put": (3, "Operation"), "post": (4, "Operation"),
                 "delete": (5, "Operation"), "options": (6, "Operation"),
                 "head": (7, "Operation"), "patch": (8, "Operation"),
                 "parameters": (9, "[ParametersItem]"), "x-": (10, "")},
    "Operation": {"tags": (1, "[s]"), "summary": (2, "s"), "description": (3, "s"),
                  "operationId": (5, "s"), "produces": (6, "[s]"), "consumes": (7, "[s]"),
                  "parameters": (8, "[ParametersItem]"), "responses": (9, "Responses"),
                  "schemes": (10, "[s]"), "deprecated": (11, "b"), "x-": (13, "")},
    "Responses": {"*": (1, "ResponseValue"), "x-": (2, "")},
    "Response": {"description": (1, "s"), "schema": (2, "SchemaItem"), "x-": (5, "")},
    "BodyParameter": {"description": (1, "s"), "name": (2, "s"), "in": (3, "s"),
                      "required": (4, "b"), "schema": (5, "Schema"), "x-": (6, "")},
    # Query- and PathParameterSubSchema share these numbers up to `name`; `type` differs
    "QueryParameterSubSchema": {"required": (1, "b"), "in": (2, "s"), "description": (3, "s"),
                                "name": (4, "s"), "type": (6, "s"), "format": (7, "s"),
                                "uniqueItems": (20, "b"), "x-": (23, "")},
    "PathParameterSubSchema": {"required": (1, "b"), "in": (2, "s"), "description": (3, "s"),
                               "name": (4, "s"), "type": (5, "s"), "format": (6, "s"),
                               "uniqueItems": (19, "b"), "x-": (22, "")},
    "Schema": {"$ref": (1, "s"), "format": (2, "s"), "title": (3, "s"),
               "description": (4, "s"), "default": (5, "any"), "multipleOf": (6, "d"),
               "maximum": (7, "d"), "exclusiveMaximum": (8, "b"), "minimum": (9, "d"),
               "exclusiveMinimum": (10, "b"), "maxLength": (11, "i"), "minLength": (12, "i"),
               "pattern": (13, "s"), "maxItems": (14, "i"), "minItems": (15, "i"),
               "uniqueItems": (16, "b"), "maxProperties": (17, "i"),
               "minProperties": (18, "i"), "required": (19, "[s]"), "enum": (20, "[any]"),
               "additionalProperties": (21, "AdditionalPropertiesItem"),
               "type": (22, "TypeItem"), "items": (23, "ItemsItem"), "allOf": (24, "[Schema]"),
               "properties": (25, "Properties"), "readOnly": (27, "b"),
               "example": (30, "any"), "x-": (31, "")},
    "Properties": {"*": (1, "Schema")},
    "Definitions": {"*": (1, "Schema")},
    "SecurityDefinitions": {"*": (1, "SecurityDefinitionsItem")},
    "ApiKeySecurity": {"type": (1, "s"), "name": (2, "s"), "in": (3, "s"),
                       "description": (4, "s"), "x-": (5, "")},
    "SecurityRequirement": {"*": (1, "StringArray")},
}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64s as ten bytes, like Go
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _any(value: Any) -> bytes:
    """gnostic's Any: the value as YAML text (field 2)."""
    return _bytes(2, json.dumps(value, ensure_ascii=False).encode())


def _named(name: str, value: bytes) -> bytes:
    return _bytes(1, name.encode()) + _bytes(2, value)


def _special(message: str, value: Any) -> bytes | None:
    """The messages that are a oneof or a wrapper rather than a JSON object."""
    if message == "TypeItem":
        return b"".join(_bytes(1, t.encode()) for t in ([value] if isinstance(value, str)
                                                          else value))
    if message == "StringArray":
        return b"".join(_bytes(1, s.encode()) for s in value)
    if message == "ItemsItem":
        return _bytes(1, _encode("Schema", value))
    if message == "AdditionalPropertiesItem":
        if isinstance(value, bool):  # a oneof member: written even when false
            return _tag(2, 0) + _varint(int(value))
        return _bytes(1, _encode("Schema", value))
    if message == "SchemaItem":
        return _bytes(1, _encode("Schema", value))
    if message == "ResponseValue":
        return _bytes(1, _encode("Response", value))
    if message == "SecurityDefinitionsItem":
        return _bytes(2, _encode("ApiKeySecurity", value))
    if message == "ParametersItem":  # -> Parameter -> body or non-body (query/path)
        if value.get("in") == "body":
            parameter = _bytes(1, _encode("BodyParameter", value))
        else:
            sub, number = {"path": ("PathParameterSubSchema", 4)}.get(
                value.get("in", ""), ("QueryParameterSubSchema", 3))
            parameter = _bytes(2, _bytes(number, _encode(sub, value)))
        return _bytes(1, parameter)
    return None


def _bool(number: int, value: bool) -> bytes:
    return _tag(number, 0) + b"\x01" if value else b""


def _field(number: int, typ: str, value: Any) -> bytes:
    if typ.startswith("["):
        inner = typ[1:-1]
        return b"".join(_field(number, inner, v) for v in value)
    if typ == "s":
        return _bytes(number, str(value).encode()) if value != "" else b""
    if typ == "b":
        return _bool(number, bool(value))
    if typ == "i":
        return _tag(number, 0) + _varint(int(value)) if value else b""
    if typ == "d":
        return _tag(number, 1) + struct.pack("<d", float(value)) if value else b""
    if typ == "any":
        return _bytes(number, _any(value))
    return _bytes(number, _encode(typ, value))


def _encode(message: str, value: Any) -> bytes:
    special = _special(message, value)
    if special is not None:
        return special
    fields = _MESSAGES[message]
    out = bytearray()
    extensions = bytearray()
    for key, item in value.items():
        if key.startswith("x-") and "x-" in fields:
            extensions += _bytes(fields["x-"][0], _named(key, _any(item)))
        elif "*" in fields:  # a map: every key is a name
            number, typ = fields["*"]
            out += _bytes(number, _named(key, _encode(typ, item)))
        elif key in fields:
            number, typ = fields[key]
            out += _field(number, typ, item)
        # anything else has no place in gnostic's message and is left out, as gnostic does
    return bytes(out + extensions)


def document_json(kinds: Registry = REGISTRY) -> bytes:
    return _document(kinds).json


def document_protobuf(kinds: Registry = REGISTRY) -> bytes:
    return _document(kinds).protobuf


# (subtype asked for, content type answered): kube-openapi answers both spellings of the
# protobuf type with the one Go's mime parser accepts ('@' is not a token character)
_ACCEPTED = (("json", "application/json"),
             ("com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
             ("com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF))


def negotiate(accept: str, kinds: Registry = REGISTRY) -> tuple[bytes, str] | None:
    """(body, Content-Type) for an Accept header, as kube-openapi chooses: the clauses by
    falling quality, the first one matching JSON or protobuf wins (`*/*` is JSON); None
    when nothing matches (406)."""
    clauses: list[tuple[float, int, str, str]] = []
    for i, clause in enumerate((accept or "*/*").split(",")):
        media, _, params = clause.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        main, _, sub = media.strip().partition("/")
        clauses.append((-quality, i, main, sub))
    for _, _, main, sub in sorted(clauses):
        for subtype, content_type in _ACCEPTED:
            if main in ("application", "*") and sub in (subtype, "*"):
                doc = _document(kinds)
                body = doc.json if subtype == "json" else doc.protobuf
                return body, content_type
    return None


def etag(kinds: Registry = REGISTRY) -> str:
    """The quoted uppercase hex SHA-512 of the JSON document; the protobuf shares it
    (the answer varies by Accept), as in kube-apiserver."""
    return '"' + _document(kinds).etag + '"'
