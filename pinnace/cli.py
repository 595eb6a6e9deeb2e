"""The `pinnace` command.

    pinnace up [--data-dir DIR] [--port PORT] [--fake-nodes N]   a whole cluster, in the foreground
    pinnace server …                        the control plane alone (API, controllers, scheduler)
    pinnace kubeconfig [--data-dir DIR]     print the admin kubeconfig
    pinnace image import|ls|rm [--data-dir DIR] …   the node's image store

`up` and `server` write DIR/kubeconfig once the API answers and the components
are running, and exit cleanly on SIGINT or SIGTERM. Components reach the API
server through the API, like any client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from pinnace.agent.fake_nodes import FakeNodes
from pinnace.apiserver.local import LocalTransport
from pinnace.apiserver.server import ApiServer, default_data_dir
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.manager import ControllerSettings, build_controllers
from pinnace.scheduler.scheduler import Scheduler


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
                                "processes)")
    sub.add_parser("image", help="the node's images: import FILE | ls | rm REF",
                   add_help=False)
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
    if args.command == "up":
        # heartbeat four times per grace period, as a kubelet's 10 s lease does for 40 s
        components.append(FakeNodes(client, factory, count=args.fake_nodes,
                                    lease_period=min(10.0, args.node_monitor_grace_period / 4)))
    await factory.start()
    tasks = [asyncio.create_task(c.run(), name=type(c).__name__) for c in components]
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
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
