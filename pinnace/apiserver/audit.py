"""The audit log: Kubernetes' `audit.k8s.io/v1` Events, one JSON object a line.

Off unless a policy is given (`--audit-policy-file`, kube-apiserver's `Policy` format);
the log goes to `DATA_DIR/audit.log` or `--audit-log-path`, mode 0600 (a Request-level
entry may hold a Secret's data). A policy's rules are tried in order and the first
that matches a request decides its level: a rule matches when each of its lists that
is set (users, userGroups, verbs, resources — group, resources or `resources/sub` or
`*/sub`, resourceNames —, namespaces, nonResourceURLs with a trailing `*`) names the
request; a request no rule matches is not logged.

    None             nothing
    Metadata         who, what, when, the response code (no bodies)
    Request          and the request's body
    RequestResponse  and the response's body

The stages written are RequestReceived (before the handler runs), ResponseStarted
(long-running requests — watches — once their headers are sent) and ResponseComplete,
less the policy's and the rule's `omitStages`. `docs/audit-policy.yaml` is the example
policy: Secrets, ConfigMaps and token reviews never above Metadata, so their data never
reaches the log.

The middleware runs after authentication (the user is known) and before authorization,
so refused requests (403) are logged too; a request whose credentials are refused
(401) has no user and is not. Components inside the API server's process use the
in-process transport, which has no HTTP middleware: only remote requests are logged.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from aiohttp import web

from pinnace.api import errors
from pinnace.api.timestamps import format_micro_time
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.auth import ANONYMOUS, USER_KEY
from pinnace.apiserver.rbac import Attributes, request_attributes

log = logging.getLogger(__name__)

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
_BODY_LIMIT = 1 << 20  # bodies larger than this are not logged (a bulk apply, a big list)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AuditPolicyError(ValueError):
    """The policy file is not a valid audit.k8s.io/v1 Policy, or the log cannot be
    opened."""


@dataclass(frozen=True)
class Rule:
    level: str
    users: frozenset[str] | None = None
    user_groups: frozenset[str] | None = None
    verbs: frozenset[str] | None = None
    resources: tuple[dict[str, Any], ...] | None = None
    namespaces: frozenset[str] | None = None
    non_resource_urls: tuple[str, ...] | None = None
    omit_stages: frozenset[str] = frozenset()

    def matches(self, a: Attributes) -> bool:
        if self.users is not None and a.user.name not in self.users:
            return False
        if self.user_groups is not None and not self.user_groups & set(a.user.groups):
            return False
        if self.verbs is not None and a.verb not in self.verbs:
            return False
        if self.resources is None and self.namespaces is None and \
                self.non_resource_urls is None:
            return True
        if not a.resource_request:
            return self.non_resource_urls is not None and any(
                a.path == u or (u.endswith("*") and a.path.startswith(u[:-1]))
                for u in self.non_resource_urls)
        if self.namespaces is not None and a.namespace not in self.namespaces:
            return False
        if self.resources is not None:
            return any(_resource_matches(r, a) for r in self.resources)
        return self.non_resource_urls is None


def _resource_matches(r: dict[str, Any], a: Attributes) -> bool:
    if r.get("group", "") != a.api_group and r.get("group") != "*":
        return False
    names = r.get("resources") or []
    full = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if names and not any(n in ("*", full) or (n == f"*/{a.subresource}" and a.subresource)
                         or (n == f"{a.resource}/*" and a.subresource) for n in names):
        return False
    return not r.get("resourceNames") or a.name in r["resourceNames"]


def _set(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuditPolicyError(f"{where}: a list of strings")
    return frozenset(value)


def _stages(value: Any, where: str) -> frozenset[str]:
    stages = _set(value, where) or frozenset()
    for s in stages - set(STAGES):
        raise AuditPolicyError(f"{where}: unknown stage {s!r}")
    return stages


@dataclass
class Policy:
    rules: list[Rule]
    omit_stages: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise AuditPolicyError(f"{path}: {e}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "Policy" or \
                doc.get("apiVersion") not in ("audit.k8s.io/v1", "audit.k8s.io/v1beta1"):
            raise AuditPolicyError(f"{path}: not an audit.k8s.io/v1 Policy")
        rules = []
        for i, r in enumerate(doc.get("rules") or []):
            at = f"{path}: rules[{i}]"
            if not isinstance(r, dict) or r.get("level") not in LEVELS:
                raise AuditPolicyError(f"{at}.level: one of {', '.join(LEVELS)}")
            res = r.get("resources")
            if res is not None and not (isinstance(res, list) and
                                        all(isinstance(x, dict) for x in res)):
                raise AuditPolicyError(f"{at}.resources: a list of GroupResources")
            urls = r.get("nonResourceURLs")
            rules.append(Rule(
                level=r["level"], users=_set(r.get("users"), f"{at}.users"),
                user_groups=_set(r.get("userGroups"), f"{at}.userGroups"),
                verbs=_set(r.get("verbs"), f"{at}.verbs"),
                resources=tuple(res) if res is not None else None,
                namespaces=_set(r.get("namespaces"), f"{at}.namespaces"),
                non_resource_urls=tuple(_set(urls, f"{at}.nonResourceURLs") or ())
                if urls is not None else None,
                omit_stages=_stages(r.get("omitStages"), f"{at}.omitStages")))
        return cls(rules, _stages(doc.get("omitStages"), f"{path}: omitStages"))

    def decide(self, a: Attributes) -> tuple[str, frozenset[str]]:
        """(level, stages omitted) of a request."""
        for rule in self.rules:
            if rule.matches(a):
                return rule.level, self.omit_stages | rule.omit_stages
        return "None", frozenset()


class AuditLog:
    """A JSON-lines file of audit Events, written as requests pass."""

    def __init__(self, policy: Policy, path: Path) -> None:
        self.policy = policy
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise AuditPolicyError(f"{path}: {e.strerror}") from None
        os.fchmod(fd, 0o600)
        self._file: TextIO = os.fdopen(fd, "a", buffering=1)  # a line at a time

    def close(self) -> None:
        self._file.close()

    def write(self, event: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        except (OSError, ValueError) as e:  # a full disk must not fail the request
            log.warning("writing the audit log failed: %s", e)


_AUDIT = web.RequestKey("audit", dict)
_LOG = web.AppKey("audit_log", AuditLog)


def _object_ref(a: Attributes, body: Any) -> dict[str, Any] | None:
    if not a.resource_request:
        return None
    ref: dict[str, Any] = {"resource": a.resource}
    if a.namespace:
        ref["namespace"] = a.namespace
    name = a.name or (isinstance(body, dict) and (body.get("metadata") or {}).get("name"))
    if name:
        ref["name"] = name
    if a.api_group:
        ref["apiGroup"] = a.api_group
    ref["apiVersion"] = a.api_version
    if a.subresource:
        ref["subresource"] = a.subresource
    return ref


def _json_body(data: bytes, content_type: str | None = "application/json") -> Any:
    """A body as data (JSON, YAML or protobuf, as the handlers decode it), None if it is
    empty, too large or not decodable (the handler answers that with a 400)."""
    if not data or len(data) > _BODY_LIMIT:
        return None
    try:
        return neg.decode_body(data, content_type)
    except (errors.ApiError, ValueError):
        return None


def _emit(audit: AuditLog, event: dict[str, Any], stage: str) -> None:
    if stage in event["_omit"]:
        return
    out = {k: v for k, v in event.items() if not k.startswith("_")}
    out["stage"] = stage
    out["stageTimestamp"] = format_micro_time()
    audit.write(out)


def audit_middleware(audit: AuditLog):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = request.get(USER_KEY) or ANONYMOUS
        a = request_attributes(user, request.method, request.path, request.query)
        level, omit = audit.policy.decide(a)
        if level == "None":
            return await handler(request)
        body = None
        if request.can_read_body and (level != "Metadata" or a.verb == "create"):
            # aiohttp keeps the body for the handler
            body = _json_body(await request.read(), request.headers.get("Content-Type"))
        event: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level,
            "auditID": str(uuid.uuid4()), "requestURI": request.path_qs, "verb": a.verb,
            "user": {"username": user.name, "groups": list(user.groups),
                     **({"uid": user.uid} if user.uid else {})},
            "sourceIPs": [request.remote or ""],
            "userAgent": request.headers.get("User-Agent", ""),
            "requestReceivedTimestamp": format_micro_time(), "_omit": omit}
        if (ref := _object_ref(a, body)) is not None:
            event["objectRef"] = ref
        if level in ("Request", "RequestResponse") and body is not None:
            event["requestObject"] = body
        _emit(audit, event, "RequestReceived")
        request[_AUDIT] = event
        try:
            response = await handler(request)
        except errors.ApiError as e:
            event["responseStatus"] = {k: v for k, v in e.status().items()
                                       if k in ("metadata", "status", "message", "reason",
                                                "code")}
            _emit(audit, event, "ResponseComplete")
            raise
        except web.HTTPException as e:
            event["responseStatus"] = {"metadata": {}, "code": e.status}
            _emit(audit, event, "ResponseComplete")
            raise
        except Exception:
            event["responseStatus"] = {"metadata": {}, "code": 500}
            _emit(audit, event, "ResponseComplete")
            raise
        event["responseStatus"] = {"metadata": {}, "code": response.status}
        if level == "RequestResponse" and isinstance(response, web.Response) and \
                response.body is not None and isinstance(response.body, bytes):
            if (obj := _json_body(response.body)) is not None:
                event["responseObject"] = obj
        _emit(audit, event, "ResponseComplete")
        return response
    return middleware


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """ResponseStarted, for watches: their headers go out long before they complete."""
    event = request.get(_AUDIT)
    if event is not None and event["verb"] == "watch" and _LOG in request.app:
        event_now = {**event, "responseStatus": {"metadata": {}, "code": response.status}}
        _emit(request.app[_LOG], event_now, "ResponseStarted")


def install(app: web.Application, audit: AuditLog) -> None:
    """Log app's requests to audit (the middleware is placed by `build_app`)."""
    app[_LOG] = audit
    app.on_response_prepare.append(on_response_prepare)
