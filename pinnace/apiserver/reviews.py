"""Self-subject reviews: questions about the caller, answered and never stored.

- `authorization.k8s.io/v1 SelfSubjectAccessReview` (`kubectl auth can-i`): the
  authorizer's verdict on `spec.resourceAttributes` or `spec.nonResourceAttributes`
  for the requesting user → `status.allowed` (and `reason`).
- `authentication.k8s.io/v1 SelfSubjectReview` (`kubectl auth whoami`): the user as
  the server authenticated it → `status.userInfo`.

kubectl sends these as protobuf (`application/vnd.kubernetes.protobuf`), decoded
like every other body by `negotiation.decode_body`. Answers are JSON, which kubectl
accepts.
"""

from __future__ import annotations

from typing import Any

from pinnace.api import errors
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.auth import User
from pinnace.apiserver.rbac import Attributes, RBACAuthorizer


def self_subject_review(user: User) -> dict[str, Any]:
    """The `SelfSubjectReview` answer for `user`."""
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "status": {"userInfo": info}}


def decode_access_review(raw: bytes, content_type: str | None) -> Any:
    """A SelfSubjectAccessReview request body (JSON, YAML or Kubernetes protobuf) as JSON."""
    return neg.decode_body(raw, content_type)


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
