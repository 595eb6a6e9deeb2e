"""The `pinnace` command.

    pinnace up [--data-dir DIR] [--port PORT] [--fake-nodes N]   a whole cluster, in the foreground
    pinnace server …                        the control plane alone (API, controllers, scheduler)
    pinnace down [--data-dir DIR]           stop a cluster's containers, undo its host setup
    pinnace kubeconfig [--data-dir DIR]     print the admin kubeconfig
    pinnace image import|ls|rm [--data-dir DIR] …   the node's image store
    pinnace agent --server URL --token T …  this machine as a node of a cluster elsewhere
    pinnace token create|list|delete        join tokens (see node_commands.py)
    pinnace secrets rotate [--data-dir DIR]  new encryption key, Secrets rewritten, old key
                                            retired (the cluster stopped; see key_rotation.py)

`up` and `server` turn their flags into a `ClusterConfig` and run it with
`pinnace.cluster.Cluster`, the composition root the tests and benchmarks use too;
they write DIR/kubeconfig once the API answers and the components are running, and
exit cleanly on SIGINT or SIGTERM. Components reach the API server through the API,
like any client.

`up` runs one real node (this machine, containers under runc) when it runs as root
with runc and the CNI plugins installed, or N simulated nodes with `--fake-nodes N`.
Stopping `up` leaves containers running, as stopping a kubelet does; the next `up`
adopts them. `down` stops them and removes what pinnace set up on the host for DIR
(mounts, network namespaces, links, nftables tables, cgroups), keeping the cluster's
state, and says what it stopped: "stopped pinnace up (pid N) and 3 containers",
"stopped 3 containers of DIR", or "nothing of DIR runs on this host".
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

from pinnace.apiserver.audit import AuditPolicyError
from pinnace.apiserver.encryption import DecryptionError, EncryptionConfigError
from pinnace.apiserver.node_join import NODE_TOKEN_FILE
from pinnace.apiserver.server import default_data_dir
from pinnace.client.leader_election import LeaderElectionConfig
from pinnace.cluster import Cluster, ClusterConfig, RealNodeConfig, real_node_unavailable
from pinnace.controllers.manager import ControllerSettings
from pinnace.controllers.service_lb import DEFAULT_LB_POOL
from pinnace.store.etcd import EVENT_TTL, EtcdConfig
from pinnace.store.interface import StoreError

PID_FILE = "pinnace.pid"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="state, certificates and kubeconfig (default: /var/lib/pinnace as root, "
                        "~/.local/share/pinnace otherwise)")


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _store_flags(p: argparse.ArgumentParser) -> None:
    """Where the cluster's state is: SQLite under the data dir, or an etcd cluster."""
    p.add_argument("--store", choices=["sqlite", "etcd"], default="sqlite",
                   help="sqlite (default: DATA_DIR/state.db) or etcd (--etcd-endpoints; "
                        "several servers may share one etcd)")
    p.add_argument("--etcd-endpoints", default="", metavar="URL[,URL]",
                   help="the etcd members' client URLs (http[s]://host:port)")
    p.add_argument("--etcd-cafile", default=None, metavar="FILE",
                   help="CA of the etcd members' certificates")
    p.add_argument("--etcd-certfile", default=None, metavar="FILE",
                   help="client certificate presented to etcd")
    p.add_argument("--etcd-keyfile", default=None, metavar="FILE",
                   help="key of --etcd-certfile")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0, metavar="S",
                   help="with --store etcd the controllers and scheduler elect a leader "
                        "through Leases: how long a leader's Lease lasts (default 15)")
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, metavar="S",
                   help="a leader stops acting when it could not renew for this long "
                        "(default 10)")
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0, metavar="S",
                   help="how often candidates try and the leader renews (default 2)")
    p.add_argument("--event-ttl", type=int, default=EVENT_TTL, metavar="SECONDS",
                   help=f"how long Events live in etcd after their last write "
                        f"(default {EVENT_TTL})")


def _etcd_config(args: argparse.Namespace) -> EtcdConfig | None:
    if args.store != "etcd":
        return None
    endpoints = tuple(e.strip() for e in args.etcd_endpoints.split(",") if e.strip())
    if not endpoints:
        raise SystemExit("pinnace: --store etcd needs --etcd-endpoints URL[,URL]")
    return EtcdConfig(endpoints=endpoints, cafile=args.etcd_cafile,
                      certfile=args.etcd_certfile, keyfile=args.etcd_keyfile,
                      event_ttl=args.event_ttl)


def _leader_election(args: argparse.Namespace) -> LeaderElectionConfig | None:
    """On with etcd, where several servers may share the cluster; SQLite has one server."""
    if args.store != "etcd":
        return None
    try:
        return LeaderElectionConfig(lease_duration=args.leader_elect_lease_duration,
                                    renew_deadline=args.leader_elect_renew_deadline,
                                    retry_period=args.leader_elect_retry_period)
    except ValueError as e:
        raise SystemExit(f"pinnace: {e}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pinnace", description=__doc__.splitlines()[0] if
                                     __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("up", "run a cluster in the foreground"),
                            ("server", "run the control plane alone")):
        p = sub.add_parser(name, help=help_text)
        _common(p)
        p.add_argument("--port", type=int, default=6443, help="API port (default 6443)")
        p.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: loopback only)")
        p.add_argument("--advertise-address", default="", metavar="IP",
                       help="where pods reach the API (the `kubernetes` Service's endpoint; "
                            "default: the real node's pod gateway; `server` with agents: "
                            "an address of this machine they route to)")
        p.add_argument("--history-window", type=int, default=10_000,
                       help="revisions of history kept for watches before compaction")
        p.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                       help="seconds without a node heartbeat before it is NotReady")
        p.add_argument("--job-backoff", type=float, default=10.0,
                       help="base of the Job pod-failure backoff in seconds (doubles, max 6 min)")
        p.add_argument("--lb-pool", type=_network, default=DEFAULT_LB_POOL, metavar="CIDR",
                       help="addresses for LoadBalancer Services, one each (default "
                            f"{DEFAULT_LB_POOL}: loopback, answers from this machine)")
        p.add_argument("--encryption-provider-config", type=Path, default=None,
                       metavar="FILE", help="an EncryptionConfiguration (default: Secrets "
                       "under aesgcm with a key generated into DATA_DIR/pki)")
        p.add_argument("--audit-policy-file", type=Path, default=None, metavar="FILE",
                       help="an audit.k8s.io/v1 Policy: turns the audit log on "
                       "(docs/audit-policy.yaml is an example)")
        p.add_argument("--audit-log-path", type=Path, default=None, metavar="FILE",
                       help="where audit Events go, one JSON a line (default "
                       "DATA_DIR/audit.log)")
        p.add_argument("--service-account-max-token-expiration", type=int, default=None,
                       metavar="SECONDS", help="cap the lifetime of ServiceAccount tokens "
                       "(default: as requested; pods ask for 3607 s)")
        p.add_argument("-v", "--verbose", action="store_true")
        _store_flags(p)
        if name == "up":
            p.add_argument("--fake-nodes", type=int, default=0, metavar="N",
                           help="run N simulated nodes fake-0..fake-N-1 (pods run without "
                                "processes) instead of a real node")
            p.add_argument("--node-name", default="",
                           help="the real node's name (default: the host name)")
            p.add_argument("--node-ip", default="127.0.0.1",
                           help="the real node's InternalIP, where its kubelet server "
                                "listens (default 127.0.0.1: loopback only)")
            p.add_argument("--kubelet-port", type=int, default=10250,
                           help="port of the node's kubelet server (logs, exec, port-forward)")
            p.add_argument("--restart-backoff", type=float, default=10.0,
                           help="first crash-loop back-off of the real node in seconds "
                                "(doubles, max 5 min)")
            p.add_argument("--pod-cidr", default="",
                           help="the real node's pod CIDR (default: a /24 in 10.42.0.0/16 "
                                "chosen by the data dir)")
            p.add_argument("--nodes", type=int, default=1, metavar="N",
                           help="N real nodes: this machine's, and N-1 `pinnace agent`s, "
                                "each in a network namespace of its own (see local_nodes.py)")
            p.add_argument("--nodes-cidr", type=_network, default="10.43.0.0/24",
                           metavar="CIDR", help="the bridge between the nodes of --nodes "
                           "(default 10.43.0.0/24; node 1 has its first address)")
    sub.add_parser("image", help="the node's images: import FILE | ls | rm REF | pull REF",
                   add_help=False)
    p = sub.add_parser("down", help="stop a cluster's containers and remove its host setup")
    _common(p)
    p = sub.add_parser("kubeconfig", help="print the admin kubeconfig")
    _common(p)
    from pinnace.node_commands import add_parsers
    add_parsers(sub, _common)
    p = sub.add_parser("secrets", help="rotate: a new encryption key, every Secret "
                       "rewritten under it, the old key retired (the cluster stopped)")
    p.add_argument("action", choices=["rotate"])
    _common(p)
    p.add_argument("--encryption-provider-config", type=Path, default=None, metavar="FILE",
                   help="the configuration to rotate (default: DATA_DIR/pki's)")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = _config(args)
    local_nodes = None
    if args.command == "up" and args.nodes > 1 and config.real_node is not None:
        from pinnace.local_nodes import LocalNodes, LocalNodesError
        local_nodes = LocalNodes(Path(args.data_dir), args.nodes, cidr=args.nodes_cidr)
        try:
            await asyncio.to_thread(local_nodes.setup)
        except LocalNodesError as e:
            print(f"pinnace: the nodes' network: {e}", file=sys.stderr)
            return 1
        node_ip = config.real_node.node_ip
        config = dataclasses.replace(config, listen_also=(local_nodes.host_ip,),
                                     real_node=dataclasses.replace(
            config.real_node, node_ip=local_nodes.host_ip if node_ip == "127.0.0.1"
            else node_ip))
    cluster = Cluster(config)
    try:
        await cluster.start()
    except EncryptionConfigError as e:
        print(f"pinnace: encryption provider config: {e}", file=sys.stderr)
        return 1
    except DecryptionError as e:
        print(f"pinnace: cannot read the store: {e} (was a key removed from the encryption "
              "configuration before its data was rewritten?)", file=sys.stderr)
        return 1
    except AuditPolicyError as e:
        print(f"pinnace: audit log: {e}", file=sys.stderr)
        return 1
    except StoreError as e:
        print(f"pinnace: store: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pinnace: cannot listen on {args.host}:{args.port}: {e.strerror}",
              file=sys.stderr)
        return 1
    pid_path = Path(args.data_dir) / PID_FILE
    pid_path.write_text(f"{os.getpid()}\n")
    if local_nodes is not None and cluster.server.node_join is not None:
        # the other nodes join over the network with the node token, as remote agents do
        await local_nodes.start_agents(
            f"https://{local_nodes.host_ip}:{cluster.server.port}",
            Path(args.data_dir) / NODE_TOKEN_FILE, "--lease-period", str(config.lease_period),
            "--restart-backoff", str(args.restart_backoff))
    # the kubeconfig last: its presence tells scripts and tests that the cluster is ready
    path = cluster.server.write_kubeconfig()
    print(f"pinnace: API at {cluster.server.url}; kubeconfig: {path}", flush=True)
    print(f"pinnace: try  KUBECONFIG={path} kubectl get nodes", flush=True)
    if cluster.server.node_join is not None:
        print(f"pinnace: nodes join with  pinnace agent --server URL --token "
              f"{cluster.server.node_join.token}  (also in {args.data_dir}/node-token)",
              flush=True)
    await stop.wait()
    print("pinnace: stopping", flush=True)
    if local_nodes is not None:
        await local_nodes.stop_agents()
    await cluster.stop()
    pid_path.unlink(missing_ok=True)
    return 0


def _config(args: argparse.Namespace) -> ClusterConfig:
    """`up`/`server`'s flags as a cluster: `server` runs no node; `up` simulated nodes
    with --fake-nodes, else this machine when it can be one (else it says why not)."""
    real_node = None
    if args.command == "up" and not args.fake_nodes:
        why = real_node_unavailable()
        if why:
            print(f"pinnace: no node: {why}; `pinnace up --fake-nodes N` runs simulated nodes",
                  file=sys.stderr, flush=True)
        else:
            real_node = RealNodeConfig(node_name=args.node_name, node_ip=args.node_ip,
                                       kubelet_port=args.kubelet_port,
                                       restart_backoff=args.restart_backoff,
                                       pod_cidr=args.pod_cidr)
    return ClusterConfig(
        data_dir=Path(args.data_dir), host=args.host, port=args.port,
        history_window=args.history_window,
        controller_settings=ControllerSettings(
            node_monitor_grace_period=args.node_monitor_grace_period,
            job_backoff_base=args.job_backoff, lb_pool=args.lb_pool),
        fake_nodes=args.fake_nodes if args.command == "up" else 0, real_node=real_node,
        encryption_provider_config=args.encryption_provider_config,
        audit_policy_file=args.audit_policy_file, audit_log_path=args.audit_log_path,
        service_account_max_token_expiration=args.service_account_max_token_expiration,
        etcd=_etcd_config(args), leader_election=_leader_election(args),
        advertise_address=args.advertise_address)


def _running_server(data_dir: Path) -> int | None:
    """The pid of a `pinnace up` or `server` of data_dir that still runs, per its pid file."""
    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
        ours = b"pinnace" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if ours and not _gone(pid) else None


def _rotate(data_dir: Path, config: Path | None) -> int:
    """`secrets rotate`, refused while a server of data_dir runs (see key_rotation.py)."""
    from pinnace.apiserver.key_rotation import rotate
    pid = _running_server(data_dir)
    if pid is not None:
        print(f"pinnace: a server of {data_dir} runs (pid {pid}): stop it first, rotate, "
              "then start it again", file=sys.stderr)
        return 1
    if not (data_dir / "state.db").exists():
        print(f"pinnace: no cluster in {data_dir}", file=sys.stderr)
        return 1
    try:
        print(f"pinnace: {asyncio.run(rotate(data_dir, config))}")
    except EncryptionConfigError as e:
        print(f"pinnace: {e}", file=sys.stderr)
        return 1
    return 0


def _running_up(data_dir: Path) -> int | None:
    """The pid of the `pinnace up` serving data_dir, if its pid file names one that is
    still that process (a stale file's pid may belong to anything by now)."""
    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    ours = b"pinnace.cli" in argv or any(a.endswith(b"/pinnace") for a in argv)
    serves = str(data_dir).encode() in argv or str(data_dir.resolve()).encode() in argv
    return pid if ours and b"up" in argv and serves else None


async def _down(data_dir: Path) -> int:
    """Stop `pinnace up` if it runs for data_dir, then every container of data_dir, and
    remove mounts, network namespaces, links, nftables tables and cgroups made for it;
    then say what was stopped."""
    stopped_up = None
    pid = _running_up(data_dir)
    if pid is not None:
        if await _terminate(pid):
            stopped_up = pid
        else:
            print(f"pinnace: pinnace up (pid {pid}) did not stop within 10 s",
                  file=sys.stderr)
    from pinnace.agent.network import remove_routes
    from pinnace.local_nodes import agent_pid, teardown
    pid = agent_pid(data_dir)  # DIR is a `pinnace agent`'s
    if pid is not None and await _terminate(pid):
        print(f"pinnace: stopped pinnace agent (pid {pid})")
    for said in await asyncio.to_thread(teardown, data_dir):  # `up --nodes`' other nodes
        print(f"pinnace: {said}")
    containers = await _stop_containers(data_dir)
    await _remove_service_table(data_dir)
    await remove_routes(data_dir)
    print(f"pinnace: {down_report(data_dir, stopped_up, containers)}")
    return 0


async def _remove_service_table(data_dir: Path) -> None:
    """Delete the service proxy's nftables table of data_dir (the table outlives the proxy,
    as kube-proxy's rules do); nothing else of the host's ruleset is touched. Runs after
    `_stop_containers`, which removed the bridge and the hostPort table already."""
    from pinnace.agent.network import bridge_name, dir_hash
    from pinnace.proxy import ProxyError, remove_table, table_name
    try:
        await remove_table(table_name(dir_hash(data_dir)), bridge=bridge_name(data_dir))
    except (ProxyError, OSError) as e:
        print(f"pinnace: removing the service table failed: {e}", file=sys.stderr)


async def _terminate(pid: int, *, within: float = 10.0) -> bool:
    """SIGTERM, then wait until the process is gone; False if it still runs after `within`
    seconds (stopping the components and the API server takes a moment)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    for _ in range(int(within / 0.05)):
        if _gone(pid):
            return True
        await asyncio.sleep(0.05)
    return _gone(pid)


def _gone(pid: int) -> bool:
    """The process has exited: no such pid, or a zombie waiting for its parent to reap it
    (an `up` started by a script or a test stays one until that parent waits)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


async def _stop_containers(data_dir: Path) -> int | None:
    """Remove every container and the host setup of data_dir's runtime; how many
    containers were not exited yet (None when no runtime ever ran for data_dir)."""
    if not (data_dir / "runtime").exists():
        return None
    from pinnace.agent.kubelet import default_pod_cidr
    from pinnace.agent.runtime.interface import ContainerState
    from pinnace.agent.runtime.runc import RuncRuntime
    from pinnace.agent.volumes import VolumeManager, local_path
    runtime = RuncRuntime(data_dir, pod_cidr=default_pod_cidr(data_dir))
    # counted before the cleanup, which says nothing of what it stopped; a container whose
    # monitor is gone (UNKNOWN) may still run, so it counts as one stopped
    running = sum(1 for c in await runtime.list_containers()
                  if c.state is not ContainerState.EXITED)
    await runtime.cleanup_all()
    await VolumeManager(None, pods_dir=data_dir / "pods", node_name="").cleanup_all()
    local_path.unmount_all(data_dir / "storage")  # local-path volumes; their data stays
    return running


def down_report(data_dir: Path, up_pid: int | None, containers: int | None) -> str:
    """What `down` stopped, in words: "stopped pinnace up (pid N) and 3 containers",
    "stopped 3 containers of DIR", or "nothing of DIR runs on this host" when neither an
    `up` nor a container ran (`containers` None: DIR never had a runtime)."""
    count = containers or 0
    what = f"{count} container{'' if count == 1 else 's'}"
    if up_pid is not None:
        return f"stopped pinnace up (pid {up_pid})" + (f" and {what}" if count else "")
    if count:
        return f"stopped {what} of {data_dir}"
    return f"nothing of {data_dir} runs on this host"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["image"]:
        from pinnace.agent.images.command import main as image_main
        rest = argv[1:]
        if rest and "--data-dir" not in rest and not any(a.startswith("--data-dir=")
                                                          for a in rest):
            rest = [*rest, "--data-dir", default_data_dir()]
        return image_main(rest)
    args = _parser().parse_args(argv)
    if args.data_dir is None:
        args.data_dir = default_data_dir()
    if args.command == "kubeconfig":
        path = Path(args.data_dir) / "kubeconfig"
        if not path.exists():
            print(f"pinnace: no kubeconfig in {args.data_dir}: is `pinnace up` running?",
                  file=sys.stderr)
            return 1
        sys.stdout.write(path.read_text())
        return 0
    if args.command == "secrets":
        return _rotate(Path(args.data_dir), args.encryption_provider_config)
    if args.command == "down":
        return asyncio.run(_down(Path(args.data_dir)))
    if args.command in ("agent", "token"):
        from pinnace.node_commands import agent_main, token_main
        return agent_main(args) if args.command == "agent" else token_main(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
