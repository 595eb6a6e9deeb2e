"""Request and response formats: body decoding, Accept negotiation, query options.

Kubernetes speaks JSON (and, on the way in, YAML and the Kubernetes protobuf that
`pinnace.api.protobuf` decodes); clients ask for Table or PartialObjectMetadata
renderings through parameters of the Accept header, e.g.
`application/json;as=Table;v=v1;g=meta.k8s.io`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from pinnace.api import errors, protobuf

MAX_BODY = 3 * 1024 * 1024  # Kubernetes' request size limit

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}


@dataclass(frozen=True)
class Rendering:
    """What the client asked to get back."""

    as_kind: str = ""  # "", "Table", "PartialObjectMetadata", "PartialObjectMetadataList"
    include_object: str = "Metadata"


def _params(media: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in media.split(";")]
    params = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k.strip().lower()] = v.strip()
    return parts[0].lower(), params


def negotiate(accept: str | None, include_object: str | None = None) -> Rendering:
    """Pick the first media range in Accept that we can produce."""
    if not accept:
        return Rendering()
    acceptable = False
    for media in accept.split(","):
        mtype, params = _params(media)
        if mtype not in ("application/json", "application/*", "*/*", "application/yaml"):
            continue
        acceptable = True
        as_kind = params.get("as", "")
        if not as_kind:
            return Rendering()
        if params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1") and \
                as_kind in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
            return Rendering(as_kind, include_object or "Metadata")
    if acceptable:
        return Rendering()
    raise errors.not_acceptable(
        f"only the following media types are accepted: application/json, application/yaml; "
        f"got {accept!r}")


BODY_TYPES = ("application/json", "application/yaml", protobuf.MEDIA_TYPE)


def decode_body(raw: bytes, content_type: str | None) -> Any:
    """A request body as JSON data (YAML and Kubernetes protobuf accepted); 400 with the
    parse error if it does not parse, 415 for other media types."""
    if len(raw) > MAX_BODY:
        raise errors.too_large()
    mtype = (content_type or "application/json").split(";")[0].strip().lower()
    if mtype == protobuf.MEDIA_TYPE:
        return protobuf.decode(raw)
    if "protobuf" in mtype or "cbor" in mtype:
        raise errors.ApiError(415, "UnsupportedMediaType",
                              f"the body of the request was in an unknown format - accepted "
                              f"media types include: {', '.join(BODY_TYPES)}; got {mtype!r}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.bad_request("couldn't get version/kind; json parse error: the body is "
                                 "not UTF-8") from None
    if not text.strip():
        raise errors.bad_request("couldn't get version/kind; json parse error: unexpected end "
                                 "of JSON input")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        json_error = e
    if mtype.endswith("json") and mtype not in ("application/json",):
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {json_error}")
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise errors.bad_request(
            f"couldn't get version/kind; json parse error: {json_error}; yaml: "
            f"{str(e).splitlines()[0] if str(e) else 'invalid'}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict | list):
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {json_error}")
    return _jsonable(docs[0])


def _jsonable(v: Any) -> Any:
    """YAML decodes timestamps and other types JSON does not have; make it JSON again."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def dump_status(status: dict[str, Any]) -> bytes:
    """A Status body as kube-apiserver writes it: Go's json.Encoder ends it with a newline,
    and clients (the official Python client's tests among them) compare the bytes."""
    return dump(status) + b"\n"


def query_bool(value: str | None) -> bool:
    """A boolean query parameter as Kubernetes decodes it: absent, "false" and "0" are
    false, any other value (also "") is true."""
    return value is not None and value.lower() not in ("false", "0")


def query_int(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {value!r} is not an integer",
                                 [errors.Cause(name, "must be an integer")]) from None


def field_validation(query: Any) -> str:
    value = query.get("fieldValidation", "")
    if value == "":
        return "Warn"
    canonical = {"strict": "Strict", "warn": "Warn", "ignore": "Ignore"}.get(value.lower())
    if canonical is None:
        raise errors.bad_request(
            f"fieldValidation {value} is invalid, valid values are: Ignore, Warn, Strict")
    return canonical


def dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f"Invalid dryRun value: {v!r}: supported values: \"All\"",
                                     [errors.Cause("dryRun", "Unsupported value")])
    return bool(values)


def default_field_manager(user_agent: str | None) -> str:
    """Kubernetes derives the manager from the User-Agent's product, up to the '/'."""
    if not user_agent:
        return "unknown"
    return user_agent.split("/")[0][:128] or "unknown"
