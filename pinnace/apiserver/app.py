"""The aiohttp application: middleware (errors → Status, authentication, RBAC) and routes.

    request ─► error middleware ─► [audit of 401s] ─► authn middleware ─► [audit]
            ─► impersonation ─► authz middleware (Node, then RBAC; 403) ─► route
                                          ├─ /version /healthz /livez /readyz
                                          ├─ /api /apis …  discovery (legacy or aggregated)
                                          ├─ /openapi/v3[/…], /openapi/v2 (JSON or protobuf)
                                          ├─ self-subject reviews (answered, not stored)
                                          ├─ /.well-known/openid-configuration, /openid/v1/jwks
                                          └─ /api/v1/…, /apis/<g>/<v>/…  ResourceHandlers
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from pinnace.api import errors
from pinnace.apiserver import audit, discovery, openapi, openapi_v2, rbac, reviews
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.admission_policy import PolicyAdmission
from pinnace.apiserver.admission_webhooks import WebhookAdmission
from pinnace.apiserver.auth import ANONYMOUS, SELF_AUTHENTICATED_PATHS, USER_KEY, TokenAuthenticator
from pinnace.apiserver.handlers import ResourceHandlers
from pinnace.apiserver.impersonation import impersonation_middleware
from pinnace.apiserver.node_restriction import NodeRestriction
from pinnace.apiserver.rbac_escalation import EscalationCheck
from pinnace.apiserver.registry import ObjectRegistry

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SSAR = "authorization.k8s.io/v1/selfsubjectaccessreviews"
_SSR = "authentication.k8s.io/v1/selfsubjectreviews"


def _status_response(err: errors.ApiError) -> web.Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return web.Response(body=neg.dump_status(err.status()), status=err.code, headers=headers,
                        content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ApiError as e:
        return _status_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        reason = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestEntityTooLarge"}.get(
            e.status, "BadRequest")
        message = "the server could not find the requested resource" if e.status == 404 \
            else e.reason
        return _status_response(errors.ApiError(e.status, reason, message))
    except Exception as e:  # the one place an unexpected error becomes a 500 Status
        log.exception("internal error serving %s %s", request.method, request.path)
        return _status_response(errors.internal(f"an internal error occurred: "
                                                f"{type(e).__name__}"))


def auth_middleware(authn: TokenAuthenticator):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in SELF_AUTHENTICATED_PATHS:
            return await handler(request)
        request[USER_KEY] = authn.authenticate(request.path, request.headers.get("Authorization"))
        return await handler(request)
    return middleware


def authz_middleware(authz: rbac.RBACAuthorizer):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in SELF_AUTHENTICATED_PATHS:
            return await handler(request)
        user = request.get(USER_KEY) or ANONYMOUS
        attrs = rbac.request_attributes(user, request.method, request.path, request.query)
        allowed, reason = authz.authorize(attrs)
        if not allowed:
            raise rbac.forbidden(attrs, reason)
        return await handler(request)
    return middleware


def _json(body: object, content_type: str = "application/json", status: int = 200
          ) -> web.Response:
    return web.Response(body=neg.dump(body), status=status,
                        headers={"Content-Type": content_type})


def _wants_aggregated(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for media in accept.split(","):
        params = {p.split("=")[0].strip(): p.partition("=")[2].strip()
                  for p in media.split(";")[1:]}
        if params.get("g") == "apidiscovery.k8s.io" and params.get("v") == "v2" and \
                params.get("as") == "APIGroupDiscoveryList":
            return True
        if media.strip().split(";")[0] in ("application/json", "*/*"):
            return False
    return False


def _add_issuer_discovery(r: web.UrlDispatcher, registry: ObjectRegistry) -> None:
    """The ServiceAccount issuer's OIDC discovery document and keys (service_accounts.py)."""
    tokens = registry.service_account_tokens
    if tokens is None:
        return

    async def openid_configuration(_: web.Request) -> web.Response:
        return _json(tokens.openid_configuration())

    async def jwks(_: web.Request) -> web.Response:
        return _json(tokens.jwks(), "application/jwk-set+json")

    for path in ("/.well-known/openid-configuration", "/.well-known/openid-configuration/"):
        r.add_get(path, openid_configuration)
    for path in ("/openid/v1/jwks", "/openid/v1/jwks/"):
        r.add_get(path, jwks)


def build_app(registry: ObjectRegistry, authn: TokenAuthenticator, *,
              server_address: str = "127.0.0.1:6443",
              audit_log: audit.AuditLog | None = None) -> web.Application:
    """The API server's aiohttp application; requests are authenticated by `authn` and
    authorized by RBAC over `registry`'s roles and bindings (and logged to `audit_log`,
    after authentication and before authorization, so refusals are logged too)."""
    authz = rbac.RBACAuthorizer(registry)
    registry.write_checks.append(EscalationCheck(authz))
    registry.admission.append(NodeRestriction(registry))  # a node writes only its own
    # Kubernetes' order in the validating phase: policies, then webhooks
    webhooks = WebhookAdmission(registry)
    registry.admission.extend([PolicyAdmission(registry), webhooks])
    auditing = [audit.audit_middleware(audit_log)] if audit_log is not None else []
    # a 401 is logged by a middleware around authentication (it has no user)
    failed_authn = [audit.failed_authentication_middleware(audit_log)] \
        if audit_log is not None else []
    app = web.Application(middlewares=[error_middleware, *failed_authn, auth_middleware(authn),
                                       *auditing, impersonation_middleware(authz),
                                       authz_middleware(authz)],
                          client_max_size=neg.MAX_BODY + 1024)
    if audit_log is not None:
        audit.install(app, audit_log)
    resources = ResourceHandlers(registry)
    kinds = registry.kinds

    async def review(request: web.Request, tail: str) -> web.Response:
        if request.method != "POST":
            raise errors.method_not_allowed()
        user = request[USER_KEY]
        if tail == _SSR:  # the body asks nothing: the answer is the caller
            return _json(reviews.self_subject_review(user), status=201)
        body = reviews.decode_access_review(await request.read(),
                                            request.headers.get("Content-Type"))
        return _json(reviews.self_subject_access_review(authz, user, body), status=201)

    async def version(_: web.Request) -> web.Response:
        return _json(discovery.version_info())

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def api_root(request: web.Request) -> web.Response:
        if _wants_aggregated(request):
            return _json(discovery.aggregated_discovery(legacy=True, kinds=kinds),
                         discovery.AGGREGATED_CONTENT_TYPE)
        return _json(discovery.api_versions(server_address, kinds))

    async def apis_root(request: web.Request) -> web.Response:
        if _wants_aggregated(request):
            return _json(discovery.aggregated_discovery(legacy=False, kinds=kinds),
                         discovery.AGGREGATED_CONTENT_TYPE)
        return _json(discovery.api_group_list(kinds))

    async def core(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"].rstrip("/") if request.method == "GET" else \
            request.match_info["tail"]
        if tail == "v1" and request.method == "GET":
            return _json(discovery.api_resource_list("", "v1", kinds))
        return await resources.core(request)

    async def named(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail in (_SSAR, _SSR):
            return await review(request, tail)
        parts = tail.rstrip("/").split("/")
        if request.method == "GET" and len(parts) == 1:
            body = discovery.api_group(parts[0], kinds)
            if body is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the "
                                      "requested resource")
            return _json(body)
        if request.method == "GET" and len(parts) == 2:
            body = discovery.api_resource_list(parts[0], parts[1], kinds)
            if body is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the "
                                      "requested resource")
            return _json(body)
        return await resources.named(request)

    async def openapi_index(_: web.Request) -> web.Response:
        return _json(openapi.openapi_v3_index(kinds))

    async def openapi_doc(request: web.Request) -> web.Response:
        body = openapi.openapi_v3_document(request.match_info["path"], kinds)
        if body is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        return web.Response(body=body, headers={"Content-Type": "application/json",
                                                "Cache-Control": "public, immutable"})

    async def openapi_v2_doc(request: web.Request) -> web.Response:
        # kubectl asks for gnostic protobuf, other clients for JSON
        answer = openapi_v2.negotiate(request.headers.get("Accept", ""), kinds)
        headers = {"Vary": "Accept"}
        if answer is None:
            return web.Response(status=406, headers=headers)
        body, content_type = answer
        headers.update({"ETag": openapi_v2.etag(kinds), "Content-Type": content_type})
        if openapi_v2.etag(kinds) in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)

    r = app.router
    for path in ("/version", "/version/"):
        r.add_get(path, version)
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, health)
    r.add_get("/api", api_root)
    r.add_get("/api/", api_root)
    r.add_get("/apis", apis_root)
    r.add_get("/apis/", apis_root)
    r.add_get("/openapi/v3", openapi_index)
    r.add_get("/openapi/v3/", openapi_index)
    r.add_get("/openapi/v3/{path:.+}", openapi_doc)
    r.add_get("/openapi/v2", openapi_v2_doc)
    r.add_route("*", "/api/{tail:.+}", core)
    r.add_route("*", "/apis/{tail:.+}", named)
    _add_issuer_discovery(r, registry)
    async def close_webhooks(_: web.Application) -> None:
        await webhooks.close()
    app.on_cleanup.append(close_webhooks)
    return app
