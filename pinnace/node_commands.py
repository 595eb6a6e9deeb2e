"""`pinnace agent` and `pinnace token`: nodes joining a cluster, k3s' way.

    pinnace agent --server URL[,URL…] --token T [--node-name N] [--node-ip IP] [--data-dir DIR]
    pinnace token create [--ttl 24h] [--description TEXT]   prints a join token
    pinnace token list | delete ID

`agent` joins (see `client/join.py`) and runs the node (`cluster.Agent`) until SIGINT
or SIGTERM. `token` manages bootstrap tokens as Secrets in kube-system through the
API (the admin kubeconfig of DATA_DIR); a bootstrap token `K10<CA hash>::<id>.<secret>`
joins nodes until it expires or is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import re
import signal
import sys
from pathlib import Path

from pinnace.api import errors, join_tokens
from pinnace.api.timestamps import format_time
from pinnace.cluster import Agent, AgentConfig, AgentError, RealNodeConfig

AGENT_PID_FILE = "agent.pid"


def duration(value: str) -> float:
    """`90s`, `30m`, `24h`, `7d`, or a number of seconds; 0 means never expires."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (e.g. 24h, 30m, 90s)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def add_parsers(sub: argparse._SubParsersAction, common) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agent", help="run this machine as a node of a cluster elsewhere")
    common(p)
    p.add_argument("--server", required=True,
                   help="the API server, https://HOST:PORT, or several of one cluster "
                        "(URL,URL…): the agent moves to the next when one goes away")
    token = p.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="a join token: the server's DATA_DIR/node-token, or "
                                       "`pinnace token create`'s")
    token.add_argument("--token-file", type=Path,
                       help="a file holding the join token (not visible in `ps`)")
    p.add_argument("--node-name", default="", help="the node's name (default: the host name)")
    p.add_argument("--node-ip", default="127.0.0.1",
                   help="the node's InternalIP: its kubelet server listens there, other "
                        "nodes route this node's pods through it")
    p.add_argument("--kubelet-port", type=int, default=10250)
    p.add_argument("--pod-cidr", default="",
                   help="the node's pod CIDR (default: the one the server assigns)")
    p.add_argument("--restart-backoff", type=float, default=10.0,
                   help="first crash-loop back-off in seconds (doubles, max 5 min)")
    p.add_argument("--lease-period", type=float, default=10.0,
                   help="seconds between the node's heartbeats")
    p.add_argument("-v", "--verbose", action="store_true")
    p = sub.add_parser("token", help="join tokens: create [--ttl] | list | delete ID")
    common(p)
    p.add_argument("action", choices=["create", "list", "delete"])
    p.add_argument("id", nargs="?", default="", help="the token to delete (its id)")
    p.add_argument("--ttl", type=duration, default=duration("24h"),
                   help="how long the token joins nodes (default 24h; 0: forever)")
    p.add_argument("--description", default="")


async def _agent(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    try:
        token = args.token or args.token_file.read_text().strip()
    except OSError as e:
        print(f"pinnace: cannot read the token file: {e}", file=sys.stderr)
        return 1
    agent = Agent(AgentConfig(
        server=args.server, token=token, data_dir=data_dir,
        lease_period=args.lease_period,
        node=RealNodeConfig(node_name=args.node_name, node_ip=args.node_ip,
                            kubelet_port=args.kubelet_port, pod_cidr=args.pod_cidr,
                            restart_backoff=args.restart_backoff)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.start()
    except AgentError as e:
        print(f"pinnace: {e}", file=sys.stderr, flush=True)
        return 1
    except errors.ApiError as e:
        print(f"pinnace: the server refused: {e}", file=sys.stderr, flush=True)
        return 1
    (data_dir / AGENT_PID_FILE).write_text(f"{os.getpid()}\n")
    print(f"pinnace: node {agent.kubelet.name if agent.kubelet else ''} joined "
          f"{args.server}", flush=True)
    await stop.wait()
    print("pinnace: stopping", flush=True)
    await agent.stop()
    (data_dir / AGENT_PID_FILE).unlink(missing_ok=True)
    return 0


def agent_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_agent(args))


async def _token(args: argparse.Namespace) -> int:
    from pinnace.client.client import Client
    from pinnace.client.transport import HttpTransport
    data_dir = Path(args.data_dir)
    kubeconfig = data_dir / "kubeconfig"
    if not kubeconfig.exists():
        print(f"pinnace: no kubeconfig in {data_dir}: is the server running?", file=sys.stderr)
        return 1
    ca_hash = join_tokens.ca_hash((data_dir / "pki" / "ca.crt").read_bytes())
    client = Client(HttpTransport.from_kubeconfig(kubeconfig), field_manager="pinnace")
    secrets = client.resource("v1", "Secret")
    ns = join_tokens.BOOTSTRAP_NAMESPACE
    now = datetime.datetime.now(datetime.UTC)
    try:
        if args.action == "create":
            token_id, secret = join_tokens.new_bootstrap_token()
            await client.create(secrets, join_tokens.bootstrap_secret(
                token_id, secret, ttl=args.ttl, description=args.description, now=now),
                namespace=ns)
            print(join_tokens.JoinToken(ca_hash, f"{token_id}.{secret}"))
        elif args.action == "list":
            listed = await client.list(secrets, ns)
            rows = [("ID", "EXPIRES", "DESCRIPTION")]
            for s in listed["items"]:
                if s.get("type") != join_tokens.BOOTSTRAP_TYPE:
                    continue
                expires = join_tokens.expiration(s)
                rows.append((join_tokens.secret_field(s, "token-id"),
                             format_time(expires) if expires else "<never>",
                             join_tokens.secret_field(s, "description")))
            for row in rows:
                print(f"{row[0]:<8}{row[1]:<22}{row[2]}".rstrip())
        else:
            if not args.id:
                print("pinnace: token delete needs the token's ID", file=sys.stderr)
                return 1
            await client.delete(secrets, join_tokens.secret_name(args.id), ns)
            print(f"pinnace: token {args.id} deleted")
    except errors.ApiError as e:
        print(f"pinnace: {e}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return 0


def token_main(args: argparse.Namespace) -> int:
    return asyncio.run(_token(args))
