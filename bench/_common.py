"""What several benchmarks need alike: a free loopback port, percentiles, a bounded fan-out
of API calls, the stand-in test images, and stopping a `pinnace up` they started."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the usual small race with whoever binds next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """Nearest rank (with 50 samples p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def in_parallel(n: int, fn: Callable[[int], Awaitable[object]],
                      concurrency: int = 32) -> None:
    """`fn(0)` … `fn(n-1)`, at most `concurrency` at a time."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)
    await asyncio.gather(*(worker() for _ in range(concurrency)))


def build_images(tmp: Path, images: Path | None = None) -> Path:
    """The stand-in busybox/nginx/perl images (`scripts/build-test-images`), or `images`
    when the caller already has them."""
    if images is not None:
        return images
    out = tmp / "images"
    r = subprocess.run([str(REPO / "scripts" / "build-test-images"), str(out)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"build-test-images failed: {r.stderr.strip()[-2000:]}")
    return out


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> None:
    """SIGTERM a process this benchmark started, SIGKILL it after 30 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def api_session(proc: subprocess.Popen[bytes] | subprocess.Popen[str], data_dir: Path,
                      *, limit: int = 8) -> tuple[object, str]:
    """Wait for the kubeconfig a `pinnace up` writes into data_dir, then an aiohttp session
    speaking to it as the admin (CA pinned, bearer token) and the server's base URL."""
    import base64
    import ssl

    import aiohttp
    import yaml

    kubeconfig = data_dir / "kubeconfig"
    while not kubeconfig.exists():
        if proc.poll() is not None:
            raise SystemExit("pinnace up failed")
        await asyncio.sleep(0.01)
    cfg = yaml.safe_load(kubeconfig.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
    token = cfg["users"][0]["user"]["token"]
    ctx = ssl.create_default_context(cadata=ca.decode())
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
                                    headers={"Authorization": f"Bearer {token}"})
    return session, cfg["clusters"][0]["cluster"]["server"]


def process_tree(root: int) -> list[int]:
    """root and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """user + system CPU time of root and its descendants: on a shared machine this,
    not the wall time, says what the work cost."""
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")
