"""The nfs volume's pieces that need no server: the errno a FUSE caller gets for an NFS
failure, the kubelet's wording of a failed mount, and finding (and stopping) mount
processes of a data dir by their command line, as `pinnace down` does after state is lost."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pinnace.agent.volumes import nfs
from pinnace.agent.volumes.nfs_fuse import errno_of, mount_failure


class _CodedError(RuntimeError):
    def __init__(self, code_name: str) -> None:
        super().__init__(code_name)
        self.code_name = code_name


@pytest.mark.parametrize(("error", "expected"), [
    (OSError(errno.EACCES, "denied"), errno.EACCES),
    (FileNotFoundError(), errno.ENOENT),
    (FileExistsError(), errno.EEXIST),
    (IsADirectoryError(), errno.EISDIR),
    (_CodedError("NFS3ERR_NOTEMPTY"), errno.ENOTEMPTY),
    (_CodedError("NFS3ERR_NOSPC"), errno.ENOSPC),
    (_CodedError("NFS3ERR_ROFS"), errno.EROFS),
    (TimeoutError(), errno.EIO),  # a dead server: EIO, as a soft mount answers
    (ConnectionError(), errno.EIO),
    (RuntimeError("protocol"), errno.EIO),
])
def test_errno_of(error: BaseException, expected: int) -> None:
    assert errno_of(error) == expected


@pytest.mark.parametrize(("error", "expected"), [
    (RuntimeError("Mount error: access denied"), "access denied by server"),
    (ConnectionRefusedError(), "Connection refused"),
    (RuntimeError("Connection refused (os error 111)"), "Connection refused"),
    (TimeoutError("connect deadline exceeded"), "Connection timed out"),
    (RuntimeError("something else"), "something else"),
])
def test_mount_failure_in_mount_nfs_words(error: BaseException, expected: str) -> None:
    assert mount_failure(error) == expected


def test_failed_mount_is_worded_like_mount_utils() -> None:
    e = nfs._failed("mount", "-t nfs 10.0.0.2:/x /t",
                    "mount.nfs: access denied by server while mounting 10.0.0.2:/x",
                    "exit status 32")
    assert str(e).splitlines() == [
        "mount failed: exit status 32", "Mounting command: mount",
        "Mounting arguments: -t nfs 10.0.0.2:/x /t",
        "Output: mount.nfs: access denied by server while mounting 10.0.0.2:/x"]


def test_stray_mount_processes_are_found_and_stopped(tmp_path: Path) -> None:
    point = tmp_path / "pods" / "uid" / "volumes" / nfs.PLUGIN_DIR / "data"
    other = tmp_path.parent / "elsewhere"
    # stand-ins with a mount process's command line (python -I SCRIPT SERVER EXPORT POINT)
    procs = [subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(60)",
                               nfs.FUSE_SCRIPT, "10.0.0.2", "/export", str(p)])
             for p in (point, other)]
    try:
        deadline = time.monotonic() + 5
        while len(nfs.fuse_processes(tmp_path)) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert nfs.fuse_processes(tmp_path) == [(procs[0].pid, str(point))]
        asyncio.run(nfs.stop_strays(tmp_path))
        assert procs[0].wait(5) is not None
        assert procs[1].poll() is None  # another data dir's mount is not touched
    finally:
        for p in procs:
            p.kill()
            p.wait()
