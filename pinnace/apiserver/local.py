"""The in-process transport: components living in the API server's process reach the
API through the very same handlers, admission and validation, without the socket,
TLS and HTTP parsing.

It satisfies `pinnace.client.transport.Transport` structurally (the apiserver may
not import the client package). Requests run the `ResourceHandlers` on a small
stand-in for aiohttp's request; watches read the watch cache directly. Answers to
requests are private copies. Watch events hand out the watch cache's own objects,
shared, not copied: the cache never changes an object in place (a new version is a new
object), and informers and their components treat cached objects as read-only, so an
in-process informer costs no decode per event and no second copy of every object
(10,000 pods: ~220 MB).

Without a `user` the caller is trusted (the cluster admin, no RBAC check). With one,
each request is authorized by RBAC exactly as the HTTPS middleware does (403 Status
when denied) and the registry's write checks (RBAC escalation) see that user, so a
component can run in-process under its own identity.

With an audit policy (`registry.audit_log`), each request is logged through the same
`audit.AuditEvent` as an HTTPS one, before it is authorized (refusals are logged too):
as its user (a trusted caller as `system:apiserver`, kube-apiserver's own loopback
user), sourceIPs 127.0.0.1, the component's userAgent. Without one it costs an
attribute read per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from pinnace.api import errors
from pinnace.api.patch import copy_json
from pinnace.apiserver import discovery, rbac
from pinnace.apiserver.audit import AuditEvent
from pinnace.apiserver.auth import AUTHENTICATED, USER_KEY, User
from pinnace.apiserver.component_policy import user_agent
from pinnace.apiserver.handlers import ResourceHandlers, parse_path
from pinnace.apiserver.registry import ObjectRegistry
from pinnace.apiserver.watch import OBJECT_EVENTS, WatchOptions, watch_batches

log = logging.getLogger(__name__)

_NOT_FOUND = errors.ApiError(404, "NotFound", "the server could not find the requested resource")
# who a trusted in-process caller is in the audit log: kube-apiserver's loopback user
LOOPBACK = User("system:apiserver", ("system:masters", AUTHENTICATED))
_SOURCE_IPS = ["127.0.0.1"]


class _Request:
    """What the resource handlers read of an aiohttp request."""

    def __init__(self, method: str, path: str, params: Mapping[str, str] | None,
                 body: bytes, content_type: str) -> None:
        self.method = method
        self.path = path
        self.query = MultiDictProxy(MultiDict(params or {}))
        self.headers = CIMultiDictProxy(CIMultiDict({
            "Content-Type": content_type, "Accept": "application/json",
            "User-Agent": "pinnace"}))
        self.match_info = {"tail": path.split("/", 2)[2] if path.count("/") >= 2 else ""}
        self._body = body
        self._state: dict[Any, Any] = {}

    async def read(self) -> bytes:
        return self._body

    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)  # no user: a trusted in-process caller

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value


class LocalTransport:
    def __init__(self, registry: ObjectRegistry, *, user: User | None = None) -> None:
        self.registry = registry
        self.handlers = ResourceHandlers(registry)
        self.user = user
        self._authz = rbac.RBACAuthorizer(registry) if user is not None else None
        self.user_agent = user_agent(user)

    def _audit(self, method: str, path: str, params: Mapping[str, str] | None,
               body: Any) -> AuditEvent | None:
        """The request's audit Event (RequestReceived written), None without a policy or
        when the policy logs nothing of it."""
        audit_log = self.registry.audit_log
        if audit_log is None:
            return None
        ev = AuditEvent.decide(audit_log, self.user or LOOPBACK, method, path, params or {})
        if ev is None:
            return None
        uri = f"{path}?{urlencode(params)}" if params else path
        ev.receive(request_uri=uri, source_ips=list(_SOURCE_IPS), user_agent=self.user_agent,
                   body=body)
        ev.emit("RequestReceived")
        return ev

    def _request(self, method: str, path: str, params: Mapping[str, str] | None,
                 body: bytes, content_type: str) -> _Request:
        """The stand-in request, authorized as the HTTPS middleware would (ApiError 403)."""
        req = _Request(method, path, params, body, content_type)
        if self.user is not None:
            assert self._authz is not None
            attrs = rbac.request_attributes(self.user, method, path, req.query)
            allowed, reason = self._authz.authorize(attrs)
            if not allowed:
                err = rbac.forbidden(attrs, reason)
                # a component refused is a bug in its role (or a node reaching too far)
                log.warning("in-process request refused: %s %s: %s", method, path,
                            err.status().get("message"))
                raise err
            req[USER_KEY] = self.user
        return req

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      ) -> tuple[int, Any]:
        # A socket would let other tasks run here; so must we, or a component that retries
        # a request answered from memory could starve the informers it waits on.
        await asyncio.sleep(0)
        raw = b"" if body is None else json.dumps(body).encode()
        ev = self._audit(method, path, params, body)
        try:
            req = self._request(method, path, params, raw, content_type)
            found = self._discovery(path) if method == "GET" else None
            if found is not None:
                if ev is not None:
                    ev.complete(200, response=found)
                return 200, found
            if path.startswith("/api/"):
                resp = await self.handlers.core(req)  # type: ignore[arg-type]
            elif path.startswith("/apis/"):
                resp = await self.handlers.named(req)  # type: ignore[arg-type]
            else:
                raise _NOT_FOUND
        except errors.ApiError as e:
            if ev is not None:
                ev.complete(e.code, status=e.status())
            return e.code, e.status()
        except Exception:
            if ev is not None:  # what the HTTPS side answers with a 500
                ev.complete(500)
            raise
        payload = getattr(resp, "body", None)
        result = json.loads(payload) if payload else None
        if ev is not None:
            ev.complete(resp.status, response=result)
        return resp.status, result

    def _discovery(self, path: str) -> dict[str, Any] | None:
        """The legacy discovery documents components read (`/apis`, `/apis/<g>/<v>`): the
        kinds served now, custom resources included."""
        parts = path.strip("/").split("/")
        if parts == ["apis"]:
            return discovery.api_group_list(self.registry.kinds)
        if len(parts) == 3 and parts[0] == "apis":
            return discovery.api_resource_list(parts[1], parts[2], self.registry.kinds)
        return None

    async def stream(self, path: str, params: Mapping[str, str]
                     ) -> AsyncIterator[tuple[int, Any]]:
        ev = self._audit("GET", path, params, None)
        try:
            req = self._request("GET", path, params, b"", "application/json")
            segments = req.match_info["tail"].split("/")
            if path.startswith("/api/"):
                if segments[0] != "v1":
                    raise _NOT_FOUND
                target = parse_path(self.registry.kinds, "", "v1", segments[1:])
            else:
                target = parse_path(self.registry.kinds, segments[0], segments[1],
                                    segments[2:])
            if target.name is not None or target.subresource:
                raise _NOT_FOUND
            opts = WatchOptions.from_query(req.query, target.rt)
        except errors.ApiError as e:
            if ev is not None:
                ev.complete(e.code, status=e.status())
            yield e.code, e.status()
            return
        cache = self.registry.cache(target.rt)
        events = watch_batches(cache, target.rt, target.namespace, opts)
        if ev is not None:
            ev.started(200)  # where the HTTPS watch sends its headers
        try:
            async for batch in events:
                for ev_type, obj in batch:
                    # the cache's objects are immutable: shared (BOOKMARK and ERROR
                    # bodies are made per watch and copied)
                    shared = obj if ev_type in OBJECT_EVENTS else copy_json(obj)
                    yield 200, {"type": ev_type, "object": shared}
        finally:
            await events.aclose()
            if ev is not None:
                ev.complete(200)

    async def close(self) -> None:
        return None
