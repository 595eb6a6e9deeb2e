"""The API server's life: open the store, fill the watch caches, bootstrap, serve HTTPS.

`ApiServer.start()` returns once the API answers; `stop()` closes the listeners,
the caches and the store.

Pods reach the API as `kubernetes.default` (10.96.0.1:443, the first address of the
service range): with a real node, the server also listens on `advertise_address`, the
node's pod-bridge gateway, on its own port, and the Endpoints and EndpointSlice of
`default/kubernetes` name that address (as kube-apiserver's endpoint reconciler names
its advertise address, and puts them back every 10 s; the service proxy DNATs the
ClusterIP to it). The bridge, and
with it the address, appears only with the node's first pod, so that listener is bound
with IP_FREEBIND: bound at once, it answers as soon as the address exists, and nothing
has to wait for the bridge or add the address ahead of the CNI plugin that owns it.
The serving certificate names both addresses, so in-cluster clients verify it.

The store is opened under the encryption configuration (`encryption.py`: Secrets
under aesgcm with a key generated into `pki/`, or `--encryption-provider-config`);
values not stored the way the configuration writes now (plaintext from before, an
older key) are rewritten before the watch caches fill. With `--audit-policy-file`,
requests are logged to the audit log (`audit.py`).

Identities: the admin token, plus the users of `DATA_DIR/tokens.csv` (kube-apiserver's
`--token-auth-file` format, read at start; see `auth.load_token_file`), plus
ServiceAccount tokens signed with `pki/service-account.key` (`service_accounts.py`). The kubeconfig
is written by the caller once `start()` returns, so its presence means "ready".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from aiohttp import web

from pinnace.api import errors
from pinnace.api.kinds import REGISTRY
from pinnace.api.service_account_tokens import TokenKeys
from pinnace.apiserver import encryption, peer_leases, pki
from pinnace.apiserver.admission_service_account import NAME as SERVICE_ACCOUNT_ADMISSION
from pinnace.apiserver.admission_service_account import ServiceAccountAdmission
from pinnace.apiserver.app import build_app
from pinnace.apiserver.audit import AuditLog, Policy
from pinnace.apiserver.auth import ADMIN, TokenAuthenticator, load_token_file
from pinnace.apiserver.bootstrap_policy import ensure_bootstrap_policy
from pinnace.apiserver.crd_serving import CustomResourceServing
from pinnace.apiserver.encryption import EncryptedStore
from pinnace.apiserver.node_join import NodeJoin
from pinnace.apiserver.node_proxy import NODE_PROXY, NodeProxy
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions
from pinnace.apiserver.service_accounts import ServiceAccountTokens
from pinnace.apiserver.strategies.namespaces import SYSTEM_NAMESPACES
from pinnace.store.etcd import EtcdConfig, EtcdStore, open_etcd_config
from pinnace.store.sqlite import SqliteStore, open_sqlite

log = logging.getLogger(__name__)

TOKEN_FILE = "tokens.csv"
ENDPOINT_RECONCILE_INTERVAL = 10.0  # seconds, kube-apiserver's
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux's value; Python does not name it
# what kube-apiserver's endpoint reconciler puts on the `kubernetes` Endpoints: the
# mirroring controller must leave them alone (the server writes the slice itself)
SKIP_MIRROR = {"endpointslice.kubernetes.io/skip-mirror": "true"}


class ApiServer:
    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", port: int = 6443,
                 history_window: int = 10_000, advertise_address: str = "",
                 encryption_provider_config: Path | None = None,
                 audit_policy_file: Path | None = None,
                 audit_log_path: Path | None = None,
                 disable_admission_plugins: tuple[str, ...] = (),
                 service_account_max_token_expiration: int | None = None,
                 etcd: EtcdConfig | None = None,
                 listen_also: tuple[str, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        # more addresses to serve on (`up --nodes`: the nodes' bridge, where agents in
        # their own network namespaces reach us); named in the serving certificate
        self.listen_also = listen_also
        self.etcd = etcd  # None: the SQLite store under data_dir
        # kube-apiserver's --disable-admission-plugins (of those it may disable: ServiceAccount)
        self.disable_admission_plugins = tuple(disable_admission_plugins)
        # kube-apiserver's --service-account-max-token-expiration (seconds; None: no cap)
        self.service_account_max_token_expiration = service_account_max_token_expiration
        self.service_account_tokens: ServiceAccountTokens | None = None
        # None: the configuration generated under pki/ (Secrets under aesgcm)
        self.encryption_provider_config = encryption_provider_config
        # no policy: no audit log (as kube-apiserver); the log defaults to DATA_DIR/audit.log
        self.audit_policy_file = audit_policy_file
        self.audit_log_path = audit_log_path
        self.audit_log: AuditLog | None = None
        self.host = host
        self.port = port
        # where pods reach this server ("" = no pods do): also listened on, and the
        # `kubernetes` Service's endpoint
        self.advertise_address = advertise_address
        self.history_window = history_window
        self.registry: ObjectRegistry | None = None
        self._runner: web.AppRunner | None = None
        self._endpoint_reconciler: asyncio.Task[None] | None = None
        self.token = ""
        self.ca_pem = b""
        self.node_join: NodeJoin | None = None

    @property
    def _peer_address(self) -> str:
        """On etcd, where other servers may serve the same cluster: the address the
        `kubernetes` Endpoints list for this server ("" when it has none to give)."""
        if self.etcd is None:
            return ""
        if self.advertise_address:
            return self.advertise_address
        return "" if self.host in ("0.0.0.0", "::") else self.host

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if self.audit_policy_file is not None:  # refused before anything else is opened
            self.audit_log = AuditLog(Policy.load(self.audit_policy_file),
                                      self.audit_log_path or self.data_dir / "audit.log")
        store = await self._open_store()
        self.registry = ObjectRegistry(store)
        self.registry.audit_log = self.audit_log
        serving = CustomResourceServing(self.registry)
        self.registry.on_start.append(serving.start)
        self.registry.on_stop.append(serving.stop)
        await self.registry.start()
        # the `kubernetes` Service's ClusterIP and the address pods reach us at
        extra_hosts = [self.registry.services.first_ip, self.advertise_address,
                       *self.listen_also]
        if self.host not in ("0.0.0.0", "::"):
            extra_hosts.append(self.host)
        else:  # agents on other machines verify us by whichever address they use
            extra_hosts += local_addresses()
        certs = pki.ensure_pki(self.data_dir, hosts=[h for h in extra_hosts if h])
        self.token = pki.ensure_admin_token(self.data_dir)
        self.ca_pem = certs.ca_pem
        for attempt in range(10):
            try:
                await self._bootstrap()
                break
            except errors.ApiError as e:  # another server on the same etcd bootstraps too
                if e.code != 409 or attempt == 9:
                    raise
                await asyncio.sleep(0.2)
        tokens = load_token_file(self.data_dir / TOKEN_FILE)
        if tokens:
            log.info("loaded %d users from %s", len(tokens), self.data_dir / TOKEN_FILE)
        authn = TokenAuthenticator({**tokens, self.token: ADMIN})
        self._serve_service_accounts(authn)
        app = build_app(self.registry, authn, server_address=f"{self.host}:{self.port}",
                        audit_log=self.audit_log)
        # logs, exec and port-forward go on to the pod's node agent with this token
        app[NODE_PROXY] = NodeProxy(kubelet_token=pki.ensure_kubelet_token(self.data_dir))
        # nodes join with DATA_DIR/node-token or a bootstrap token (node_join.py)
        self.node_join = NodeJoin(self.data_dir, self.registry, authn, ca_pem=certs.ca_pem,
                                  kubelet_token=pki.ensure_kubelet_token(self.data_dir))
        self.node_join.start(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        wildcard = self.host in ("0.0.0.0", "::")
        # on every address, this listener is the pods' too (see `_listen_for_pods`)
        ssl_context = certs.ssl_context(sha1_handshakes=wildcard and bool(self.advertise_address))
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_context,
                           reuse_address=True, backlog=512)
        await site.start()
        if self.port == 0:
            server: Any = site._server  # the port the OS chose
            self.port = server.sockets[0].getsockname()[1]
        log.info("API server listening on %s", self.url)
        if self.advertise_address and not wildcard and self.host != self.advertise_address:
            await self._listen_for_pods(certs)
        for address in self.listen_also:
            if not wildcard and address not in (self.host, self.advertise_address):
                await self._listen_for_pods(certs, address)
        if self.advertise_address or self._peer_address:
            await self._ensure_kubernetes_endpoints()
            self._endpoint_reconciler = asyncio.create_task(
                self._reconcile_kubernetes_endpoints(), name="kubernetes endpoints")

    def _serve_service_accounts(self, authn: TokenAuthenticator) -> None:
        """ServiceAccount tokens: issued (serviceaccounts/token), accepted, and mounted into
        pods by the ServiceAccount admission plugin (first, before webhooks see the pod)."""
        assert self.registry is not None
        keys = TokenKeys(pki.ensure_service_account_key(self.data_dir))
        tokens = self.service_account_tokens = ServiceAccountTokens(
            self.registry, keys, max_expiration=self.service_account_max_token_expiration)
        self.registry.service_account_tokens = tokens
        authn.add_authenticator(tokens.authenticate)
        if SERVICE_ACCOUNT_ADMISSION not in self.disable_admission_plugins:
            self.registry.admission.insert(0, ServiceAccountAdmission(self.registry))

    async def _open_store(self) -> EncryptedStore:
        """The store (SQLite under data_dir, or etcd) under the encryption configuration;
        values not stored under its first provider (a cluster from before encryption, an
        older key) are rewritten first, and the history holding their old bytes is
        scrubbed from the file (etcd: compacted and defragmented)."""
        config_path = self.encryption_provider_config or encryption.ensure_config(
            pki.pki_dir(self.data_dir))
        config = encryption.EncryptionConfig.load(config_path)
        raw: SqliteStore | EtcdStore
        if self.etcd is not None:
            raw = await open_etcd_config(self.etcd, history_window=self.history_window)
        else:
            raw = await open_sqlite(str(self.data_dir / "state.db"),
                                    history_window=self.history_window)
        try:
            rewritten = await encryption.rewrite_stale(raw, config, config.prefixes(REGISTRY))
            if rewritten:
                await raw.scrub()
                log.info("encryption at rest: rewrote %d objects under %s", rewritten,
                         config_path)
        except BaseException:
            await raw.close()
            raise
        return EncryptedStore(raw, config)

    async def _listen_for_pods(self, certs: pki.Pki, address: str = "") -> None:
        """Listen on the advertise address too (IP_FREEBIND: it may not exist yet). A
        failure is logged, not fatal: the API serves its other clients without it."""
        assert self._runner is not None
        address = address or self.advertise_address
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            sock.bind((address, self.port))
            sock.setblocking(False)
            # pods' TLS clients may be minimal ones (busybox wget): see `ssl_context`
            site = web.SockSite(self._runner, sock, backlog=512,
                                ssl_context=certs.ssl_context(sha1_handshakes=True))
            await site.start()
        except OSError as e:
            sock.close()
            log.warning("pods cannot reach the API: listening on %s:%d failed: %s",
                        address, self.port, e)
            return
        log.info("API server listening for pods on %s:%d", address, self.port)

    async def stop(self) -> None:
        if self._endpoint_reconciler is not None:
            self._endpoint_reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._endpoint_reconciler
            self._endpoint_reconciler = None
            if self._peer_address and self.registry is not None:
                # off the `kubernetes` endpoints now, not when our Lease runs out
                with contextlib.suppress(Exception):
                    await self._ensure_kubernetes_endpoints(leaving=True)
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        if self.audit_log is not None:
            if self.registry is not None:  # in-process callers still running log no more
                self.registry.audit_log = None
            self.audit_log.close()
            self.audit_log = None
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


    async def _reconcile_kubernetes_endpoints(self) -> None:
        """Put them back should anyone delete or change them, as kube-apiserver's endpoint
        reconciler does every 10 s."""
        while True:
            await asyncio.sleep(ENDPOINT_RECONCILE_INTERVAL)
            try:
                await self._ensure_kubernetes_endpoints()
            except Exception as e:  # the next round tries again
                log.warning("reconciling the kubernetes endpoints failed: %r", e)

    async def _ensure_kubernetes_endpoints(self, *, leaving: bool = False) -> None:
        """The Endpoints and EndpointSlice of `default/kubernetes`: the advertise address
        and this server's port (written again when either changed since the last start);
        on etcd every live server on this port, less this one when `leaving`."""
        reg = self.registry
        assert reg is not None
        addresses = [self.advertise_address]
        if self._peer_address:  # maybe several servers: every live one (peer_leases.py)
            me = self._peer_address
            if leaving:
                await peer_leases.remove(reg, peer_leases.lease_name(me, self.port))
            else:
                await peer_leases.renew(reg, me, self.port)
            live = {a for a, p in await peer_leases.live_servers(reg) if p == self.port}
            addresses = sorted(live - {me} if leaving else live | {me})
            if not addresses:
                return  # the last server leaves: the endpoints stay as they were
        port = {"name": "https", "port": self.port, "protocol": "TCP"}
        endpoints = {"metadata": {"name": "kubernetes", "labels": dict(SKIP_MIRROR)},
                     "subsets": [{"addresses": [{"ip": a} for a in addresses],
                                  "ports": [port]}]}
        endpoint_slice = {"metadata": {"name": "kubernetes", "labels": {
                              "kubernetes.io/service-name": "kubernetes"}},
                          "addressType": "IPv4", "ports": [port],
                          "endpoints": [{"addresses": [a], "conditions": {"ready": True}}
                                        for a in addresses]}
        opts = WriteOptions(field_manager="pinnace")
        for (api_version, kind), body, fields in (
                (("v1", "Endpoints"), endpoints, ("subsets",)),
                (("discovery.k8s.io/v1", "EndpointSlice"), endpoint_slice,
                 ("addressType", "ports", "endpoints"))):
            group, _, version = api_version.rpartition("/")
            rt = reg.kinds.by_kind(group, version, kind)
            assert rt is not None
            current = reg.cache(rt).get("default", "kubernetes")
            try:
                if current is None:
                    await reg.create(rt, "default", body, opts)
                elif any(current.get(f) != body[f] for f in fields) or any(
                        (current["metadata"].get("labels") or {}).get(k) != v
                        for k, v in body["metadata"]["labels"].items()):
                    new = {**current, **{f: body[f] for f in fields}}
                    new["metadata"] = {**current["metadata"], "labels": {
                        **(current["metadata"].get("labels") or {}),
                        **body["metadata"]["labels"]}}
                    await reg.update(rt, "default", "kubernetes", new, opts)
            except errors.ApiError as e:  # never fatal, as the Service itself
                log.warning("could not write the kubernetes %s: %s", kind, e)


def local_addresses() -> list[str]:
    """This machine's IPv4 addresses and host name (what a wildcard listener answers on)."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    addresses = [line.split()[3].split("/")[0] for line in out.splitlines()
                 if len(line.split()) > 3]
    return [*addresses, socket.gethostname()]


def default_data_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/pinnace"
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "pinnace")

