"""The composition root: store, API server and components wired once, for every caller.

    async with Cluster(ClusterConfig(data_dir=d, port=0, fake_nodes=3)) as cluster:
        cluster.server.url, cluster.client, cluster.factory   # ready to use

`pinnace up` and `pinnace server`, the integration tests and the benchmarks all build
their clusters here, so the order below exists in one place:

1. the API server starts (store opened, watch caches filled, bootstrap objects written,
   HTTPS listening);
2. one in-process client (`LocalTransport`: the server's own handlers, admission and
   validation, without the socket) and one `InformerFactory` shared by every component,
   so each resource is listed and watched once however many components read it;
3. the components are built on that factory — the controller manager's controllers, the
   scheduler, then the nodes (N simulated ones, or this machine's kubelet, service
   proxy and cluster DNS) — so that every informer they ask for exists before the factory
   starts and syncs;
4. each component runs as one task; `stop()` cancels them, then stops the informers,
   the client and the API server, in the reverse order of starting.

A component is anything with `async run()` that runs until cancelled and cleans up in
its `finally` (the `Component` protocol): that is the shape every controller, the
scheduler, `FakeNodes` and `Kubelet` already have, so the root needs no adapter. What
has a start and a stop is the cluster as a whole (`Cluster.start`/`stop`, or `async
with`), and `ComponentRunner` for callers that choose their own components (tests).

The root reaches into every layer (it is the one module besides `cli.py` that may);
nothing below it imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from pinnace.agent.fake_nodes import FakeNodes
from pinnace.agent.network.cni import CNI_PATHS
from pinnace.apiserver import component_policy, pki
from pinnace.apiserver.auth import User
from pinnace.apiserver.local import LocalTransport
from pinnace.apiserver.server import ApiServer
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.leader_election import LeaderElected, LeaderElectionConfig, LeaderElector
from pinnace.controllers.manager import ControllerSettings, build_controllers
from pinnace.scheduler.scheduler import Scheduler
from pinnace.store.etcd import EtcdConfig

if TYPE_CHECKING:
    from pinnace.agent.kubelet import Kubelet

log = logging.getLogger(__name__)

__all__ = ["Agent", "AgentConfig", "AgentError", "Cluster", "ClusterConfig", "Component",
           "ComponentRunner", "RealNodeConfig", "real_node_unavailable"]


class Component(Protocol):
    """A part of the cluster that acts through the API: `run()` does its work until it is
    cancelled, and releases what it holds (timers, servers, workers) on the way out.
    Its informers come from the shared factory it was built on."""

    async def run(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class RealNodeConfig:
    """This machine as a node: its kubelet, containers under runc (`pinnace up`'s flags)."""
    node_name: str = ""  # "" = the host name
    node_ip: str = "127.0.0.1"  # InternalIP; the kubelet server listens here
    kubelet_port: int = 10250
    restart_backoff: float = 10.0  # first crash-loop back-off, doubling to 5 min
    pod_cidr: str = ""  # "" = a /24 of 10.42.0.0/16 chosen by the data dir


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """What runs. The defaults are `pinnace server`'s: the API, the controllers and the
    scheduler, no node."""
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443  # 0 = a free port, chosen by the OS (then see `Cluster.server.port`)
    history_window: int = 10_000  # revisions of history kept for watches
    controllers: bool = True
    controller_settings: ControllerSettings = field(default_factory=ControllerSettings)
    scheduler: bool = True
    fake_nodes: int = 0  # simulated nodes fake-0 … fake-{N-1}
    real_node: RealNodeConfig | None = None  # this machine as a node (needs root and runc)
    field_manager: str = "pinnace"  # the in-process client's fieldManager
    # kube-apiserver's --encryption-provider-config; None: Secrets under a generated key
    encryption_provider_config: Path | None = None
    audit_policy_file: Path | None = None  # None: no audit log
    audit_log_path: Path | None = None  # None: DATA_DIR/audit.log
    # the ServiceAccount admission (token volumes in pods). None: on when the controllers
    # run; without them nothing makes `default` ServiceAccounts or kube-root-ca.crt and it
    # would refuse every pod (Kubernetes' integration tests disable it for that reason)
    service_account_admission: bool | None = None
    # kube-apiserver's --service-account-max-token-expiration (seconds; None: no cap)
    service_account_max_token_expiration: int | None = None
    etcd: EtcdConfig | None = None  # None: the SQLite store under data_dir
    # controllers and scheduler act only while this process holds their Lease (several
    # servers on one etcd); None: they always act
    leader_election: LeaderElectionConfig | None = None
    listen_also: tuple[str, ...] = ()  # more addresses the API serves on (`up --nodes`)
    # where pods reach the API (the `kubernetes` Service's endpoint); "" = the real node's
    # pod gateway, or none without a node (`server --advertise-address` for agents' pods)
    advertise_address: str = ""

    @property
    def lease_period(self) -> float:
        """Node heartbeats: four per grace period, as a kubelet's 10 s lease is for the
        node lifecycle controller's 40 s."""
        return min(10.0, self.controller_settings.node_monitor_grace_period / 4)


def real_node_unavailable() -> str:
    """Why this machine cannot run a real node ("" when it can)."""
    if os.geteuid() != 0:
        return "a real node needs root (namespaces, cgroups, mounts)"
    if shutil.which("runc") is None:
        return "runc is not installed (scripts/setup installs it)"
    if not any(Path(d, "bridge").exists() for d in CNI_PATHS):
        return "the CNI plugins are not installed (scripts/setup installs them)"
    return ""


def pod_gateway(data_dir: Path, node: RealNodeConfig) -> str:
    """The node's pod-bridge gateway: the first address of its pod CIDR (the CNI bridge
    plugin's `isGateway` address), where its pods reach the node."""
    from pinnace.agent.kubelet import default_pod_cidr
    cidr = node.pod_cidr or default_pod_cidr(Path(data_dir))
    return str(next(ipaddress.ip_network(cidr).hosts()))


class ComponentRunner:
    """Runs components on one shared `InformerFactory`: the factory's informers start
    (and sync) before the first component runs, each component is one task, and `stop()`
    cancels them all before it stops the informers. Components may be added after the
    first `start()`; informers they asked for start at once (the factory does that) and
    are synced before those components run."""

    def __init__(self, client: Client, *, informer_client: Client | None = None) -> None:
        self.client = client
        self.factory = InformerFactory(informer_client or client)
        self.components: list[Component] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._factory_started = False

    async def start(self, *components: Component) -> None:
        """Run `components`, built on `self.factory`, once its informers have synced."""
        if not self._factory_started:
            self._factory_started = True
            await self.factory.start()
        else:
            await self.factory.wait_synced()
        for c in components:
            self.components.append(c)
            self._tasks.append(asyncio.create_task(c.run(), name=type(c).__name__))

    async def stop(self) -> list[BaseException]:
        """Cancel every component and wait for it; then stop the informers. A component
        that had failed already does not keep the others from stopping: its error is
        logged and returned (tests raise it; the CLI has logged it)."""
        for t in self._tasks:
            t.cancel()
        failures: list[BaseException] = []
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception as e:
                log.error("%s had failed: %r", t.get_name(), e, exc_info=e)
                failures.append(e)
        self._tasks.clear()
        await self.factory.stop()
        return failures


class Cluster:
    """One cluster in this process, as `config` says; `start()` returns once the API
    answers and every component runs."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        # with a real node, its pods reach the API at their bridge's gateway
        gateway = pod_gateway(config.data_dir, config.real_node) if config.real_node else ""
        gateway = config.advertise_address or gateway
        self.server = ApiServer(config.data_dir, host=config.host, port=config.port,
                                history_window=config.history_window,
                                advertise_address=gateway,
                                encryption_provider_config=config.encryption_provider_config,
                                audit_policy_file=config.audit_policy_file,
                                audit_log_path=config.audit_log_path,
                                disable_admission_plugins=() if config.service_account_admission
                                or (config.service_account_admission is None
                                    and config.controllers) else ("ServiceAccount",),
                                service_account_max_token_expiration=(
                                    config.service_account_max_token_expiration),
                                etcd=config.etcd, listen_also=config.listen_also)
        self._client: Client | None = None
        self._users: dict[User, Client] = {}  # client_as()'s, one per user
        self._runner: ComponentRunner | None = None
        self.fake_nodes: FakeNodes | None = None
        self.kubelet: Kubelet | None = None

    @property
    def client(self) -> Client:
        """The in-process client of the cluster's callers (the cluster admin, trusted);
        the components act as their own users (`client_as`)."""
        if self._client is None:
            raise RuntimeError("the cluster is not started")
        return self._client

    @property
    def factory(self) -> InformerFactory:
        """The components' shared informers; `run()` components built on it."""
        if self._runner is None:
            raise RuntimeError("the cluster is not started")
        return self._runner.factory

    @property
    def components(self) -> list[Component]:
        return list(self._runner.components) if self._runner is not None else []

    async def start(self) -> None:
        """Start the API server, then the components. An OSError from listening (port in
        use, address not here) propagates, with everything started so far stopped."""
        try:
            await self.server.start()
        except BaseException:
            await self.server.stop()
            raise
        assert self.server.registry is not None
        # components in this process use the API's handlers directly, without the socket
        self._client = Client(LocalTransport(self.server.registry),
                              field_manager=self.config.field_manager)
        # the shared informers list and watch as the controller manager (its role may read
        # everything): one list+watch per kind serves every component, as Kubernetes'
        # controller manager shares its informers; each component writes as itself
        self._runner = ComponentRunner(self._client, informer_client=self.client_as(
            component_policy.CONTROLLER_MANAGER))
        try:
            await self._runner.start(*self._build(self._client, self._runner.factory))
        except BaseException:
            await self.stop()
            raise

    def client_as(self, user: User) -> Client:
        """An in-process client acting as `user`: RBAC (and the Node authorizer, and
        admission) apply to it as to a remote client. Closed with the cluster."""
        if self.server.registry is None:
            raise RuntimeError("the cluster is not started")
        client = self._users.get(user)
        if client is None:
            client = self._users[user] = Client(
                LocalTransport(self.server.registry, user=user),
                field_manager=self.config.field_manager)
        return client

    def _build(self, client: Client, factory: InformerFactory) -> list[Component]:
        # `client` (trusted, no RBAC) is for callers of the cluster; every component
        # acts as its own user (component_policy.py lists them)
        cfg = self.config
        components: list[Component] = []
        if cfg.controllers:
            tokens = self.server.service_account_tokens
            components += self._elected(
                "kube-controller-manager", component_policy.CONTROLLER_MANAGER,
                lambda: build_controllers(
                    self.client_as(component_policy.CONTROLLER_MANAGER), factory,
                    cfg.controller_settings, root_ca=self.server.ca_pem,
                    service_account_keys=tokens.keys if tokens is not None else None,
                    client_for=lambda name: self.client_as(
                        component_policy.controller_user(name))))
        if cfg.scheduler:
            components += self._elected(
                "kube-scheduler", component_policy.SCHEDULER,
                lambda: [Scheduler(self.client_as(component_policy.SCHEDULER), factory)])
        if cfg.fake_nodes:
            self.fake_nodes = FakeNodes(
                client, factory, count=cfg.fake_nodes, lease_period=cfg.lease_period,
                client_for_node=lambda name: self.client_as(component_policy.node_user(name)))
            components.append(self.fake_nodes)
        if cfg.real_node is not None:
            from pinnace.agent.kubelet import default_node_name
            node_client = self.client_as(component_policy.node_user(
                cfg.real_node.node_name or default_node_name()))
            self.kubelet = self._kubelet(cfg.real_node, node_client, factory)
            components.append(self.kubelet)
            proxier = self._proxier(cfg.real_node, self.client_as(component_policy.KUBE_PROXY),
                                    factory)
            if proxier is not None:
                components.append(proxier)
            components.append(self._dns_server(
                cfg.real_node, self.client_as(component_policy.DNS), factory))
            components.append(node_routes(Path(cfg.data_dir), cfg.real_node, factory,
                                          pod_cidr=cfg.real_node.pod_cidr or
                                          _default_pod_cidr(Path(cfg.data_dir))))
        return components

    def _elected(self, name: str, user: User, build: Callable[[], Sequence[Component]]
                 ) -> list[Component]:
        """build()'s components, run only while this process leads `name` when leader
        election is on (built once now, so their informers sync with the others')."""
        settings = self.config.leader_election
        if settings is None:
            return list(build())
        # the Lease is taken as the component itself, as its role allows
        elector = LeaderElector(self.client_as(user), name, settings)
        return [LeaderElected(elector, build(), build)]

    def _kubelet(self, node: RealNodeConfig, client: Client, factory: InformerFactory
                 ) -> Kubelet:
        data_dir = Path(self.config.data_dir)
        return node_kubelet(data_dir, node, client, factory,
                            pod_cidr=node.pod_cidr or _default_pod_cidr(data_dir),
                            kubelet_token=pki.ensure_kubelet_token(data_dir),
                            lease_period=self.config.lease_period)

    def _dns_server(self, node: RealNodeConfig, client: Client, factory: InformerFactory
                    ) -> Component:
        return node_dns_server(pod_gateway(self.config.data_dir, node), client, factory)

    def _proxier(self, node: RealNodeConfig, client: Client, factory: InformerFactory
                 ) -> Component | None:
        data_dir = Path(self.config.data_dir)
        return node_proxier(data_dir, node, client, factory,
                            pod_cidr=node.pod_cidr or _default_pod_cidr(data_dir))

    async def run(self, *components: Component) -> None:
        """Run more components, built on `self.factory`, beside the configured ones."""
        if self._runner is None:
            raise RuntimeError("the cluster is not started")
        await self._runner.start(*components)

    async def stop(self) -> None:
        """Stop the components, the informers, the client and the API server. Safe to call
        twice, and after a failed start."""
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        for user_client in self._users.values():
            await user_client.close()
        self._users.clear()
        await self.server.stop()

    async def __aenter__(self) -> Cluster:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


# -- a real node's components, for `up`'s in-process node and for `pinnace agent` ------
# imported inside: clusters without a real node do not need runc, CNI or nftables, and
# importing them costs startup time

def _default_pod_cidr(data_dir: Path) -> str:
    from pinnace.agent.kubelet import default_pod_cidr
    return default_pod_cidr(data_dir)


def node_kubelet(data_dir: Path, node: RealNodeConfig, client: Client,
                 factory: InformerFactory, *, pod_cidr: str, kubelet_token: str,
                 lease_period: float) -> Kubelet:
    """The node agent; its HTTPS server (logs, exec, port-forward) accepts
    `kubelet_token`, which the API server presents."""
    from pinnace.agent.kubelet import Kubelet, KubeletSettings
    certs = pki.ensure_pki(data_dir, hosts=[node.node_ip])
    gateway = str(next(ipaddress.ip_network(pod_cidr).hosts()))
    return Kubelet(client, factory, KubeletSettings(
        data_dir=data_dir, node_name=node.node_name, node_ip=node.node_ip,
        pod_cidr=pod_cidr, kubelet_port=node.kubelet_port,
        tls_cert=certs.server_cert, tls_key=certs.server_key,
        token=kubelet_token, lease_period=lease_period,
        backoff_base=node.restart_backoff, cluster_dns=(gateway,)))


def node_dns_server(address: str, client: Client, factory: InformerFactory) -> Component:
    """The node's cluster DNS (port 53 of the bridge gateway, UDP and TCP)."""
    from pinnace.proxy import DnsServer, DnsSettings
    return DnsServer(client, factory, DnsSettings(address=address))


def node_proxier(data_dir: Path, node: RealNodeConfig, client: Client,
                 factory: InformerFactory, *, pod_cidr: str) -> Component | None:
    """The node's service proxy (None without nftables: Services get no data path)."""
    if shutil.which("nft") is None:
        log.warning("nft is not installed: Services will not answer on this node")
        return None
    from pinnace.agent.kubelet import default_node_name
    from pinnace.agent.network import PodNetwork, dir_hash
    from pinnace.proxy import Proxier, ProxySettings, table_name
    network = PodNetwork(data_dir, pod_cidr)  # the bridge the kubelet's network will have
    return Proxier(client, factory, ProxySettings(
        table=table_name(dir_hash(data_dir)), bridge=network.bridge,
        pod_cidr=network.pod_cidr, node_name=node.node_name or default_node_name()))


def node_routes(data_dir: Path, node: RealNodeConfig, factory: InformerFactory, *,
                pod_cidr: str) -> Component:
    """Host routes to the other nodes' pod CIDRs, and the pods' masquerade."""
    from pinnace.agent.kubelet import default_node_name
    from pinnace.agent.network import NodeRoutes
    return NodeRoutes(factory, node_name=node.node_name or default_node_name(),
                      data_dir=data_dir, pod_cidr=pod_cidr)


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """`pinnace agent`: a node of a cluster served elsewhere, joined with a token."""
    server: str  # https://host:port of an API server, or several comma-separated
    token: str  # K10<CA hash>::<credentials> (DATA_DIR/node-token, `pinnace token create`)
    data_dir: Path
    node: RealNodeConfig = field(default_factory=RealNodeConfig)
    lease_period: float = 10.0
    pod_cidr_timeout: float = 60.0  # seconds to wait for the node IPAM controller

    @property
    def servers(self) -> list[str]:
        """The API servers of `server`, which may list several: `URL,URL…`."""
        return [u.strip().rstrip("/") for u in self.server.split(",") if u.strip()]


class AgentError(Exception):
    """The agent cannot start (joining refused, no pod CIDR); the message is for users."""


class Agent:
    """A real node (kubelet, service proxy, DNS, host-gw routes) as an HTTPS client of
    the API, under its own credential (`system:node:<name>`, see `client/join.py`).
    Its pod CIDR is the one the server's node IPAM controller gives its Node, unless
    `--pod-cidr` names one."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._client: Client | None = None
        self._runner: ComponentRunner | None = None
        self.kubelet: Kubelet | None = None

    async def start(self) -> None:
        from pinnace.agent.kubelet import default_node_name
        from pinnace.client.join import JoinError, join
        from pinnace.client.transport import HttpTransport
        cfg, node = self.config, self.config.node
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o700)
        name = node.node_name or default_node_name()
        node = dataclasses.replace(node, node_name=name)
        try:
            cred = await join(cfg.servers, cfg.token, node_name=name, data_dir=cfg.data_dir)
        except JoinError as e:
            raise AgentError(str(e)) from None
        # the server it joined first, then the others of the list: requests, watches and
        # the Lease go to the next one when a server cannot be reached
        servers = [cred.server, *(u for u in cfg.servers if u != cred.server)]
        transport = HttpTransport(servers, token=cred.token, ca_pem=cred.ca_pem)
        client = self._client = Client(transport)
        try:
            pod_cidr = node.pod_cidr or await self._pod_cidr(client, node)
            runner = self._runner = ComponentRunner(client)
            factory = runner.factory
            gateway = str(next(ipaddress.ip_network(pod_cidr).hosts()))
            self.kubelet = node_kubelet(cfg.data_dir, node, client, factory,
                                        pod_cidr=pod_cidr, kubelet_token=cred.kubelet_token,
                                        lease_period=cfg.lease_period)
            components: list[Component] = [self.kubelet]
            proxier = node_proxier(cfg.data_dir, node, client, factory, pod_cidr=pod_cidr)
            if proxier is not None:
                components.append(proxier)
            components += [node_dns_server(gateway, client, factory),
                           node_routes(cfg.data_dir, node, factory, pod_cidr=pod_cidr)]
            # and the servers the cluster lists, after those of --server
            from pinnace.agent.api_servers import ApiServerFollower
            components.append(ApiServerFollower(factory, transport))
            await runner.start(*components)
        except BaseException:
            await self.stop()
            raise

    async def _pod_cidr(self, client: Client, node: RealNodeConfig) -> str:
        """Register the Node without a pod CIDR (if it is new) and wait for the node IPAM
        controller's."""
        from pinnace.agent.kubelet import machine_capacity, os_image
        from pinnace.agent.node import node_labels, node_status
        from pinnace.api import errors
        nodes = client.resource("v1", "Node")
        obj = {"metadata": {"name": node.node_name, "labels": node_labels(node.node_name)},
               "status": node_status(node.node_name,
                                     capacity=machine_capacity(self.config.data_dir),
                                     host_ip=node.node_ip, runtime="runc", old=None,
                                     now=time.time(), os_image=os_image(),
                                     kubelet_port=node.kubelet_port)}
        try:
            created = await client.create(nodes, obj)
        except errors.ApiError as e:
            if e.code != 409:
                raise
        else:
            from pinnace.client.events import record_event
            await record_event(client, {**created, "apiVersion": "v1", "kind": "Node"},
                               component="kubelet", type_="Normal", reason="RegisteredNode",
                               message=f"Node {node.node_name} event: Registered Node "
                                       f"{node.node_name} in Controller",
                               host=node.node_name)
        deadline = time.monotonic() + self.config.pod_cidr_timeout
        while time.monotonic() < deadline:
            current = await client.get(nodes, node.node_name)
            cidr = (current.get("spec") or {}).get("podCIDR")
            if cidr:
                return str(cidr)
            await asyncio.sleep(0.2)
        raise AgentError(f"node {node.node_name} got no pod CIDR within "
                         f"{self.config.pod_cidr_timeout:.0f} s (does the server run its "
                         "controllers?)")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None
