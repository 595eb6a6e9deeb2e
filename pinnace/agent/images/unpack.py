"""Unpack one image layer into a directory that overlayfs can use as a lower layer.

Each layer is unpacked on its own (not on top of its parents), so the layer's deletions must
survive in the form overlayfs reads: a whiteout `dir/.wh.name` becomes a character device
0:0 at `dir/name`, and an opaque marker `dir/.wh..wh..opq` becomes the xattr
`trusted.overlay.opaque=y` on `dir`. Other `.wh..wh.*` entries (aufs bookkeeping) are
dropped. This needs root (mknod, trusted xattrs, chown), as a container runtime does.

Safety: member names are relative paths without `..` (absolute or climbing names are
refused). Symlinks already unpacked are followed as if `dest` were `/` (absolute targets and
`..` are clamped to `dest`, as in a chroot), so a symlink can never carry a later member out
of the layer; the last component of a member is never followed, only replaced. Hardlink
targets must already exist inside the layer.

The tar stream is hashed while it is read and must match the layer's diff id (the sha256 of
the uncompressed tar), so a corrupted or substituted layer is refused before it is used.
Limitation: symlinks from *lower* layers are not visible here (each layer is unpacked alone);
image builders record real paths, so this matters only for hand-made layers.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from pinnace.agent.images.errors import DigestMismatch, ImageError, UnsafeLayer

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_MAX_SYMLINKS = 40  # as Linux's path resolution
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _HashingReader:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def open_layer(blob: Path) -> BinaryIO:
    """The uncompressed tar stream of a layer blob (gzip or plain tar)."""
    f = blob.open("rb")
    magic = f.read(4)
    f.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if magic == _ZSTD_MAGIC:
        f.close()
        raise ImageError(f"layer {blob.name}: zstd layers are not supported")
    return f


def _member_parts(name: str) -> list[str]:
    """The path components of a member name, refusing absolute and climbing names."""
    if name.startswith("/"):
        raise UnsafeLayer(f"absolute path in layer: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"path climbs out of the layer: {name!r}")
    return parts


def _resolve_dir(root: str, parts: list[str]) -> str:
    """The real directory `parts` names under `root`, following symlinks as in a chroot at
    `root` and creating missing directories."""
    resolved: list[str] = []
    pending = list(parts)
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        path = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise UnsafeLayer(f"too many symlinks resolving {'/'.join(parts)!r}")
            target = os.readlink(path)
            if target.startswith("/"):
                resolved = []
            pending[:0] = target.split("/")
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"{'/'.join([*resolved, part])!r} is not a directory")
        resolved.append(part)
    return os.path.join(root, *resolved)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _set_xattrs(path: str, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        try:
            os.setxattr(path, key[len("SCHILY.xattr."):],
                        value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


def _whiteout(tar_dir: str, name: str) -> None:
    if name == OPAQUE_MARKER:
        os.setxattr(tar_dir, OPAQUE_XATTR, b"y")
        return
    if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs)
    target = name[len(WHITEOUT_PREFIX):]
    if target in ("", ".", ".."):
        raise UnsafeLayer(f"invalid whiteout {name!r}")
    path = os.path.join(tar_dir, target)
    _remove(path)
    try:
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    except PermissionError as e:
        raise ImageError("whiteouts need root (mknod of a 0:0 character device)") from e


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str,
                    dirs: list[tuple[str, tarfile.TarInfo]]) -> None:
    parts = _member_parts(member.name)
    if not parts:  # the layer's root itself
        return
    parent = _resolve_dir(root, parts[:-1])
    name = parts[-1]
    if name.startswith(WHITEOUT_PREFIX):
        _whiteout(parent, name)
        return
    path = os.path.join(parent, name)
    if member.isdir():
        if not os.path.isdir(path) or os.path.islink(path):
            _remove(path)
            os.mkdir(path, 0o700)
        dirs.append((path, member))  # mode and mtime once its children are in
        return
    _remove(path)
    if member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        link_parts = _member_parts(member.linkname)
        if not link_parts:
            raise UnsafeLayer(f"hardlink to the layer root: {member.name!r}")
        target = os.path.join(_resolve_dir(root, link_parts[:-1]), link_parts[-1])
        if not os.path.lexists(target) or os.path.isdir(target):
            raise UnsafeLayer(f"hardlink {member.name!r} to a missing file {member.linkname!r}")
        os.link(target, path, follow_symlinks=False)
        return  # the link shares the target's inode: owner and mode are already set
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        except PermissionError:
            return  # devices need root; runtimes provide /dev anyway
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        return  # other types (GNU volume headers, …) carry no file
    _finish(path, member)


def _finish(path: str, member: tarfile.TarInfo) -> None:
    os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)  # after chown, which clears setuid bits
    _set_xattrs(path, member)
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def unpack_layer(blob: Path, dest: Path, *, diff_id: str) -> None:
    """Unpack the layer `blob` into the empty directory `dest`, verifying `diff_id`.

    Raises DigestMismatch, UnsafeLayer or ImageError; `dest` is then left half-filled for
    the caller to discard.
    """
    root = os.fspath(dest)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with open_layer(blob) as stream:
        reader = _HashingReader(stream)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    _extract_member(tar, member, root, dirs)
            reader.drain()  # the zero blocks after the end-of-archive marker count too
        except (tarfile.TarError, EOFError, gzip.BadGzipFile) as e:
            raise ImageError(f"layer {blob.name} is not a readable tar: {e}") from e
    actual = f"sha256:{reader.sha.hexdigest()}"
    if actual != diff_id:
        raise DigestMismatch(f"layer {blob.name}: uncompressed content is {actual}, "
                             f"the image config says {diff_id}")
    for path, member in reversed(dirs):  # deepest first, so parents' mtimes stick
        if os.path.isdir(path) and not os.path.islink(path):  # not replaced since
            _finish(path, member)
    os.chmod(root, 0o755)
