"""Kubernetes `Status` errors.

Every failure a client can see is an `ApiError`, which renders as a
`meta.k8s.io/v1 Status` with the reason and code Kubernetes uses, and — for
invalid input — `details.causes[]` naming the field path:

    ApiError                      any failure with a Status body
      invalid(kind, name, causes) 422 Invalid     (semantic validation)
      bad_request(msg, causes)    400 BadRequest  (undecodable body, wrong types, strict fields)
      not_found / already_exists / conflict / gone / unauthorized / forbidden / ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


# Cause reasons Kubernetes uses (k8s.io/apimachinery/pkg/util/validation/field).
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TYPE_INVALID = "FieldValueTypeInvalid"
UNKNOWN_FIELD = "FieldValueUnknown"  # not a Kubernetes reason; strict decoding uses no cause


# Reasons whose apimachinery constructors always set Status.details (a pointer in Go), so
# kube-apiserver writes `"details":{}` even with nothing in it — e.g. the 404 for a path
# it does not serve; the others (BadRequest, Unauthorized, Expired, ...) leave it out.
_ALWAYS_DETAILS = frozenset({"NotFound", "AlreadyExists", "Conflict", "Invalid", "Forbidden",
                             "MethodNotAllowed", "Timeout", "ServerTimeout", "InternalError",
                             "TooManyRequests"})


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    causes: list[Cause] = field(default_factory=list)
    name: str = ""
    group: str = ""
    kind: str = ""
    retry_after: int = 0

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        """The Status in metav1.Status' field order, empty fields left out (Go's omitempty):
        clients that compare error bodies as strings see exactly kube-apiserver's bytes."""
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after:
            details["retryAfterSeconds"] = self.retry_after
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure"}
        if self.message:
            out["message"] = self.message
        if self.reason:
            out["reason"] = self.reason
        if details or self.reason in _ALWAYS_DETAILS:
            out["details"] = details
        if self.code:
            out["code"] = self.code
        return out


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                    name=name, group=group, kind=resource)


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                    name=name, group=group, kind=resource)


def conflict(resource: str, name: str, message: str, group: str = "") -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": '
                    f"{message}", name=name, group=group, kind=resource)


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    """422 in Kubernetes' wording: 'Pod "x" is invalid: [f: Required value, ...]'."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}',
                    causes=causes, name=name, group=group, kind=kind)


def bad_request(message: str, causes: list[Cause] | None = None) -> ApiError:
    return ApiError(400, "BadRequest", message, causes=causes or [])


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested "
                       "resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml; got {content_type!r}")


def too_large(message: str = "the request is too large") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", message)


def timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", message)
