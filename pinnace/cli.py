"""The `pinnace` command.

    pinnace up [--data-dir DIR] [--port PORT] [--fake-nodes N]   a whole cluster, in the foreground
    pinnace server …                        the control plane alone (API, controllers, scheduler)
    pinnace down [--data-dir DIR]           stop a cluster's containers, undo its host setup
    pinnace kubeconfig [--data-dir DIR]     print the admin kubeconfig
    pinnace image import|ls|rm [--data-dir DIR] …   the node's image store

`up` and `server` write DIR/kubeconfig once the API answers and the components
are running, and exit cleanly on SIGINT or SIGTERM. Components reach the API
server through the API, like any client.

`up` runs one real node (this machine, containers under runc) when it runs as root
with runc and the CNI plugins installed, or N simulated nodes with `--fake-nodes N`.
Stopping `up` leaves containers running, as stopping a kubelet does; the next `up`
adopts them. `down` stops them and removes what pinnace set up on the host for DIR
(mounts, network namespaces, links, nftables tables, cgroups), keeping the cluster's
state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from pinnace.agent.fake_nodes import FakeNodes
from pinnace.agent.network.cni import CNI_PATHS
from pinnace.apiserver import pki
from pinnace.apiserver.local import LocalTransport
from pinnace.apiserver.server import ApiServer, default_data_dir
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.manager import ControllerSettings, build_controllers
from pinnace.scheduler.scheduler import Scheduler

PID_FILE = "pinnace.pid"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="state, certificates and kubeconfig (default: /var/lib/pinnace as root, "
                        "~/.local/share/pinnace otherwise)")


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
        p.add_argument("--history-window", type=int, default=10_000,
                       help="revisions of history kept for watches before compaction")
        p.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                       help="seconds without a node heartbeat before it is NotReady")
        p.add_argument("--job-backoff", type=float, default=10.0,
                       help="base of the Job pod-failure backoff in seconds (doubles, max 6 min)")
        p.add_argument("-v", "--verbose", action="store_true")
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
    sub.add_parser("image", help="the node's images: import FILE | ls | rm REF | pull REF",
                   add_help=False)
    p = sub.add_parser("down", help="stop a cluster's containers and remove its host setup")
    _common(p)
    p = sub.add_parser("kubeconfig", help="print the admin kubeconfig")
    _common(p)
    return parser


async def _serve(args: argparse.Namespace) -> int:
    server = ApiServer(args.data_dir, host=args.host, port=args.port,
                       history_window=args.history_window)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as e:
        print(f"pinnace: cannot listen on {args.host}:{args.port}: {e.strerror}",
              file=sys.stderr)
        await server.stop()
        return 1
    # components in this process use the API's handlers directly, without the socket
    assert server.registry is not None
    client = Client(LocalTransport(server.registry), field_manager="pinnace")
    factory = InformerFactory(client)
    settings = ControllerSettings(node_monitor_grace_period=args.node_monitor_grace_period,
                                  job_backoff_base=args.job_backoff)
    components: list = [*build_controllers(client, factory, settings),
                        Scheduler(client, factory)]
    # heartbeat four times per grace period, as a kubelet's 10 s lease does for 40 s
    lease_period = min(10.0, args.node_monitor_grace_period / 4)
    if args.command == "up" and args.fake_nodes:
        components.append(FakeNodes(client, factory, count=args.fake_nodes,
                                    lease_period=lease_period))
    elif args.command == "up":
        why = real_node_unavailable()
        if why:
            print(f"pinnace: no node: {why}; `pinnace up --fake-nodes N` runs simulated nodes",
                  file=sys.stderr, flush=True)
        else:
            components.append(_kubelet(args, client, factory, lease_period))
    await factory.start()
    tasks = [asyncio.create_task(c.run(), name=type(c).__name__) for c in components]
    pid_path = Path(args.data_dir) / PID_FILE
    pid_path.write_text(f"{os.getpid()}\n")
    path = server.write_kubeconfig()
    print(f"pinnace: API at {server.url}; kubeconfig: {path}", flush=True)
    print(f"pinnace: try  KUBECONFIG={path} kubectl get nodes", flush=True)
    await stop.wait()
    print("pinnace: stopping", flush=True)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    await factory.stop()
    await client.close()
    await server.stop()
    pid_path.unlink(missing_ok=True)
    return 0


def real_node_unavailable() -> str:
    """Why this machine cannot run a real node ("" when it can)."""
    if os.geteuid() != 0:
        return "a real node needs root (namespaces, cgroups, mounts)"
    if shutil.which("runc") is None:
        return "runc is not installed (scripts/setup installs it)"
    if not any(Path(d, "bridge").exists() for d in CNI_PATHS):
        return "the CNI plugins are not installed (scripts/setup installs them)"
    return ""


def _kubelet(args: argparse.Namespace, client: Client, factory: InformerFactory,
             lease_period: float) -> object:
    from pinnace.agent.kubelet import Kubelet, KubeletSettings
    data_dir = Path(args.data_dir)
    certs = pki.ensure_pki(data_dir, hosts=[args.node_ip])
    return Kubelet(client, factory, KubeletSettings(
        data_dir=data_dir, node_name=args.node_name, node_ip=args.node_ip,
        pod_cidr=args.pod_cidr, kubelet_port=args.kubelet_port, tls_cert=certs.server_cert,
        tls_key=certs.server_key, token=pki.ensure_kubelet_token(data_dir),
        lease_period=lease_period, backoff_base=args.restart_backoff))


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
    remove mounts, network namespaces, links, nftables tables and cgroups made for it."""
    pid = _running_up(data_dir)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                os.kill(pid, 0)
                await asyncio.sleep(0.05)
        except OSError:
            pass  # gone
    if not (data_dir / "runtime").exists():
        print(f"pinnace: nothing of {data_dir} runs on this host")
        return 0
    from pinnace.agent.kubelet import default_pod_cidr
    from pinnace.agent.runtime.runc import RuncRuntime
    from pinnace.agent.volumes import VolumeManager
    runtime = RuncRuntime(data_dir, pod_cidr=default_pod_cidr(data_dir))
    await runtime.cleanup_all()
    await VolumeManager(None, pods_dir=data_dir / "pods", node_name="").cleanup_all()
    print(f"pinnace: stopped the containers of {data_dir} and removed its host setup")
    return 0


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
    if args.command == "down":
        return asyncio.run(_down(Path(args.data_dir)))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
