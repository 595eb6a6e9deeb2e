"""Authentication: bearer tokens.

Every request but the public health and version endpoints must carry a known
token (`Authorization: Bearer …`); anything else is 401, as Kubernetes answers.
The admin token written by `pki.ensure_admin_token` maps to `system:admin` in
`system:masters`, the group RBAC lets do everything.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from pinnace.api import errors

# Kubernetes' system:public-info-viewer role: readable without credentials.
PUBLIC_PATHS = frozenset({"/version", "/version/", "/healthz", "/livez", "/readyz"})


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


ADMIN = User("system:admin", ("system:masters", "system:authenticated"))


class TokenAuthenticator:
    def __init__(self, tokens: dict[str, User]) -> None:
        self._tokens = dict(tokens)

    def add(self, token: str, user: User) -> None:
        self._tokens[token] = user

    def authenticate(self, path: str, authorization: str | None) -> User | None:
        """The request's user; None for an anonymous request to a public path."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token:
                for known, user in self._tokens.items():
                    if hmac.compare_digest(known.encode(), token.strip().encode()):
                        return user
            raise errors.unauthorized()
        if path in PUBLIC_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return None
        raise errors.unauthorized()
