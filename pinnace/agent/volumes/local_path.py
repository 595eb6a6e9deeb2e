"""local-path volumes on the host: one ext4 file system per volume, in a sparse file,
loop-mounted at the volume's directory, so a pod writing past its claim's size gets
ENOSPC ("No space left on device") — the size local-path-provisioner never enforced.

    <storage dir>/pvc-<uid>_<ns>_<claim>            the volume: a mount point
    <storage dir>/.backing/pvc-<uid>_<ns>_<claim>.ext4   its file system (sparse)

Why a loop-mounted file system per volume: ENOSPC is what a full disk says, `df` in the
pod shows the claim's size, and it needs only what every Linux host has (loop devices,
ext4, e2fsprogs). Project quotas would need the data dir on XFS (or ext4 made with
the `project` feature) mounted with prjquota, and ext4's quota answers EDQUOT
("Disk quota exceeded"), not ENOSPC. The file is sparse (thin provisioning: a claim
costs the host what is written into it). ext4 is made with no reserved blocks and an
inode per 16 KiB, so about 90% of a small volume and 98% of a 1 GiB one is usable.

Growing: the file is extended, the loop device told (LOOP_SET_CAPACITY), then the file
system grown online with resize2fs. The kernel allows online ext4 growth only to a
process with CAP_SYS_RESOURCE; where root lacks it (some VMs and containers), the
file system is grown offline as soon as no container holds it: the volume is unmounted
and, if that released the loop device (no bind mount in a container still holds the
file system), e2fsck + resize2fs run on the file and it is mounted again; otherwise
it is mounted again at once (the same loop device: never two devices on one file) and
the grow waits — Kubernetes' FileSystemResizePending ("(re-)start a pod").

Mounts outlive the agent (like containers); a restart finds them mounted and leaves
them (`ensure_mounted` is idempotent and reuses a loop device still attached to the
file). A volume's directory exists before its file system is mounted only for an
instant; `check_ready` (called when a pod's claim resolves to a local path) refuses a
volume whose backing file exists but which is not mounted, so a pod never writes to
the bare directory below the mount.

Where enforcement is impossible (`enforcement_unavailable` says why: not root, no
loop devices, no mkfs.ext4/resize2fs), a volume is a plain directory, created by a
rename so it appears complete; the agent records a Warning Event on the claim.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import struct
from pathlib import Path

from pinnace.agent.volumes import host
from pinnace.agent.volumes.errors import SetUpError

log = logging.getLogger(__name__)

BACKING_DIR = ".backing"
MIN_SIZE = 4 * 1024 * 1024  # ext4 needs room for its journal
_ALIGN = 4096
_MKFS = ("mkfs.ext4", "-q", "-F", "-m", "0", "-i", "16384")
_TOOL_TIMEOUT = 120.0


class StorageError(Exception):
    """A host operation on a volume failed (the message carries the tool's output)."""


def backing_file(volume_dir: Path) -> Path:
    return volume_dir.parent / BACKING_DIR / f"{volume_dir.name}.ext4"


def device_size(size: int) -> int:
    """The backing file's size for a volume of `size` bytes."""
    size = max(size, MIN_SIZE)
    return -(-size // _ALIGN) * _ALIGN


def enforcement_unavailable() -> str:
    """Why sizes cannot be enforced on this host ("" when they can)."""
    if os.geteuid() != 0:
        return "loop mounts need root"
    if not Path("/dev/loop-control").exists():
        return "this kernel offers no loop devices (/dev/loop-control)"
    for tool in ("mkfs.ext4", "debugfs", "resize2fs", "e2fsck", "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (e2fsprogs, util-linux, mount)"
    try:
        if "ext4" not in Path("/proc/filesystems").read_text().split():
            return "this kernel has no ext4"
    except OSError:
        pass
    return ""


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), _TOOL_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise StorageError(f"{argv[0]} did not finish within {_TOOL_TIMEOUT:.0f} s") from None
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise StorageError(f"{' '.join(argv)}: exit status {proc.returncode}: {text}")
    return text


def loop_devices(backing: Path) -> list[str]:
    """Loop devices attached to files at or below `backing` (a file or a directory)."""
    prefix = str(backing)
    found = []
    for sysdir in Path("/sys/block").glob("loop*"):
        try:
            target = (sysdir / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if target == prefix or target.startswith(prefix.rstrip("/") + "/"):
            found.append(f"/dev/{sysdir.name}")
    return sorted(found)


def fs_size(device: Path | str) -> int:
    """The ext4 file system's size in bytes, from its superblock. Read from the loop
    device while it is attached: the kernel's copy of the superblock lives in the
    device's cache and reaches the file only on writeback."""
    with open(device, "rb") as f:
        f.seek(1024)
        sb = f.read(1024)
    blocks_lo, = struct.unpack_from("<I", sb, 4)
    log_block, = struct.unpack_from("<I", sb, 24)
    incompat, = struct.unpack_from("<I", sb, 0x60)
    blocks_hi = struct.unpack_from("<I", sb, 0x150)[0] if incompat & 0x80 else 0
    return ((blocks_hi << 32) | blocks_lo) * (1024 << log_block)


def is_enforced(volume_dir: Path) -> bool:
    return backing_file(volume_dir).exists()


def check_ready(volume_dir: Path) -> None:
    """Refuse a local-path volume whose file system is not mounted (being made, being
    grown offline, or the node was cleaned): the pod waits and its sync retries."""
    if is_enforced(volume_dir) and not host.is_mounted(volume_dir):
        raise SetUpError(f"local volume {volume_dir.name} is not mounted on this node yet")


async def create(volume_dir: Path, size: int) -> None:
    """A new enforced volume of `size` bytes, mounted at `volume_dir` (idempotent: an
    existing backing file is kept, so data survives a repeated call)."""
    backing = backing_file(volume_dir)
    backing.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not backing.exists():
        partial = backing.with_name(backing.name + ".new")
        _extend(partial, device_size(size))
        await _run(*_MKFS, str(partial))
        # local-path's mode: any pod user may write (set in the image, so the volume is
        # never seen mounted with another)
        await _run("debugfs", "-w", "-R", "set_inode_field / mode 040777", str(partial))
        partial.rename(backing)  # only a complete file system is ever a volume's
    await ensure_mounted(volume_dir)


async def ensure_mounted(volume_dir: Path) -> None:
    """Mount the volume's file system at its directory unless it is mounted already."""
    if host.is_mounted(volume_dir):
        return
    backing = backing_file(volume_dir)
    _mountpoint(volume_dir)
    attached = loop_devices(backing)
    # a device still attached holds the file system (a container's bind mount keeps it
    # alive): mount that one; a second device on the same file would corrupt it
    source = ["-t", "ext4", attached[0]] if attached else ["-t", "ext4", "-o", "loop",
                                                          str(backing)]
    await _run("mount", *source, str(volume_dir))


async def grow(volume_dir: Path, size: int) -> bool:
    """Grow the volume to `size` bytes; True once its file system has that size, False
    when it must wait for its pods to stop (no online growth on this host)."""
    backing = backing_file(volume_dir)
    target = device_size(size)
    _extend(backing, target)
    attached = loop_devices(backing)
    if attached and fs_size(attached[0]) >= target:
        return True
    if not attached:
        if fs_size(backing) < target:
            await _offline_resize(backing)
        return True
    device = attached[0]
    await _run("losetup", "-c", device)
    try:
        await _run("resize2fs", device)
        return True
    except StorageError as e:
        log.info("online resize of %s refused (%s); trying offline", volume_dir.name, e)
    # offline: only if unmounting here releases the device (no container holds it)
    await _run("umount", str(volume_dir))
    if loop_devices(backing):
        await ensure_mounted(volume_dir)
        return False
    try:
        await _offline_resize(backing)
    finally:
        await ensure_mounted(volume_dir)
    return True


def _extend(path: Path, size: int) -> None:
    """Make `path` a (sparse) file of at least `size` bytes; never shrinks it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _mountpoint(volume_dir: Path) -> None:
    volume_dir.mkdir(mode=0o777, exist_ok=True)


async def _offline_resize(backing: Path) -> None:
    try:
        await _run("e2fsck", "-f", "-p", str(backing))
    except StorageError as e:
        # exit status 1: errors corrected, which is fine for a resize
        if "exit status 1:" not in str(e):
            raise
    await _run("resize2fs", str(backing))


def create_unenforced(volume_dir: Path) -> None:
    """A plain directory (no size limit), appearing complete or not at all."""
    if volume_dir.exists():
        return
    partial = volume_dir.with_name(f".{volume_dir.name}.new")
    partial.mkdir(mode=0o777, exist_ok=True)
    os.chmod(partial, 0o777)
    partial.rename(volume_dir)


async def remove(volume_dir: Path) -> None:
    """Unmount the volume and delete its directory and backing file (its data)."""
    host.unmount_all(volume_dir)
    if host.is_mounted(volume_dir):
        raise StorageError(f"{volume_dir} is still mounted")
    host.remove_tree(volume_dir)
    backing = backing_file(volume_dir)
    for f in (backing, backing.with_name(backing.name + ".new")):
        f.unlink(missing_ok=True)


def volume_dirs(storage_dir: Path) -> list[Path]:
    """The volumes (enforced or not) in a storage dir."""
    if not storage_dir.is_dir():
        return []
    names = {p.name for p in storage_dir.iterdir() if p.name.startswith("pvc-")}
    backing = storage_dir / BACKING_DIR
    if backing.is_dir():
        names |= {p.name.removesuffix(".ext4") for p in backing.glob("pvc-*.ext4")}
    return [storage_dir / n for n in sorted(names)]


def unmount_all(storage_dir: Path) -> None:
    """Unmount every volume of a storage dir (`pinnace down`); data and files stay, the
    loop devices go with the mounts (autoclear)."""
    if storage_dir.exists():
        host.unmount_all(storage_dir)
