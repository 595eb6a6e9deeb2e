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
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from pinnace.api import errors
from pinnace.api.patch import copy_json
from pinnace.apiserver import rbac
from pinnace.apiserver.auth import USER_KEY, User
from pinnace.apiserver.handlers import ResourceHandlers, parse_path
from pinnace.apiserver.registry import ObjectRegistry
from pinnace.apiserver.watch import OBJECT_EVENTS, WatchOptions, watch_batches

_NOT_FOUND = errors.ApiError(404, "NotFound", "the server could not find the requested resource")


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

    def _request(self, method: str, path: str, params: Mapping[str, str] | None,
                 body: bytes, content_type: str) -> _Request:
        """The stand-in request, authorized as the HTTPS middleware would (ApiError 403)."""
        req = _Request(method, path, params, body, content_type)
        if self.user is not None:
            assert self._authz is not None
            attrs = rbac.request_attributes(self.user, method, path, req.query)
            allowed, reason = self._authz.authorize(attrs)
            if not allowed:
                raise rbac.forbidden(attrs, reason)
            req[USER_KEY] = self.user
        return req

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      ) -> tuple[int, Any]:
        # A socket would let other tasks run here; so must we, or a component that retries
        # a request answered from memory could starve the informers it waits on.
        await asyncio.sleep(0)
        raw = b"" if body is None else json.dumps(body).encode()
        try:
            req = self._request(method, path, params, raw, content_type)
            if path.startswith("/api/"):
                resp = await self.handlers.core(req)  # type: ignore[arg-type]
            elif path.startswith("/apis/"):
                resp = await self.handlers.named(req)  # type: ignore[arg-type]
            else:
                raise _NOT_FOUND
        except errors.ApiError as e:
            return e.code, e.status()
        payload = getattr(resp, "body", None)
        return resp.status, json.loads(payload) if payload else None

    async def stream(self, path: str, params: Mapping[str, str]
                     ) -> AsyncIterator[tuple[int, Any]]:
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
            yield e.code, e.status()
            return
        cache = self.registry.cache(target.rt)
        events = watch_batches(cache, target.rt, target.namespace, opts)
        try:
            async for batch in events:
                for ev_type, obj in batch:
                    # the cache's objects are immutable: shared (BOOKMARK and ERROR
                    # bodies are made per watch and copied)
                    shared = obj if ev_type in OBJECT_EVENTS else copy_json(obj)
                    yield 200, {"type": ev_type, "object": shared}
        finally:
            await events.aclose()

    async def close(self) -> None:
        return None
