"""The API server's life: open the store, fill the watch caches, bootstrap, serve HTTPS.

`ApiServer.start()` returns once the API answers; `stop()` closes the listener,
the caches and the store. Identities: the admin token, plus the users of
`DATA_DIR/tokens.csv` (kube-apiserver's `--token-auth-file` format, read at start;
see `auth.load_token_file`). The kubeconfig is written by the caller once `start()`
returns, so its presence means "ready".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from pinnace.api import errors
from pinnace.apiserver import pki
from pinnace.apiserver.app import build_app
from pinnace.apiserver.auth import ADMIN, TokenAuthenticator, load_token_file
from pinnace.apiserver.bootstrap_policy import ensure_bootstrap_policy
from pinnace.apiserver.node_proxy import NODE_PROXY, NodeProxy
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions
from pinnace.apiserver.strategies.namespaces import SYSTEM_NAMESPACES
from pinnace.store.sqlite import open_sqlite

log = logging.getLogger(__name__)

TOKEN_FILE = "tokens.csv"


class ApiServer:
    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", port: int = 6443,
                 history_window: int = 10_000) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.history_window = history_window
        self.registry: ObjectRegistry | None = None
        self._runner: web.AppRunner | None = None
        self.token = ""
        self.ca_pem = b""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        extra_hosts = [self.host] if self.host not in ("0.0.0.0", "::") else []
        certs = pki.ensure_pki(self.data_dir, hosts=extra_hosts)
        self.token = pki.ensure_admin_token(self.data_dir)
        self.ca_pem = certs.ca_pem
        store = await open_sqlite(str(self.data_dir / "state.db"),
                                  history_window=self.history_window)
        self.registry = ObjectRegistry(store)
        await self.registry.start()
        await self._bootstrap()
        tokens = load_token_file(self.data_dir / TOKEN_FILE)
        if tokens:
            log.info("loaded %d users from %s", len(tokens), self.data_dir / TOKEN_FILE)
        authn = TokenAuthenticator({**tokens, self.token: ADMIN})
        app = build_app(self.registry, authn, server_address=f"{self.host}:{self.port}")
        # logs, exec and port-forward go on to the pod's node agent with this token
        app[NODE_PROXY] = NodeProxy(kubelet_token=pki.ensure_kubelet_token(self.data_dir))
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=certs.ssl_context(),
                           reuse_address=True, backlog=512)
        await site.start()
        if self.port == 0:
            server: Any = site._server  # the port the OS chose
            self.port = server.sockets[0].getsockname()[1]
        log.info("API server listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        if self.registry:
            await self.registry.stop()
            await self.registry.store.close()
            self.registry = None

    def kubeconfig(self) -> str:
        return pki.kubeconfig(self.url, self.ca_pem, self.token)

    def write_kubeconfig(self) -> Path:
        path = self.data_dir / "kubeconfig"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.kubeconfig())
        os.replace(tmp, path)
        return path

    async def _bootstrap(self) -> None:
        """The namespaces, RBAC policy and `kubernetes` Service every cluster starts with."""
        reg = self.registry
        assert reg is not None
        await ensure_bootstrap_policy(reg)
        ns_rt = reg.kinds.by_kind("", "v1", "Namespace")
        svc_rt = reg.kinds.by_kind("", "v1", "Service")
        assert ns_rt and svc_rt
        opts = WriteOptions(field_manager="pinnace")
        for name in SYSTEM_NAMESPACES:
            if reg.cache(ns_rt).get(None, name) is None:
                await reg.create(ns_rt, None, {"metadata": {"name": name}}, opts)
        if reg.cache(svc_rt).get("default", "kubernetes") is None:
            try:
                await reg.create(svc_rt, "default", {
                    "metadata": {"name": "kubernetes", "labels": {
                        "component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"clusterIP": reg.services.first_ip, "ports": [
                        {"name": "https", "port": 443, "protocol": "TCP",
                         "targetPort": self.port or 6443}]},
                }, opts)
            except errors.ApiError as e:  # never fatal: the API works without it
                log.warning("could not create the kubernetes Service: %s", e)


def default_data_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/pinnace"
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "pinnace")

