"""Join tokens, k3s' format, and the bootstrap-token Secrets behind `pinnace token`.

A join token is `K10<sha256 hex of the CA certificate PEM>::<credentials>`: the hash
lets a joining node check the CA it downloads (`/cacerts`, served without
authentication) before it trusts it, so the credentials are sent only to the real
cluster. The credentials are `server:<secret>` for the server's own token
(`DATA_DIR/node-token`), or `<id>.<secret>` for a bootstrap token
(`pinnace token create`), stored as Kubernetes stores them: a Secret
`bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` in kube-system with
`token-id`, `token-secret`, optional `expiration` (RFC 3339) and `description`.
A node's own credential, issued at join, is `node.<name>.<secret>` (see
`apiserver/node_join.py`). No I/O here: parsing, formatting and the Secret's shape.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import secrets
from dataclasses import dataclass

from pinnace.api.timestamps import format_time, parse_time
from pinnace.api.types import Obj

PREFIX = "K10"
SERVER_USER = "server"
BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_NAMESPACE = "kube-system"
_ID = re.compile(r"^[a-z0-9]{6}$")
_SECRET = re.compile(r"^[a-z0-9]{16}$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
NODE_TOKEN_PREFIX = "node."
CA_MISMATCH = "token CA hash does not match the cluster CA certificate hash"


class TokenFormatError(ValueError):
    """The token is not `K10<hash>::<credentials>`."""


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str  # sha256 hex of the CA certificate PEM
    credentials: str  # `server:<secret>` or `<id>.<secret>`

    def __str__(self) -> str:
        return f"{PREFIX}{self.ca_hash}::{self.credentials}"


def ca_hash(ca_pem: bytes) -> str:
    """What a token pins: the sha256 of the CA certificate PEM as served (k3s' hash for
    a self-signed CA)."""
    return hashlib.sha256(ca_pem).hexdigest()


def parse(token: str) -> JoinToken:
    token = token.strip()
    if not token.startswith(PREFIX) or "::" not in token:
        raise TokenFormatError("the token is not in K10<CA hash>::<credentials> form")
    digest, _, creds = token[len(PREFIX):].partition("::")
    if not re.fullmatch(r"[0-9a-f]{64}", digest) or not creds:
        raise TokenFormatError("the token is not in K10<CA hash>::<credentials> form")
    return JoinToken(digest, creds)


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_bootstrap_token() -> tuple[str, str]:
    """A fresh (id, secret) as kubeadm makes them: [a-z0-9]{6}.[a-z0-9]{16}."""
    return _random(6), _random(16)


def split_bootstrap(credentials: str) -> tuple[str, str] | None:
    """(id, secret) of `<id>.<secret>` credentials; None if they are not of that form."""
    token_id, dot, secret = credentials.partition(".")
    if dot and _ID.match(token_id) and _SECRET.match(secret):
        return token_id, secret
    return None


def secret_name(token_id: str) -> str:
    return f"bootstrap-token-{token_id}"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def bootstrap_secret(token_id: str, secret: str, *, ttl: float | None, description: str,
                     now: datetime.datetime) -> Obj:
    """The Secret of a bootstrap token that authenticates joining nodes."""
    data = {"token-id": _b64(token_id), "token-secret": _b64(secret),
            "usage-bootstrap-authentication": _b64("true")}
    if description:
        data["description"] = _b64(description)
    if ttl:
        expires = now + datetime.timedelta(seconds=ttl)
        data["expiration"] = _b64(format_time(expires))
    return {"apiVersion": "v1", "kind": "Secret", "type": BOOTSTRAP_TYPE,
            "metadata": {"name": secret_name(token_id), "namespace": BOOTSTRAP_NAMESPACE},
            "data": data}


def secret_field(secret: Obj, key: str) -> str:
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


def expiration(secret: Obj) -> datetime.datetime | None:
    value = secret_field(secret, "expiration")
    if not value:
        return None
    parsed = parse_time(value)
    if parsed is None:  # refused as an error, never read as "does not expire"
        raise ValueError(f"bootstrap token expiration {value!r} is not an RFC 3339 time")
    return parsed


def bootstrap_valid(secret: Obj, token_id: str, token_secret: str, *,
                    now: datetime.datetime) -> bool:
    """The Secret is a live bootstrap token for authentication with this id and secret."""
    if secret.get("type") != BOOTSTRAP_TYPE or secret_field(secret, "token-id") != token_id:
        return False
    if secret_field(secret, "usage-bootstrap-authentication") != "true":
        return False
    if not secrets.compare_digest(secret_field(secret, "token-secret"), token_secret):
        return False
    expires = expiration(secret)
    return expires is None or expires > now


def node_token(node_name: str, secret: str) -> str:
    """A node's bearer token: its name, so a server finds the node's hash at once."""
    return f"{NODE_TOKEN_PREFIX}{node_name}.{secret}"


def split_node_token(token: str) -> tuple[str, str] | None:
    """(node name, secret) of a `node.<name>.<secret>` token; None for other tokens.
    The secret is URL-safe base64, without dots, so the last dot ends the name."""
    if not token.startswith(NODE_TOKEN_PREFIX):
        return None
    name, dot, secret = token.removeprefix(NODE_TOKEN_PREFIX).rpartition(".")
    if not dot or not name or not secret:
        return None
    return name, secret
