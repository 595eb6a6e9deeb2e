"""User impersonation: `kubectl --as=USER [--as-group=G …]` (Kubernetes' impersonation filter).

A request carrying `Impersonate-User` (and optionally `Impersonate-Group`, one header
each, and `Impersonate-Uid`) is served as that user, once the authenticated caller is
allowed the `impersonate` verb on each: `users` (or `serviceaccounts` in the account's
namespace, for `system:serviceaccount:<ns>:<name>`), `groups`, `uids`. Denied: 403 with
Kubernetes' message. The impersonated user's groups are those asked for, or a
ServiceAccount's own groups, plus `system:authenticated` (`system:unauthenticated` for
`system:anonymous`), as the authenticator would have given them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from pinnace.api import errors
from pinnace.apiserver import rbac
from pinnace.apiserver.auth import ANONYMOUS, AUTHENTICATED, USER_KEY, User
from pinnace.apiserver.component_policy import SERVICE_ACCOUNT_PREFIX, service_account_user

_USER, _GROUP, _UID = "Impersonate-User", "Impersonate-Group", "Impersonate-Uid"


def _check(authz: rbac.RBACAuthorizer, user: User, resource: str, name: str,
           namespace: str = "") -> None:
    attrs = rbac.Attributes(user, "impersonate", True, api_group="", api_version="v1",
                            resource=resource, namespace=namespace, name=name)
    allowed, reason = authz.authorize(attrs)
    if not allowed:
        raise rbac.forbidden(attrs, reason)


def impersonated(authz: rbac.RBACAuthorizer, user: User, headers: Mapping[str, str],
                 groups: list[str]) -> User:
    """The user to serve the request as: `user` itself without impersonation headers."""
    name = headers.get(_USER)
    uid = headers.get(_UID, "")
    if name is None:
        if groups or uid:
            raise errors.bad_request("requested impersonation of groups or uid without "
                                     "impersonating a user")
        return user
    if name.startswith(SERVICE_ACCOUNT_PREFIX) and name.count(":") == 3:
        _, _, namespace, account = name.split(":")
        _check(authz, user, "serviceaccounts", account, namespace)
        own_groups = list(service_account_user(namespace, account).groups)
    else:
        _check(authz, user, "users", name)
        own_groups = []
    for group in groups:
        _check(authz, user, "groups", group)
    if uid:
        _check(authz, user, "uids", uid)
    chosen = list(groups) or own_groups
    if name == ANONYMOUS.name:
        chosen = chosen or list(ANONYMOUS.groups)
    elif AUTHENTICATED not in chosen:
        chosen.append(AUTHENTICATED)
    return User(name, tuple(chosen), uid)


def impersonation_middleware(authz: rbac.RBACAuthorizer):
    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if _USER in request.headers or _GROUP in request.headers:
            user = request.get(USER_KEY) or ANONYMOUS
            request[USER_KEY] = impersonated(authz, user, request.headers,
                                             request.headers.getall(_GROUP, []))
        return await handler(request)
    return middleware
