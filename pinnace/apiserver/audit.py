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

The middleware runs after authentication (the user is known) and before impersonation
and authorization, as kube-apiserver's does: refused requests (403) are logged too, and
an impersonated request is logged as its caller (`user`, which the policy decides on)
with `impersonatedUser` at ResponseComplete. A request whose credentials are refused
(401) is logged as kube-apiserver logs it: one ResponseStarted Event, empty user.
Components inside the API server's process (local.py's in-process transport) are logged
through the same `AuditEvent` as remote clients, as the users they act as, with
sourceIPs 127.0.0.1 and their component's userAgent.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from aiohttp import web

from pinnace.api import errors
from pinnace.api.timestamps import format_micro_time
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.auth import ANONYMOUS, USER_KEY, User
from pinnace.apiserver.rbac import Attributes, request_attributes

log = logging.getLogger(__name__)

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
_BODY_LIMIT = 1 << 20  # bodies larger than this are not logged (a bulk apply, a big list)
NOBODY = User("")  # who a request whose credentials were refused is: no one

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


_AUDIT = web.RequestKey("audit", object)
_LOG = web.AppKey("audit_log", AuditLog)
_STATUS_FIELDS = ("metadata", "status", "message", "reason", "code")


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


def _user_info(user: User) -> dict[str, Any]:
    """authentication.k8s.io UserInfo as Go writes it: empty fields left out (a request
    whose credentials were refused has `{}`)."""
    info: dict[str, Any] = {}
    if user.name:
        info["username"] = user.name
    if user.uid:
        info["uid"] = user.uid
    if user.groups:
        info["groups"] = list(user.groups)
    return info


class AuditEvent:
    """One request's Event, written at each stage its policy keeps. The one place an
    Event is built: the HTTPS middleware and the in-process transport both use it."""

    __slots__ = ("_attrs", "_log", "_omit", "fields", "level")

    def __init__(self, audit: AuditLog, a: Attributes, level: str,
                 omit: frozenset[str]) -> None:
        self._log = audit
        self._attrs = a
        self._omit = omit
        self.level = level
        self.fields: dict[str, Any] = {}

    @classmethod
    def decide(cls, audit: AuditLog, user: User, method: str, path: str,
               query: Mapping[str, str]) -> AuditEvent | None:
        """The Event for a request by `user`, None if the policy logs nothing of it."""
        a = request_attributes(user, method, path, query)
        level, omit = audit.policy.decide(a)
        return None if level == "None" else cls(audit, a, level, omit)

    @property
    def verb(self) -> str:
        return self._attrs.verb

    @property
    def wants_request_body(self) -> bool:
        # a create names its object in the body only: objectRef needs it even at Metadata
        return self.level != "Metadata" or self._attrs.verb == "create"

    @property
    def wants_response_body(self) -> bool:
        return self.level == "RequestResponse"

    def receive(self, *, request_uri: str, source_ips: list[str], user_agent: str,
                body: Any = None) -> None:
        """Fill in what is known when the request arrives (`body`: its decoded object)."""
        a = self._attrs
        self.fields = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": self.level,
            "auditID": str(uuid.uuid4()), "requestURI": request_uri, "verb": a.verb,
            "user": _user_info(a.user), "sourceIPs": source_ips, "userAgent": user_agent,
            "requestReceivedTimestamp": format_micro_time()}
        if (ref := _object_ref(a, body)) is not None:
            self.fields["objectRef"] = ref
        if self.level in ("Request", "RequestResponse") and body is not None:
            self.fields["requestObject"] = body

    def emit(self, stage: str) -> None:
        if stage in self._omit:
            return
        self._log.write({**self.fields, "stage": stage,
                         "stageTimestamp": format_micro_time()})

    def started(self, code: int) -> None:
        """ResponseStarted: a long-running request (a watch) has sent its headers."""
        self.fields["responseStatus"] = {"metadata": {}, "code": code}
        self.emit("ResponseStarted")

    def complete(self, code: int, *, status: Mapping[str, Any] | None = None,
                 response: Any = None, served_as: User | None = None) -> None:
        """ResponseComplete with the response code (and the Status of a refusal, and the
        response's object at RequestResponse); `served_as`: the user the request ran as,
        when impersonation made it someone else."""
        if served_as is not None and served_as is not self._attrs.user:
            self.fields["impersonatedUser"] = _user_info(served_as)
        self.fields["responseStatus"] = (
            {k: v for k, v in status.items() if k in _STATUS_FIELDS} if status is not None
            else {"metadata": {}, "code": code})
        if response is not None and self.wants_response_body:
            self.fields["responseObject"] = response
        self.emit("ResponseComplete")


def audit_middleware(audit: AuditLog):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = request.get(USER_KEY) or ANONYMOUS
        ev = AuditEvent.decide(audit, user, request.method, request.path, request.query)
        if ev is None:
            return await handler(request)
        body = None
        if request.can_read_body and ev.wants_request_body:
            # aiohttp keeps the body for the handler
            body = _json_body(await request.read(), request.headers.get("Content-Type"))
        ev.receive(request_uri=request.path_qs, source_ips=[request.remote or ""],
                   user_agent=request.headers.get("User-Agent", ""), body=body)
        ev.emit("RequestReceived")
        request[_AUDIT] = ev
        try:
            response = await handler(request)
        except errors.ApiError as e:
            ev.complete(e.code, status=e.status(), served_as=request.get(USER_KEY))
            raise
        except web.HTTPException as e:
            ev.complete(e.status, served_as=request.get(USER_KEY))
            raise
        except Exception:
            ev.complete(500, served_as=request.get(USER_KEY))
            raise
        obj = None
        if ev.wants_response_body and isinstance(response, web.Response) and \
                isinstance(response.body, bytes):
            obj = _json_body(response.body)
        ev.complete(response.status, response=obj, served_as=request.get(USER_KEY))
        return response
    return middleware


def _attempted(request: web.Request) -> str:
    """Kubernetes' responseStatus message for refused credentials: what was tried."""
    scheme, _, rest = request.headers.get("Authorization", "").strip().partition(" ")
    tried = {"basic": "basic", "bearer": "bearer"}.get(scheme.lower()) if rest else None
    if tried is None:
        return "Authentication failed, no credentials provided"
    return f"Authentication failed, attempted: {tried}"


def failed_authentication_middleware(audit: AuditLog):
    """Placed before authentication: a request answered 401 there has no user, and is
    logged as kube-apiserver logs it — one ResponseStarted Event with an empty user and
    the code, the message naming the credentials tried (RequestReceived never happened:
    the policy had no user to decide on until now)."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.ApiError as e:
            if e.code != 401 or USER_KEY in request:
                raise
            ev = AuditEvent.decide(audit, NOBODY, request.method, request.path,
                                   request.query)
            if ev is not None:
                ev.receive(request_uri=request.path_qs, source_ips=[request.remote or ""],
                           user_agent=request.headers.get("User-Agent", ""))
                ev.fields["responseStatus"] = {"metadata": {}, "message": _attempted(request),
                                               "code": 401}
                ev.emit("ResponseStarted")
            raise
    return middleware


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """ResponseStarted, for watches: their headers go out long before they complete."""
    ev = request.get(_AUDIT)
    if isinstance(ev, AuditEvent) and ev.verb == "watch":
        ev.started(response.status)


def install(app: web.Application, audit: AuditLog) -> None:
    """Log app's requests to audit (the middlewares are placed by `build_app`)."""
    app[_LOG] = audit
    app.on_response_prepare.append(on_response_prepare)
