"""nfs volumes (kubelet's nfs plugin): `volumes[].nfs` in a pod, or a claim bound to a PV
with an `nfs` source, mounted at `<pod>/volumes/kubernetes.io~nfs/<volume>` and bound into
containers from there.

Two ways to mount, chosen per host:

- the kernel's NFS client where the kernel has one (`nfs` in /proc/filesystems, after a
  `modprobe nfs`): `mount -t nfs [-o ro] server:path target`, as the kubelet runs it;
- otherwise `nfs_fuse.py`, a userspace NFSv3 client served through FUSE by a process of its
  own (see that module), so nfs volumes work on any Linux host with /dev/fuse.

Never hang the agent (kubernetes#31272, #101622): nothing here touches a path inside an NFS
mount. The mount table is read from /proc, the mount command and the FUSE process's start
are awaited with a deadline (a `mount` still stuck then is killed and abandoned), unmounts
are lazy (MNT_DETACH returns at once, even with the server gone), and the FUSE process is
removed by PID (SIGTERM, then SIGKILL). A dead server therefore costs a pod EIO on its own
volume, never another pod's sync.

State: `<pod>/plugins/kubernetes.io~nfs/<volume>.json` records how a volume was mounted and,
for FUSE, the process (pid and its start time in /proc, so a reused pid is not mistaken
for it). A restarted agent adopts a mount whose process is alive and whose mount is in the
table; anything else is cleaned up and mounted again. `stop_strays` finds FUSE processes of
a data dir by their command line, for `pinnace down` after state was lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pinnace.agent.volumes import host
from pinnace.agent.volumes.errors import SetUpError

log = logging.getLogger(__name__)

PLUGIN_DIR = "kubernetes.io~nfs"
FUSE_SCRIPT = str(Path(__file__).with_name("nfs_fuse.py"))
FUSE_TYPE = "fuse.pinnace-nfs"
MOUNT_TIMEOUT = 30.0  # the whole mount, command or FUSE start; NFS calls time out at 10 s
PATH_TIMEOUT = 15.0  # a check on the mount point itself (its thread is abandoned after)
_kernel_nfs: bool | None = None


def _filesystems() -> set[str]:
    with open("/proc/filesystems") as f:
        return {line.split()[-1] for line in f if line.strip()}


def kernel_has_nfs() -> bool:
    """Whether `mount -t nfs` can work here: the kernel module is loaded (or loads) and
    the mount.nfs helper (Debian's nfs-common) is installed. Asked once."""
    global _kernel_nfs
    if _kernel_nfs is None:
        if "nfs" not in _filesystems():
            import subprocess
            try:
                subprocess.run(["modprobe", "-q", "nfs"], capture_output=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        helper = any(os.path.exists(f"{d}/mount.nfs") for d in ("/sbin", "/usr/sbin"))
        _kernel_nfs = "nfs" in _filesystems() and helper
    return _kernel_nfs


def state_file(pod_dir: Path, volume: str) -> Path:
    return pod_dir / "plugins" / PLUGIN_DIR / f"{volume}.json"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat);
    None when it is gone (or a zombie: it has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] == "Z" else fields[19]


def _mount_type(target: Path) -> str | None:
    """The filesystem type mounted at `target` (the topmost one), from /proc."""
    found = None
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if host.unescape(fields[1]) == str(target):
                found = fields[2]
    return found


def _alive(state: dict[str, Any]) -> bool:
    pid = state.get("pid")
    return bool(pid) and _start_time(pid) == state.get("start_time")


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _wanted(server: str, export: str, read_only: bool, kind: str) -> dict[str, Any]:
    return {"server": server, "path": export, "read_only": read_only, "kind": kind}


async def setup(target: Path, state_path: Path, source: dict[str, Any], *,
                read_only: bool) -> None:
    """Make `target` the export of `source` (idempotent: a live mount of the same export is
    kept; an agent restart adopts it)."""
    server, export = source.get("server", ""), source.get("path", "")
    if not server or not export:
        raise SetUpError("nfs volume requires server and path")
    read_only = read_only or bool(source.get("readOnly"))
    kind = "kernel" if await asyncio.to_thread(kernel_has_nfs) else "fuse"
    wanted = _wanted(server, export, read_only, kind)
    state = _read_state(state_path)
    if state is not None and {k: state.get(k) for k in wanted} == wanted:
        mounted = await asyncio.to_thread(_mount_type, target)
        if kind == "kernel" and mounted is not None and mounted.startswith("nfs"):
            return
        if kind == "fuse" and mounted == FUSE_TYPE and _alive(state):
            return
    await teardown(target, state_path)  # whatever is half there: a dead process, a stale mount
    try:  # a mount point that is still a hung mount would block mkdir's stat: bounded
        await asyncio.wait_for(asyncio.to_thread(_make_dir, target, state_path), PATH_TIMEOUT)
    except TimeoutError:
        raise SetUpError(f"mount point {target} did not answer within {PATH_TIMEOUT:.0f}s"
                         ) from None
    if kind == "kernel":
        await _kernel_mount(target, server, export, read_only)
        _write_state(state_path, wanted)
    else:
        pid = await _fuse_mount(target, server, export, read_only)
        _write_state(state_path, {**wanted, "pid": pid, "start_time": _start_time(pid)})


def _make_dir(target: Path, state_path: Path) -> None:
    target.mkdir(mode=0o750, parents=True, exist_ok=True)
    state_path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _failed(command: str, arguments: str, output: str, status: str = "") -> SetUpError:
    """The kubelet's wording of a failed mount (mount-utils' MountError): `status` is the
    command's exit status; the FUSE process has none to give, so its output stands there."""
    return SetUpError(f"mount failed: {status or output}\nMounting command: {command}\n"
                      f"Mounting arguments: {arguments}\nOutput: {output}")


async def _kernel_mount(target: Path, server: str, export: str, read_only: bool) -> None:
    args = ["-t", "nfs", *(["-o", "ro"] if read_only else []), f"{server}:{export}",
            str(target)]
    proc = await asyncio.create_subprocess_exec("mount", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), MOUNT_TIMEOUT)
    except TimeoutError:
        proc.kill()  # may sit in D state on a dead server: abandoned, never awaited again
        raise _failed("mount", " ".join(args), f"timed out after {MOUNT_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        raise _failed("mount", " ".join(args), out.decode(errors="replace").strip(),
                      f"exit status {proc.returncode}")


async def _fuse_mount(target: Path, server: str, export: str, read_only: bool) -> int:
    """Start the FUSE process; its pid once it reported the mount in place."""
    args = [server, export, str(target), *(["--read-only"] if read_only else [])]
    err_log = target.parent / f".{target.name}.log"
    # -I: the script's own dir (this package: errors.py, secret.py, …) stays off sys.path
    with open(err_log, "ab") as err:  # noqa: ASYNC230 - a local log file, opened once
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", FUSE_SCRIPT, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=err, cwd="/")
    assert proc.stdout is not None
    await proc.wait()  # the launcher forks and exits at once; the mount is its child
    pid: int | None = None
    try:
        async with asyncio.timeout(MOUNT_TIMEOUT):
            first = (await proc.stdout.readline()).decode().strip()
            if first.startswith("pid "):
                pid = int(first.split()[1])
            line = (await proc.stdout.readline()).decode().strip()
    except TimeoutError:
        line = f"error timed out after {MOUNT_TIMEOUT:.0f}s"
    if line == "ok" and pid is not None:
        return pid
    if pid is not None:
        await _stop_process(pid, _start_time(pid))
    await asyncio.to_thread(_detach, target)
    detail = line.removeprefix("error ").strip() or "the mount process exited"
    raise _failed("nfs_fuse (userspace NFSv3 over FUSE)", " ".join(args), detail)


async def teardown(target: Path, state_path: Path) -> None:
    """Unmount (lazily) and stop the FUSE process; never waits on the server."""
    state = _read_state(state_path)
    await asyncio.to_thread(_detach, target)
    if state is not None and state.get("pid"):
        await _stop_process(state["pid"], state.get("start_time"))
    await asyncio.to_thread(state_path.unlink, missing_ok=True)


def _detach(target: Path) -> None:
    for _ in range(8):  # stacked mounts: one detach each
        if _mount_type(target) is None:
            return
        try:
            host.unmount(target)
        except OSError:
            return


async def _stop_process(pid: int, start_time: str | None) -> None:
    """SIGTERM, then SIGKILL after 2 s; only the process that was started (start time)."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        if start_time is None or _start_time(pid) != start_time:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _start_time(pid) == start_time:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)


async def teardown_pod(pod_dir: Path) -> None:
    """Every nfs volume of a pod: from its state files, then any mount process left below
    the pod's directory whose state was lost (found by its command line)."""
    plugin = pod_dir / "plugins" / PLUGIN_DIR
    if plugin.is_dir():
        for state_path in sorted(plugin.glob("*.json")):
            target = pod_dir / "volumes" / PLUGIN_DIR / state_path.stem
            await teardown(target, state_path)
    await stop_strays(pod_dir)


def fuse_processes(root: Path) -> list[tuple[int, str]]:
    """(pid, mount point) of the FUSE NFS processes whose mount point is below `root`."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if FUSE_SCRIPT in argv:
            rest = [a for a in argv[argv.index(FUSE_SCRIPT) + 1:] if not a.startswith("--")]
            if len(rest) >= 3 and rest[2].startswith(prefix):
                found.append((int(entry), rest[2]))
    return found


async def stop_strays(root: Path) -> None:
    """Stop every FUSE NFS process mounting below `root`."""
    for pid, point in await asyncio.to_thread(fuse_processes, root):
        await asyncio.to_thread(_detach, Path(point))
        await _stop_process(pid, _start_time(pid))
