"""What several benchmarks need alike: a free loopback port, percentiles, a bounded fan-out
of API calls, the stand-in test images, and stopping a `pinnace up` they started."""

from __future__ import annotations

import asyncio
import math
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
