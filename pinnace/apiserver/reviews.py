"""Self-subject reviews: questions about the caller, answered and never stored.

- `authorization.k8s.io/v1 SelfSubjectAccessReview` (`kubectl auth can-i`): the
  authorizer's verdict on `spec.resourceAttributes` or `spec.nonResourceAttributes`
  for the requesting user → `status.allowed` (and `reason`).
- `authentication.k8s.io/v1 SelfSubjectReview` (`kubectl auth whoami`): the user as
  the server authenticated it → `status.userInfo`.

kubectl sends these as protobuf (`application/vnd.kubernetes.protobuf`), which the
rest of pinnace does not decode yet; the few string fields a review carries are
read here with a minimal protobuf reader. Answers are JSON, which kubectl accepts.
"""

from __future__ import annotations

from typing import Any

from pinnace.api import errors
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.auth import User
from pinnace.apiserver.rbac import Attributes, RBACAuthorizer

_PROTO_MAGIC = b"k8s\x00"
# field numbers of authorization/v1 ResourceAttributes and NonResourceAttributes
_RESOURCE_FIELDS = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource",
                    6: "subresource", 7: "name"}
_NON_RESOURCE_FIELDS = {1: "path", 2: "verb"}


def self_subject_review(user: User) -> dict[str, Any]:
    """The `SelfSubjectReview` answer for `user`."""
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "status": {"userInfo": info}}


def decode_access_review(raw: bytes, content_type: str | None) -> Any:
    """A SelfSubjectAccessReview request body (JSON, YAML or Kubernetes protobuf) as JSON."""
    mtype = (content_type or "").split(";")[0].strip().lower()
    if mtype != "application/vnd.kubernetes.protobuf":
        return neg.decode_body(raw, content_type)
    try:
        return _access_review_from_protobuf(raw)
    except (IndexError, ValueError, UnicodeDecodeError):
        raise errors.bad_request("the protobuf body of the SelfSubjectAccessReview could "
                                 "not be decoded") from None


def self_subject_access_review(authz: RBACAuthorizer, user: User, body: Any
                               ) -> dict[str, Any]:
    """The `SelfSubjectAccessReview` answer: may `user` do what `body.spec` describes?"""
    if not isinstance(body, dict):
        raise errors.bad_request("SelfSubjectAccessReview must be an object")
    spec = body.get("spec") or {}
    res, non_res = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (res is None) == (non_res is None):
        raise errors.invalid("SelfSubjectAccessReview", "", [errors.Cause(
            "spec.resourceAttributes", 'Invalid value: "null": exactly one of '
            "nonResourceAttributes or resourceAttributes must be specified",
            errors.INVALID)], group="authorization.k8s.io")
    if res is not None:
        attrs = Attributes(user, res.get("verb", ""), True, api_group=res.get("group", ""),
                           api_version=res.get("version", ""),
                           resource=res.get("resource", ""),
                           subresource=res.get("subresource", ""),
                           namespace=res.get("namespace", ""), name=res.get("name", ""))
    else:
        attrs = Attributes(user, non_res.get("verb", ""), False, path=non_res.get("path", ""))
    allowed, reason = authz.authorize(attrs)
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


# -- the protobuf reader: length-delimited fields only, which is all a review carries ------

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> dict[int, bytes]:
    """field number -> bytes of each length-delimited field (scalars skipped)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            size, i = _varint(buf, i)
            out[number] = buf[i:i + size]
            i += size
        elif wire == 0:
            _, i = _varint(buf, i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _strings(buf: bytes, names: dict[int, str]) -> dict[str, str]:
    return {names[n]: v.decode() for n, v in _fields(buf).items() if n in names}


def _access_review_from_protobuf(raw: bytes) -> dict[str, Any]:
    if not raw.startswith(_PROTO_MAGIC):
        raise ValueError("no protobuf envelope")
    # runtime.Unknown: 1 typeMeta, 2 raw; SelfSubjectAccessReview: 2 spec;
    # spec: 1 resourceAttributes, 2 nonResourceAttributes
    review = _fields(_fields(raw[len(_PROTO_MAGIC):]).get(2, b""))
    spec_fields = _fields(review.get(2, b""))
    spec: dict[str, Any] = {}
    if 1 in spec_fields:
        spec["resourceAttributes"] = _strings(spec_fields[1], _RESOURCE_FIELDS)
    if 2 in spec_fields:
        spec["nonResourceAttributes"] = _strings(spec_fields[2], _NON_RESOURCE_FIELDS)
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": spec}
