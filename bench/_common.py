"""What several benchmarks need alike: a free loopback port, percentiles, a bounded fan-out
of API calls, the stand-in test images, stopping a `pinnace up` they started, reading the
kubeconfig it writes, waiting for a condition, and printing their one result table."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import yaml

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


class Kubeconfig(NamedTuple):
    server: str  # https://127.0.0.1:<port>
    token: str
    ca_pem: bytes


def read_kubeconfig(path: Path) -> Kubeconfig:
    """The server, token and CA of the kubeconfig `pinnace up`/`server` wrote (one
    cluster, one user)."""
    cfg = yaml.safe_load(path.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    return Kubeconfig(cluster["server"], cfg["users"][0]["user"]["token"],
                      base64.b64decode(cluster["certificate-authority-data"]))


async def wait_until(cond: Callable[[], object], *, within: float, what: str = "condition",
                     interval: float = 0.1) -> None:
    """Poll `cond()` (a value or an awaitable one) until it is true; TimeoutError naming
    `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = cond()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(interval)


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


# -- memory and CPU of a process tree (root only for the cgroup) ---------------------------

def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; PSS shares the pages it has in common with other
    processes (the monitors' libraries) among them. (0, 0) once it is gone."""
    rss = pss = 0
    with contextlib.suppress(OSError, ValueError):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "Rss":
                    rss = int(rest.split()[0])
                elif key == "Pss":
                    pss = int(rest.split()[0])
    return rss, pss


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (by /proc/*/stat's parent pid)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process itself (its threads; not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuAccount:
    """CPU time of the calling benchmark and of every process it starts from then on (a
    `pinnace up`, and what that starts: monitors, OCI runtime calls, CNI plugins), from a
    cpuacct cgroup of their own: a figure that other load on a shared machine does not
    inflate, unlike latencies. Processes moved to cgroups of their own (containers) are
    not counted. cgroup v1's cpuacct only: `open` gives None elsewhere."""

    def __init__(self) -> None:
        self.root = Path("/sys/fs/cgroup/cpuacct")
        self.dir = self.root / f"pinnace-bench-cpu-{secrets.token_hex(4)}"
        self.dir.mkdir()
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    @classmethod
    def open(cls) -> CpuAccount | None:
        if not Path("/sys/fs/cgroup/cpuacct/cpuacct.usage").exists():
            return None
        return cls()

    def seconds(self) -> float:
        return int((self.dir / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        with contextlib.suppress(OSError):
            (self.root / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(50):  # the last monitors leave once their containers are gone
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        print(f"WARNING: left on the host: the cgroup {self.dir}", file=sys.stderr)


async def api_session(proc: subprocess.Popen[bytes] | subprocess.Popen[str], data_dir: Path,
                      *, limit: int = 8) -> tuple[object, str]:
    """Wait for the kubeconfig a `pinnace up` writes into data_dir, then an aiohttp session
    speaking to it as the admin (CA pinned, bearer token) and the server's base URL."""
    import ssl

    import aiohttp

    kubeconfig = data_dir / "kubeconfig"
    while not kubeconfig.exists():
        if proc.poll() is not None:
            raise SystemExit("pinnace up failed")
        await asyncio.sleep(0.01)
    server, token, ca = read_kubeconfig(kubeconfig)
    ctx = ssl.create_default_context(cadata=ca.decode())
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
                                    headers={"Authorization": f"Bearer {token}"})
    return session, server


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


def print_table(heads: Sequence[str], rows: Sequence[Sequence[object]], *,
                note: str = "") -> None:
    """Print a benchmark's result table: the first column (what was measured) left-aligned,
    the others right-aligned, each as wide as its widest cell, a rule under the heads, and
    a last line naming the Python and the CPU count (and `note`), since figures from
    another machine do not compare."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True)))

    print(line(heads))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus{', ' + note if note else ''})")


def markdown_table(heads: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A result table in Markdown, for benchmarks whose figures go into an issue as they
    are: what was measured left-aligned, the figures right-aligned."""
    lines = ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
