"""Host operations of the volume manager: tmpfs mounts, the mount table, path checks,
and removal that never leaves the pod's directory.

Mounts go through mount(2)/umount2(2) via ctypes (no process per mount). Removal is
the dangerous part: a volume dir may hold symlinks to anywhere (a configMap key
pointing at `..data`, a container writing `ln -s / x` into an emptyDir), so trees are
removed with `shutil.rmtree`, which on Linux walks with openat and unlinks symlinks
instead of following them, and only after the mount table shows nothing mounted
below the tree (rmtree would otherwise delete a mounted filesystem's contents).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2


def mount_tmpfs(target: Path, *, mode: int, size: int | None = None) -> None:
    """Mount a fresh tmpfs (nosuid, nodev) at `target` with its root at `mode`."""
    opts = f"mode={mode:o}" + (f",size={size}" if size else "")
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                   opts.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Detach the mount at `target` (lazy: a busy mount goes away when released)."""
    if _libc.umount2(str(target).encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field) >= i + 4:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root` in this mount namespace, deepest first."""
    prefix = str(root).rstrip("/")
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = unescape(line.split()[1])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mounted(path: Path) -> bool:
    return path in mounts_under(path)


def unmount_all(root: Path) -> None:
    """Unmount everything at or below `root` (stacked mounts included)."""
    for _ in range(8):  # a point may carry several stacked mounts
        points = mounts_under(root)
        if not points:
            return
        for p in points:
            try:
                unmount(p)
            except OSError:
                pass
    if mounts_under(root):
        raise OSError(f"mounts left under {root}: {mounts_under(root)}")


def remove_tree(root: Path) -> None:
    """Unmount what is below `root`, then delete it without following any symlink."""
    if not os.path.lexists(root):
        return
    unmount_all(root)
    if root.is_symlink() or not root.is_dir():
        root.unlink()
        return
    assert shutil.rmtree.avoids_symlink_attacks
    shutil.rmtree(root)


def within(path: Path, base: Path) -> bool:
    """Whether `path` is `base` or below it (both already resolved)."""
    return path == base or base in path.parents
