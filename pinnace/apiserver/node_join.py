"""Nodes joining with a token, k3s' way: `/cacerts` and `/v1-pinnace/node-join`.

    agent                                  server
    GET /cacerts (TLS not verified) ─────► the CA certificate PEM (no authentication)
    sha256(PEM) == token's hash? else "token CA hash does not match …", stop
    POST /v1-pinnace/node-join (TLS verified against that CA)
      Authorization: Bearer <credentials>  `server:<secret>` (DATA_DIR/node-token) or a
      {"nodeName", "nodePassword"}         live bootstrap token `<id>.<secret>`
                                     ◄──── {"token": bearer for system:node:<name>,
                                            "kubeletToken": what the API server presents
                                            to the node's kubelet server}

The node's credential is a bearer token of its own (user `system:node:<name>`, groups
`system:nodes` and `system:authenticated`) rather than a client certificate: the API
server authenticates bearer tokens already. The token reads `node.<name>.<secret>`, and
the cluster keeps only the sha256 of its secret, in the node's Secret below
(`tokenHash`), so every API server on the same store accepts it by one watch-cache
lookup, and none holds it in clear. Deleting that Secret revokes the token.

A node name belongs to the machine that first joined with it: each agent keeps a
random node password in its data dir and the server keeps its sha256 in the Secret
`<name>.node-password.pinnace` in kube-system (k3s keeps `<name>.node-password.k3s`).
Another machine asking for that name is refused (403); the same machine joining again
gets a new token (the old one stops working: the cluster cannot hand back what it only
holds the hash of).

Before tokens lived in the cluster, a server kept the ones it issued in
`DATA_DIR/pki/node-tokens.csv`. That server still accepts them (and only it does); an
agent holding one joins again on its next start (`client/join.py`) and gets a token of
the cluster, which takes its node out of the file.
"""

from __future__ import annotations

import base64
import csv
import datetime
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
from pathlib import Path

from aiohttp import web

from pinnace.api import errors, join_tokens
from pinnace.api.kinds import ResourceType
from pinnace.apiserver import pki
from pinnace.apiserver.auth import AUTHENTICATED, TokenAuthenticator, User
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions

log = logging.getLogger(__name__)

NODE_TOKEN_FILE = "node-token"  # DATA_DIR/node-token: the full join token, root only
NODE_CREDENTIALS_FILE = "node-tokens.csv"  # under pki/: tokens issued before the cluster kept them
TOKEN_HASH_KEY = "tokenHash"  # in the node's Secret: sha256 of its token's secret
NODES_GROUP = "system:nodes"
JOIN_PATH = "/v1-pinnace/node-join"
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def node_user(name: str) -> User:
    return User(f"system:node:{name}", (NODES_GROUP, AUTHENTICATED))


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


class NodeJoin:
    """The join endpoints of one API server, and the node credentials it issued."""

    def __init__(self, data_dir: Path, registry: ObjectRegistry, authn: TokenAuthenticator,
                 *, ca_pem: bytes, kubelet_token: str) -> None:
        self.data_dir = data_dir
        self.registry = registry
        self.authn = authn
        self.ca_pem = ca_pem
        self.kubelet_token = kubelet_token
        self.secret = pki.ensure_token(data_dir, "join.secret")
        self.token = str(join_tokens.JoinToken(join_tokens.ca_hash(ca_pem),
                                               f"{join_tokens.SERVER_USER}:{self.secret}"))
        self._credentials_path = pki.pki_dir(data_dir) / NODE_CREDENTIALS_FILE
        self._legacy: dict[str, str] = {}  # node name -> token, from node-tokens.csv

    def start(self, app: web.Application) -> None:
        """Write DATA_DIR/node-token, accept node tokens (the cluster's and this server's
        legacy file), add the routes."""
        write_private(self.data_dir / NODE_TOKEN_FILE, self.token + "\n")
        self._load_legacy()
        self.authn.add_authenticator(self.authenticate)
        app.router.add_get("/cacerts", self.cacerts)
        app.router.add_post(JOIN_PATH, self.join)

    async def cacerts(self, request: web.Request) -> web.Response:
        return web.Response(body=self.ca_pem, content_type="text/plain")

    async def join(self, request: web.Request) -> web.Response:
        await self._authenticate(request.headers.get("Authorization", ""))
        try:
            body = await request.json()
            name, password = str(body["nodeName"]), str(body["nodePassword"])
        except (ValueError, KeyError, TypeError):
            raise errors.bad_request("the body must be JSON with nodeName and nodePassword"
                                     ) from None
        if not _NODE_NAME.match(name):
            raise errors.invalid("Node", name, [errors.Cause(
                "nodeName", f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain")])
        if len(password) < 16:
            raise errors.bad_request("nodePassword must be at least 16 characters")
        await self._claim_name(name, password)
        token = await self._issue(name)
        log.info("node %s joined", name)
        return web.json_response({"token": token, "user": node_user(name).name,
                                  "kubeletToken": self.kubelet_token})

    async def _authenticate(self, authorization: str) -> None:
        scheme, _, creds = authorization.partition(" ")
        creds = creds.strip()
        if scheme.lower() == "bearer" and creds:
            user, colon, secret = creds.partition(":")
            if colon and user == join_tokens.SERVER_USER and \
                    hmac.compare_digest(secret.encode(), self.secret.encode()):
                return
            parts = join_tokens.split_bootstrap(creds)
            if parts is not None and self._bootstrap_valid(*parts):
                return
        raise errors.unauthorized("the join token is not valid (wrong, expired or deleted)")

    def _bootstrap_valid(self, token_id: str, secret: str) -> bool:
        obj = self.registry.cache(self._secrets()).get(join_tokens.BOOTSTRAP_NAMESPACE,
                                          join_tokens.secret_name(token_id))
        now = datetime.datetime.now(datetime.UTC)
        return obj is not None and join_tokens.bootstrap_valid(obj, token_id, secret, now=now)

    async def _claim_name(self, name: str, password: str) -> None:
        rt = self._secrets()
        digest = hashlib.sha256(password.encode()).hexdigest()
        secret_name = password_secret_name(name)
        existing = self.registry.cache(rt).get("kube-system", secret_name)
        if existing is None:
            try:
                await self.registry.create(rt, "kube-system", {
                    "metadata": {"name": secret_name, "namespace": "kube-system"},
                    "type": "pinnace.io/node-password",
                    "stringData": {"hash": digest}}, WriteOptions(field_manager="pinnace"))
                return
            except errors.ApiError as e:
                if e.code != 409:
                    raise
                existing = self.registry.cache(rt).get("kube-system", secret_name)
        stored = join_tokens.secret_field(existing or {}, "hash")
        if not hmac.compare_digest(stored.encode(), digest.encode()):
            raise errors.forbidden(f"node name {name} is taken by another machine (its node "
                                   "password differs); choose another --node-name")

    async def _issue(self, name: str) -> str:
        """A new token for node name; its hash goes to the node's Secret (made by
        `_claim_name`), replacing the one before."""
        rt = self._secrets()
        secret = secrets.token_urlsafe(32)
        for attempt in range(5):
            current = self.registry.cache(rt).get("kube-system", password_secret_name(name))
            if current is None:
                raise errors.conflict("secrets", password_secret_name(name),
                                      "the node's Secret went away while it joined")
            data = {**(current.get("data") or {}), TOKEN_HASH_KEY: base64.b64encode(
                _sha256(secret).encode()).decode()}
            try:
                await self.registry.update(rt, "kube-system", password_secret_name(name),
                                           {**current, "data": data},
                                           WriteOptions(field_manager="pinnace"))
                break
            except errors.ApiError as e:
                if e.code != 409 or attempt == 4:
                    raise
        self._forget_legacy(name)
        return join_tokens.node_token(name, secret)

    def authenticate(self, token: str) -> User | None:
        """The node a `node.<name>.<secret>` token belongs to, from the node's Secret in
        the watch cache; None for any other token."""
        parsed = join_tokens.split_node_token(token)
        if parsed is None:
            return None
        name, secret = parsed
        obj = self.registry.cache(self._secrets()).get("kube-system",
                                                       password_secret_name(name))
        stored = join_tokens.secret_field(obj or {}, TOKEN_HASH_KEY)
        if stored and hmac.compare_digest(stored.encode(), _sha256(secret).encode()):
            return node_user(name)
        return None

    def _secrets(self) -> ResourceType:
        rt = self.registry.kinds.by_kind("", "v1", "Secret")
        assert rt is not None
        return rt

    def _load_legacy(self) -> None:
        if not self._credentials_path.exists():
            return
        with self._credentials_path.open(newline="") as f:
            for row in csv.reader(f):
                if len(row) >= 2 and row[1].startswith("system:node:"):
                    name = row[1].removeprefix("system:node:")
                    self._legacy[name] = row[0]
                    self.authn.add(row[0], node_user(name))

    def _forget_legacy(self, name: str) -> None:
        """Node name holds a token of the cluster now: its line in the file goes."""
        token = self._legacy.pop(name, None)
        if token is None:
            return
        self.authn.remove(token)
        if not self._legacy:
            self._credentials_path.unlink(missing_ok=True)
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for node, tok in sorted(self._legacy.items()):
            user = node_user(node)
            writer.writerow([tok, user.name, user.name, ",".join(user.groups)])
        write_private(self._credentials_path, out.getvalue())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def password_secret_name(node_name: str) -> str:
    return f"{node_name}.node-password.pinnace"

