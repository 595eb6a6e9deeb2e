"""Authentication: bearer tokens.

Every request but the public health and version endpoints must carry a known
token (`Authorization: Bearer …`); anything else is 401, as Kubernetes answers.
An anonymous request to a public path is `system:anonymous` in
`system:unauthenticated` (RBAC's `system:public-info-viewer` lets it through).

Known tokens:
- the admin token written by `pki.ensure_admin_token`: `system:admin` in
  `system:masters`, the group RBAC lets do everything;
- a static token file, `DATA_DIR/tokens.csv`, in kube-apiserver's
  `--token-auth-file` format: one user a line, `token,user,uid,"group1,group2"`
  (the groups column is optional). Every such user is also in
  `system:authenticated`. The file is read once, at start;
- ServiceAccount tokens (JWTs), through `add_authenticator`
  (`service_accounts.ServiceAccountTokens.authenticate`).
"""

from __future__ import annotations

import csv
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from pinnace.api import errors

# Kubernetes' system:public-info-viewer role: readable without credentials.
PUBLIC_PATHS = frozenset({"/version", "/version/", "/healthz", "/livez", "/readyz"})


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


AUTHENTICATED = "system:authenticated"
ADMIN = User("system:admin", ("system:masters", AUTHENTICATED))
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


def load_token_file(path: str | Path) -> dict[str, User]:
    """token -> user from a `--token-auth-file` CSV; {} if the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    tokens: dict[str, User] = {}
    with path.open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{lineno}: token file needs at least 3 columns "
                                 f"(token,user,uid), got {len(row)}")
            token, name, uid = (c.strip() for c in row[:3])
            groups = [g.strip() for g in row[3].split(",") if g.strip()] if len(row) > 3 else []
            if AUTHENTICATED not in groups:
                groups.append(AUTHENTICATED)
            tokens[token] = User(name, tuple(groups), uid)
    return tokens


class TokenAuthenticator:
    def __init__(self, tokens: dict[str, User]) -> None:
        self._tokens = dict(tokens)
        # other kinds of bearer token (ServiceAccount JWTs), asked after the known ones
        self._more: list[Callable[[str], User | None]] = []

    def add(self, token: str, user: User) -> None:
        self._tokens[token] = user

    def remove(self, token: str) -> None:
        self._tokens.pop(token, None)

    def add_authenticator(self, authenticate: Callable[[str], User | None]) -> None:
        """A token authenticator returning None for tokens it does not know."""
        self._more.append(authenticate)

    def authenticate(self, path: str, authorization: str | None) -> User:
        """The request's user; ANONYMOUS for a request to a public path without a token."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token:
                for known, user in self._tokens.items():
                    if hmac.compare_digest(known.encode(), token.strip().encode()):
                        return user
                for more in self._more:
                    found = more(token.strip())
                    if found is not None:
                        return found
            raise errors.unauthorized()
        if path in PUBLIC_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return ANONYMOUS
        raise errors.unauthorized()


# served without the API's authentication and authorization: they authenticate their
# callers themselves (the join endpoints of `node_join.py`, k3s' /cacerts)
SELF_AUTHENTICATED_PATHS = frozenset({"/cacerts", "/v1-pinnace/node-join"})


# where the authentication middleware leaves the request's user (None: trusted caller)
USER_KEY: web.RequestKey[User] = web.RequestKey("user", User)
