"""REST verbs on resources: the HTTP side of the registry.

One catch-all route per API root parses the path into (resource type, namespace,
name, subresource) and dispatches on the method. Reads come from the watch
caches; writes go through `ObjectRegistry`. Every error is an `ApiError`, which
the middleware in `app.py` renders as a Status.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pinnace.api import errors, tables
from pinnace.api.kinds import Registry, ResourceType
from pinnace.apiserver import list_options, subresources
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.auth import USER_KEY
from pinnace.apiserver.list_options import ListOptions, Matcher
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions
from pinnace.apiserver.watch import WatchOptions, serve_watch
from pinnace.store.interface import CompactedError


def custom_printer(rt: ResourceType) -> Any:
    """A custom resource's table printer (its additionalPrinterColumns), else None."""
    return getattr(rt.custom, "printer", None)


@dataclass(frozen=True)
class Target:
    rt: ResourceType
    namespace: str | None  # None: all namespaces (collections) or cluster-scoped
    name: str | None
    subresource: str = ""


def parse_path(kinds: Registry, group: str, version: str, segments: list[str]) -> Target:
    """segments: the path after /api/v1 or /apis/<group>/<version>."""
    nf = errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace = None
    if len(segments) >= 3 and segments[0] == "namespaces" and \
            segments[2] not in ("status", "finalize"):
        namespace = segments[1]
        segments = segments[2:]
        if not namespace:
            raise nf
    if not segments or len(segments) > 3 or any(s == "" for s in segments):
        raise nf
    rt = kinds.by_resource(group, version, segments[0])
    if rt is None or (namespace is not None and not rt.namespaced):
        raise nf
    name = segments[1] if len(segments) > 1 else None
    sub = segments[2] if len(segments) > 2 else ""
    if sub and sub not in rt.subresources:
        raise nf
    if rt.namespaced and name is not None and namespace is None:
        raise nf
    return Target(rt, namespace, name, sub)


class ResourceHandlers:
    def __init__(self, registry: ObjectRegistry) -> None:
        self.registry = registry
        self.kinds = registry.kinds

    async def core(self, request: web.Request) -> web.StreamResponse:
        segments = request.match_info["tail"].split("/")
        if segments[0] != "v1":
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        return await self._dispatch(request, parse_path(self.kinds, "", "v1", segments[1:]))

    async def named(self, request: web.Request) -> web.StreamResponse:
        segments = request.match_info["tail"].split("/")
        if len(segments) < 3:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        group, version = segments[0], segments[1]
        return await self._dispatch(request, parse_path(self.kinds, group, version,
                                                        segments[2:]))

    async def _dispatch(self, request: web.Request, t: Target) -> web.StreamResponse:
        response = await self._serve(request, t)
        warning = getattr(t.rt.custom, "deprecation_warning", None)
        if warning and not response.prepared:  # a deprecated custom resource version
            response.headers.add("Warning", f"299 - {json.dumps(warning)}")
        return response

    async def _serve(self, request: web.Request, t: Target) -> web.StreamResponse:
        method = request.method
        if t.subresource:
            return await subresources.dispatch(self, request, t)
        if t.name is None:
            if method == "GET":
                if neg.query_bool(request.query.get("watch")):
                    return await self.watch(request, t)
                return await self.list(request, t)
            if method == "POST":
                return await self.create(request, t)
            if method == "DELETE":
                return await self.delete_collection(request, t)
        else:
            if method == "GET":
                return self.get(request, t)
            if method == "PUT":
                return await self.update(request, t)
            if method == "PATCH":
                return await self.patch(request, t)
            if method == "DELETE":
                return await self.delete(request, t)
        raise errors.method_not_allowed()

    # -- helpers -------------------------------------------------------------------------

    def respond(self, request: web.Request, obj: dict[str, Any], status: int = 200,
                warnings: list[str] | None = None, rt: ResourceType | None = None,
                ) -> web.Response:
        render = neg.negotiate(request.headers.get("Accept"),
                               request.query.get("includeObject"))
        if render.as_kind == "Table" and rt is not None:
            body: Any = tables.table(rt.kind, rt.group, [obj], printer=custom_printer(rt),
                                     include_object=render.include_object,
                                     resource_version=obj.get("metadata", {}).get(
                                         "resourceVersion", ""))
        elif render.as_kind == "PartialObjectMetadata":
            body = partial_metadata(obj)
        else:
            body = obj
        headers = {"Warning": ", ".join(f'299 - {json.dumps(w)}' for w in warnings)} \
            if warnings else None
        return web.Response(body=neg.dump(body), status=status, headers=headers,
                            content_type="application/json")

    @staticmethod
    def write_options(request: web.Request, *, body_manager: str | None = None,
                      ) -> WriteOptions:
        q = request.query
        manager = q.get("fieldManager") or body_manager or \
            neg.default_field_manager(request.headers.get("User-Agent"))
        if len(manager) > 128:
            raise errors.invalid("PatchOptions", "", [errors.Cause(
                "fieldManager", "Too long: may not be more than 128 bytes", errors.TOO_LONG)])
        return WriteOptions(dry_run=neg.dry_run(q), field_manager=manager,
                            field_validation=neg.field_validation(q),
                            force=neg.query_bool(q.get("force")),
                            user=request.get(USER_KEY))

    async def body(self, request: web.Request) -> Any:
        raw = await request.read()
        return neg.decode_body(raw, request.headers.get("Content-Type"))

    # -- verbs ---------------------------------------------------------------------------

    def get(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        obj = self.registry.get(t.rt, t.namespace, t.name)
        return self.respond(request, obj, rt=t.rt)

    def selection(self, request: web.Request, rt: ResourceType) -> Matcher:
        return list_options.selection(request.query, rt)

    async def list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        o = ListOptions.from_query(q, t.rt, watch=False)
        cache = self.registry.cache(t.rt)
        start_after = ""
        revision = cache.revision
        if o.continue_token:
            start_after, revision = decode_continue(o.continue_token, cache.window_start)
        elif o.revision is not None:
            current = self.registry.store.revision
            if o.revision > current:
                raise too_large_resource_version(o.revision, current)
            if o.resource_version_match == "Exact":
                revision = o.revision
            elif o.revision > cache.revision:
                # not older than what the client has seen: the store has it, so the
                # cache is about to
                with contextlib.suppress(TimeoutError):
                    await cache.wait_for(o.revision)
                revision = cache.revision
        try:
            snapshot = cache.list_at(t.namespace, revision) if revision != cache.revision \
                else cache.list(t.namespace)
        except CompactedError:
            if o.continue_token:
                raise _continue_expired() from None
            raise errors.gone(f"too old resource version: {revision} "
                              f"({cache.window_start})") from None
        matches = o.matches
        items = [obj for obj in snapshot if matches(obj)]
        if start_after:
            items = [obj for obj in items if _sort_key(t.rt, obj) > start_after]
        metadata: dict[str, Any] = {"resourceVersion": str(revision)}
        limit = o.limit
        if limit and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            metadata["continue"] = encode_continue(_sort_key(t.rt, items[-1]), revision)
            metadata["remainingItemCount"] = rest
        render = neg.negotiate(request.headers.get("Accept"), q.get("includeObject"))
        if render.as_kind == "Table":
            body: Any = tables.table(t.rt.kind, t.rt.group, items,
                                     printer=custom_printer(t.rt),
                                     include_object=render.include_object,
                                     resource_version=metadata["resourceVersion"],
                                     continue_token=metadata.get("continue", ""))
            if "remainingItemCount" in metadata:
                body["metadata"]["remainingItemCount"] = metadata["remainingItemCount"]
        elif render.as_kind in ("PartialObjectMetadataList", "PartialObjectMetadata"):
            body = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata, "items": [partial_metadata(o) for o in items]}
        else:  # the objects' bytes come from the watch cache, encoded once per version
            head = neg.dump({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version,
                             "metadata": metadata})
            return web.Response(body=head[:-1] + b',"items":[' + b",".join(
                cache.encoded(o) for o in items) + b"]}", content_type="application/json")
        return web.Response(body=neg.dump(body), content_type="application/json")

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        opts = WatchOptions.from_list_options(
            ListOptions.from_query(request.query, t.rt, watch=True))
        render = neg.negotiate(request.headers.get("Accept"),
                               request.query.get("includeObject"))
        return await serve_watch(request, self.registry.cache(t.rt), t.rt, t.namespace,
                                 opts, render)

    async def create(self, request: web.Request, t: Target) -> web.Response:
        if "create" not in t.rt.verbs:
            raise errors.method_not_allowed()
        body = await self.body(request)
        opts = self.write_options(request)
        if t.rt.kind == "Binding" and t.rt.group == "":
            obj = await subresources.bind(self.registry, t.namespace, None, body, opts)
            return self.respond(request, obj, 201)
        obj = await self.registry.create(t.rt, t.namespace, body, opts)
        return self.respond(request, obj, 201, opts.warnings, t.rt)

    async def update(self, request: web.Request, t: Target, subresource: str = ""
                     ) -> web.Response:
        assert t.name is not None
        body = await self.body(request)
        opts = self.write_options(request)
        obj = await self.registry.update(t.rt, t.namespace, t.name, body, opts,
                                         subresource=subresource)
        return self.respond(request, obj, 200, opts.warnings, t.rt)

    async def patch(self, request: web.Request, t: Target, subresource: str = ""
                    ) -> web.Response:
        assert t.name is not None
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        patch_type = neg.PATCH_TYPES.get(content_type.lower())
        if patch_type is None or patch_type == "unsupported":
            raise errors.unsupported_media_type(content_type)
        raw = await request.read()
        body = neg.decode_body(raw, "application/yaml" if patch_type == "apply"
                               else "application/json")
        opts = self.write_options(request)
        if patch_type != "apply" and request.query.get("force") is not None:
            raise errors.bad_request("force is only allowed for apply patches")
        obj, created = await self.registry.patch(t.rt, t.namespace, t.name, patch_type, body,
                                                 opts, subresource=subresource)
        return self.respond(request, obj, 201 if created else 200, opts.warnings, t.rt)

    async def delete_options(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        options: dict[str, Any] = {}
        if raw.strip():
            decoded = neg.decode_body(raw, request.headers.get("Content-Type"))
            if not isinstance(decoded, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            options = decoded
        q = request.query
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = neg.query_int(q, "gracePeriodSeconds")
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            options["orphanDependents"] = neg.query_bool(q["orphanDependents"])
        grace = options.get("gracePeriodSeconds")
        if grace is not None and not isinstance(grace, int):
            raise errors.bad_request("gracePeriodSeconds must be an integer",
                                     [errors.Cause("gracePeriodSeconds", "must be an integer")])
        return options

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        options = await self.delete_options(request)
        opts = self.write_options(request)
        if options.get("dryRun"):
            opts.dry_run = True
        obj, gone = await self.registry.delete(t.rt, t.namespace, t.name, options, opts)
        if not gone:
            # Kubernetes answers 202 for a pending deletion only when the legacy
            # orphanDependents=false asked for it; otherwise 200 with the object
            accepted = options.get("orphanDependents") is False
            return self.respond(request, obj, 202 if accepted else 200, rt=t.rt)
        if self.registry.returns_deleted_object(t.rt):
            return self.respond(request, obj, 200, rt=t.rt)
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                  "details": {"name": t.name, "group": t.rt.group, "kind": t.rt.plural,
                              "uid": obj["metadata"].get("uid", "")}}
        if not t.rt.group:
            del status["details"]["group"]
        return web.Response(body=neg.dump_status(status), content_type="application/json")

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        if "deletecollection" not in t.rt.verbs:
            raise errors.method_not_allowed()
        options = await self.delete_options(request)
        opts = self.write_options(request)
        matches = self.selection(request, t.rt)
        items = [o for o in self.registry.cache(t.rt).list(t.namespace) if matches(o)]
        deleted = []
        for obj in items:
            m = obj["metadata"]
            try:
                out, _ = await self.registry.delete(t.rt, m.get("namespace"), m["name"],
                                                    options, opts)
            except errors.ApiError as e:
                if e.code == 404:
                    continue
                raise
            deleted.append(out)
        body = {"kind": t.rt.list_kind, "apiVersion": t.rt.api_version,
                "metadata": {"resourceVersion": str(self.registry.cache(t.rt).revision)},
                "items": deleted}
        return web.Response(body=neg.dump(body), content_type="application/json")


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def _sort_key(rt: ResourceType, obj: dict[str, Any]) -> str:
    m = obj["metadata"]
    return rt.key(m.get("namespace"), m["name"])


def encode_continue(start_after: str, revision: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start_after})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_continue(token: str, window_start: int) -> tuple[str, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        start, revision = str(data["start"]), int(data["rv"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request("continue key is not valid: invalid token",
                                 [errors.Cause("continue", "invalid token")]) from None
    if revision < window_start:
        raise _continue_expired()
    return start, revision


def too_large_resource_version(revision: int, current: int) -> errors.ApiError:
    """A resourceVersion the store has not reached. Kubernetes answers 504 with reason
    Timeout; pinnace keeps the reason, the cause and Retry-After (what client-go's
    IsTooLargeResourceVersion and its reflector look at) but answers 408, because a
    request the client got wrong is never a server error here (issue 8: no 5xx for any
    list option)."""
    return errors.ApiError(408, "Timeout", f"Too large resource version: {revision}, "
                           f"current: {current}", causes=[errors.Cause(
                               "", "Too large resource version", "ResourceVersionTooLarge")],
                           retry_after=1)


def _continue_expired() -> errors.ApiError:
    return errors.gone("The provided continue parameter is too old to display a consistent "
                       "list result. You can start a new list without the continue "
                       "parameter.")
