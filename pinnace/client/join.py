"""Joining a cluster with a k3s-style token (the agent's side of `apiserver/node_join.py`).

`join(servers, token, node_name=…, data_dir=…)` (servers: one URL or several of one
cluster; the first that answers is asked):
1. parse the token `K10<CA hash>::<credentials>`;
2. fetch `/cacerts` without verifying TLS (we do not know the CA yet) and compare its
   sha256 with the token's hash: a mismatch stops here, before any credential is sent
   ("token CA hash does not match the cluster CA certificate hash");
3. POST the credentials, the node name and this machine's node password (kept in
   `DATA_DIR/node-password`, made once) to `/v1-pinnace/node-join`, verifying the
   server against the CA just pinned;
4. write the node's own credential as `DATA_DIR/node.kubeconfig` (root only).

The kubeconfig is reused on the next start, so a restarted agent does not need the
token again (nor does it need the token to be still valid), unless its credential is
one of the tokens a single server kept in a file before the cluster kept them
(`apiserver/node_join.py`): that one is replaced by joining again, so that every API
server accepts the node (and kept, for its own server, when that join fails).
"""

from __future__ import annotations

import base64
import os
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from pinnace.api import join_tokens

NODE_KUBECONFIG = "node.kubeconfig"
NODE_PASSWORD = "node-password"
KUBELET_TOKEN = "kubelet-server.token"


class JoinError(Exception):
    """Joining failed; the message says why (for the user, as is)."""


class _Unreachable(JoinError):
    """No connection to this server (the next one is tried)."""


@dataclass(frozen=True)
class NodeCredential:
    server: str
    ca_pem: bytes
    token: str  # the node's bearer token (system:node:<name>)
    kubelet_token: str  # what the API server presents to this node's kubelet server


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def node_password(data_dir: Path) -> str:
    """This machine's node password, made once (it proves a node name is ours)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / NODE_PASSWORD
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    password = secrets.token_hex(16)
    _write_private(path, password + "\n")
    return password


def load_credential(data_dir: Path) -> NodeCredential | None:
    path = data_dir / NODE_KUBECONFIG
    if not path.exists():
        return None
    cfg = yaml.safe_load(path.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    return NodeCredential(cluster["server"],
                          base64.b64decode(cluster["certificate-authority-data"]),
                          cfg["users"][0]["user"]["token"],
                          (data_dir / KUBELET_TOKEN).read_text().strip())


def _save(data_dir: Path, cred: NodeCredential, node_name: str) -> None:
    user = f"system:node:{node_name}"
    cfg = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "pinnace", "cluster": {
               "server": cred.server,
               "certificate-authority-data": base64.b64encode(cred.ca_pem).decode()}}],
           "users": [{"name": user, "user": {"token": cred.token}}],
           "contexts": [{"name": "pinnace", "context": {"cluster": "pinnace", "user": user}}],
           "current-context": "pinnace"}
    _write_private(data_dir / KUBELET_TOKEN, cred.kubelet_token + "\n")
    _write_private(data_dir / NODE_KUBECONFIG, yaml.safe_dump(cfg, sort_keys=False))


async def fetch_ca(server: str, expected_hash: str) -> bytes:
    """The cluster CA from `/cacerts`, after checking it against the token's hash."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(f"{server}/cacerts", ssl=insecure) as resp:
            if resp.status != 200:
                raise JoinError(f"{server}/cacerts answered {resp.status}")
            ca_pem = await resp.read()
    except aiohttp.ClientConnectorError as e:
        raise _Unreachable(f"cannot reach {server}: {e}") from None
    except aiohttp.ClientError as e:
        raise JoinError(f"cannot reach {server}: {e}") from None
    if not secrets.compare_digest(join_tokens.ca_hash(ca_pem), expected_hash):
        raise JoinError(join_tokens.CA_MISMATCH)
    return ca_pem


async def join(servers: str | Sequence[str], token: str, *, node_name: str, data_dir: Path
               ) -> NodeCredential:
    """The node's credential: the one saved in data_dir (if it came from one of servers),
    else a new one from the first server that answers."""
    urls = [u.rstrip("/") for u in ([servers] if isinstance(servers, str) else servers)]
    saved = load_credential(data_dir)
    if saved is not None and saved.server in urls and \
            saved.token.startswith(join_tokens.NODE_TOKEN_PREFIX):
        return saved
    try:
        return await _join_any(urls, token, node_name=node_name, data_dir=data_dir)
    except JoinError:
        if saved is not None and saved.server in urls:
            # a token of the old file, which its server still accepts (the join token
            # may have expired since): better one server than none
            return saved
        raise


async def _join_any(urls: list[str], token: str, *, node_name: str, data_dir: Path
                    ) -> NodeCredential:
    try:
        parsed = join_tokens.parse(token)
    except join_tokens.TokenFormatError as e:
        raise JoinError(str(e)) from None
    unreachable: list[str] = []
    for server in urls:
        try:
            return await _join_one(server, parsed, node_name=node_name, data_dir=data_dir)
        except _Unreachable as e:
            unreachable.append(str(e))
    raise JoinError("; ".join(unreachable))


async def _join_one(server: str, parsed: join_tokens.JoinToken, *, node_name: str,
                    data_dir: Path) -> NodeCredential:
    ca_pem = await fetch_ca(server, parsed.ca_hash)
    verified = ssl.create_default_context(cadata=ca_pem.decode())
    body = {"nodeName": node_name, "nodePassword": node_password(data_dir)}
    headers = {"Authorization": f"Bearer {parsed.credentials}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s, \
                s.post(f"{server}/v1-pinnace/node-join", json=body, headers=headers,
                       ssl=verified) as resp:
            answer = await resp.json(content_type=None)
    except (aiohttp.ClientError, ValueError) as e:
        raise JoinError(f"joining {server} failed: {e}") from None
    if resp.status != 200:
        message = answer.get("message") if isinstance(answer, dict) else answer
        raise JoinError(f"the server refused the join ({resp.status}): {message}")
    cred = NodeCredential(server, ca_pem, answer["token"], answer["kubeletToken"])
    _save(data_dir, cred, node_name)
    return cred
