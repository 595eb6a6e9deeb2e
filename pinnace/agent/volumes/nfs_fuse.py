"""The userspace NFS mount: an NFSv3 export served as a FUSE filesystem by a process of
its own, for hosts whose kernel has no NFS client.

Run as a script (it imports nothing of pinnace, so it starts without the package):

    python nfs_fuse.py SERVER EXPORT MOUNTPOINT [--read-only] [--timeout SECONDS]

It forks at once (the agent reaps the parent; the mount is nobody's child but init's, so it
outlives the agent like a container's monitor does), starts a new session, and prints on the
stdout it was given one line `pid N`, then `ok` once the export answered and the FUSE mount
is in place, or `error <message>` (mount failed: the server's words) and exits.

Choices: the NFS client is `nfs-rs` (a prebuilt wheel with a complete NFSv3 client, typed
errors carrying errno, per-operation deadlines and transparent reconnection) rather than
`libnfs` (Debian's 4.0 breaks NFSv4, its Python binding is a 2016 source package, and a call
to a dead server retries forever). FUSE comes from `mfusepy` (ctypes over Debian's libfuse3:
nothing to compile) rather than `pyfuse3` (needs gcc and libfuse3-dev, and trio).

Never hang: every NFS call has a deadline (`--timeout`, 10 s): a server that died or stopped
answering turns each request into EIO after at most that long, the mount itself stays, and
when the server is back the same client reconnects and the container's next call works. The
agent never waits on this process beyond its start, and removes it by PID.

Identity: requests go to the server as this process's uid (root; the export must not squash
root to write), and what a caller creates is then chowned to the caller's uid and gid as FUSE
reports them, so files carry the container user's ownership on the server. The mount is
`allow_other` (any container user may enter it) with `default_permissions` (the kernel checks
mode bits against the server's attributes, as a kernel NFS mount with AUTH_SYS would).

Appends are done here: a file opened O_APPEND is written at the size the server reports at
that moment, not at the kernel's cached size, so two pods appending to one file on the same
export (each its own mount) do not overwrite each other's lines.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
import threading
from typing import Any

_ERRNO_BY_CODE = {"NFS3ERR_NOTEMPTY": errno.ENOTEMPTY, "NFS3ERR_NOSPC": errno.ENOSPC,
                  "NFS3ERR_ROFS": errno.EROFS, "NFS3ERR_DQUOT": errno.EDQUOT,
                  "NFS3ERR_NAMETOOLONG": errno.ENAMETOOLONG, "NFS3ERR_XDEV": errno.EXDEV,
                  "NFS3ERR_STALE": errno.ESTALE, "NFS3ERR_PERM": errno.EPERM,
                  "NFS3ERR_ACCES": errno.EACCES, "NFS3ERR_FBIG": errno.EFBIG,
                  "NFS3ERR_INVAL": errno.EINVAL, "NFS3ERR_MLINK": errno.EMLINK}
_TYPE_BITS = {"file": stat.S_IFREG, "directory": stat.S_IFDIR, "symlink": stat.S_IFLNK,
              "block_device": stat.S_IFBLK, "char_device": stat.S_IFCHR,
              "socket": stat.S_IFSOCK, "fifo": stat.S_IFIFO}


def errno_of(e: BaseException) -> int:
    """The errno to answer the kernel with for an nfs-rs error."""
    code = getattr(e, "code_name", None)
    if code in _ERRNO_BY_CODE:
        return _ERRNO_BY_CODE[code]
    if isinstance(e, OSError) and e.errno:
        return e.errno
    for cls, num in ((FileNotFoundError, errno.ENOENT), (FileExistsError, errno.EEXIST),
                     (PermissionError, errno.EACCES), (IsADirectoryError, errno.EISDIR),
                     (NotADirectoryError, errno.ENOTDIR), (NotImplementedError, errno.ENOSYS)):
        if isinstance(e, cls):
            return num
    return errno.EIO  # timeouts, lost connections, protocol errors


def mount_failure(e: BaseException) -> str:
    """Why a mount failed, worded as mount.nfs words it."""
    text = str(e)
    if "access denied" in text.lower() or isinstance(e, PermissionError):
        return "access denied by server"
    if isinstance(e, ConnectionRefusedError) or "connection refused" in text.lower():
        return "Connection refused"
    if isinstance(e, TimeoutError) or "deadline" in text.lower() or "timed out" in text.lower():
        return "Connection timed out"
    return text


def _rel(path: str) -> str:
    return path.lstrip("/") or "."


class _Handle:
    def __init__(self, path: str, file: Any, append: bool) -> None:
        self.path = path
        self.file = file
        self.append = append


def make_operations(client: Any, *, read_only: bool, on_mounted: Any = None) -> Any:
    """The FUSE operations over one connected nfs-rs client (thread-safe: libfuse calls
    from several threads); `on_mounted()` runs once the kernel mount is in place."""
    import mfusepy

    class NfsOperations(mfusepy.Operations):
        use_ns = True

        def __init__(self) -> None:
            self._handles: dict[int, _Handle] = {}
            self._next = 1
            self._mutex = threading.Lock()

        def init(self, path: str) -> None:
            if on_mounted is not None:
                on_mounted()

        # errors: every nfs-rs failure becomes the errno the kernel returns to the caller
        def _do(self, fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except mfusepy.FuseOSError:
                raise
            except Exception as e:  # each NFS failure is an errno for the caller
                raise mfusepy.FuseOSError(errno_of(e)) from e

        def _writable(self) -> None:
            if read_only:
                raise mfusepy.FuseOSError(errno.EROFS)

        def _own(self, path: str) -> None:
            uid, gid, _pid = mfusepy.fuse_get_context()
            if uid or gid:
                self._do(client.chown, _rel(path), uid, gid)

        def _add(self, handle: _Handle) -> int:
            with self._mutex:
                fh, self._next = self._next, self._next + 1
                self._handles[fh] = handle
            return fh

        def _handle(self, fh: int) -> _Handle:
            try:
                return self._handles[fh]
            except KeyError:
                raise mfusepy.FuseOSError(errno.EBADF) from None

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            info = self._do(client.stat, _rel(path))
            kind = getattr(info.type, "value", str(info.type))
            return {"st_mode": _TYPE_BITS.get(kind, stat.S_IFREG) | (info.mode & 0o7777),
                    "st_nlink": info.nlink, "st_uid": info.uid, "st_gid": info.gid,
                    "st_size": info.size, "st_blocks": (info.used + 511) // 512,
                    "st_ino": info.fileid, "st_atime": info.atime, "st_mtime": info.mtime,
                    "st_ctime": info.ctime}

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *self._do(client.listdir, _rel(path))]

        def readlink(self, path: str) -> str:
            return self._do(client.readlink, _rel(path))

        def statfs(self, path: str) -> dict[str, int]:
            fs = self._do(client.fs_stat)
            bsize = 4096
            return {"f_bsize": bsize, "f_frsize": bsize, "f_blocks": fs.total_bytes // bsize,
                    "f_bfree": fs.free_bytes // bsize, "f_bavail": fs.available_bytes // bsize,
                    "f_files": fs.total_files, "f_ffree": fs.free_files,
                    "f_favail": fs.available_files, "f_namemax": 255}

        def open(self, path: str, flags: int) -> int:
            wants_write = (flags & os.O_ACCMODE) != os.O_RDONLY
            if wants_write:
                self._writable()
            # O_TRUNC arrives as a separate truncate; never let "wb" truncate here
            f = self._do(client.open, _rel(path), "r+b" if wants_write else "rb")
            return self._add(_Handle(path, f, bool(flags & os.O_APPEND)))

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            self._writable()
            f = self._do(client.open, _rel(path), "w+b")
            self._do(client.chmod, _rel(path), mode & 0o7777)
            self._own(path)
            return self._add(_Handle(path, f, False))

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return self._do(self._handle(fh).file.read_at, offset, size)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            self._writable()
            h = self._handle(fh)
            if h.append:
                offset = self._do(client.stat, _rel(h.path)).size
            return self._do(h.file.write_at, data, offset)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            self._writable()
            self._do(client.truncate, _rel(path), length)
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0  # nfs-rs writes are stable when write_at returns

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            with self._mutex:
                h = self._handles.pop(fh, None)
            if h is not None:
                try:
                    h.file.close()
                except Exception:  # a dead server: the handle is gone anyway
                    pass
            return 0

        def unlink(self, path: str) -> int:
            self._writable()
            self._do(client.unlink, _rel(path))
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            self._writable()
            self._do(lambda: client.mkdir(_rel(path), mode=mode & 0o7777))
            self._own(path)
            return 0

        def rmdir(self, path: str) -> int:
            self._writable()
            self._do(client.rmdir, _rel(path))
            return 0

        def rename(self, old: str, new: str) -> int:
            self._writable()
            self._do(client.rename, _rel(old), _rel(new))
            return 0

        def symlink(self, target: str, source: str) -> int:
            # mfusepy: `target` is the new link's path, `source` what it points to
            self._writable()
            self._do(client.symlink, source, _rel(target))
            self._own(target)
            return 0

        def link(self, target: str, source: str) -> int:
            self._writable()
            self._do(client.link, _rel(source), _rel(target))
            return 0

        def chmod(self, path: str, mode: int) -> int:
            self._writable()
            self._do(client.chmod, _rel(path), mode & 0o7777)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            self._writable()
            self._do(client.chown, _rel(path), uid, gid)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            self._writable()
            if times is None:
                import time
                now = time.time_ns()
                times = (now, now)
            self._do(lambda: client.utime(_rel(path), ns=(int(times[0]), int(times[1]))))
            return 0

    return NfsOperations()


def _serve(args: argparse.Namespace, report: Any) -> int:
    try:
        import mfusepy
        import nfs_rs
    except ImportError as e:
        report(f"error userspace NFS client unavailable: {e}")
        return 1
    url = f"nfs://{args.server}{args.export}?version=3"
    try:
        client = nfs_rs.Client.connect(url, connect_timeout=args.timeout,
                                       operation_timeout=args.timeout)
        client.stat(".")  # the export exists and this identity may look at it
    except Exception as e:  # any failure is the mount's failure, in mount.nfs' words
        report(f"error nfs_fuse: {mount_failure(e)} while mounting {args.server}:{args.export}")
        return 1
    ops = make_operations(client, read_only=args.read_only, on_mounted=lambda: report("ok"))
    options = {"allow_other": True, "default_permissions": True,
               "fsname": f"{args.server}:{args.export}", "subtype": "pinnace-nfs"}
    if args.read_only:
        options["ro"] = True
    try:
        mfusepy.FUSE(ops, args.mountpoint, foreground=True, nothreads=False, **options)
    except RuntimeError as e:
        report(f"error fuse mount on {args.mountpoint}: {e}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nfs_fuse")
    p.add_argument("server")
    p.add_argument("export")
    p.add_argument("mountpoint")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    if os.fork() > 0:
        os._exit(0)  # the agent reaps this parent at once; the mount is init's child
    os.setsid()
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stderr stays: the agent points it at a log file
    reported = threading.Event()

    def report(line: str) -> None:
        if reported.is_set():
            return
        reported.set()
        try:
            out.write(line + "\n")
            out.close()
        except OSError:
            pass  # the agent gave up waiting: nobody reads it

    out.write(f"pid {os.getpid()}\n")
    out.flush()
    code = _serve(args, report)
    report("error fuse exited")
    return code


if __name__ == "__main__":
    sys.exit(main())
