"""hostPath volumes: a path of the host used as is (kubelet's hostpath plugin). Nothing
is created under the pod's directory; the `type` check runs on every setup, with
Kubernetes' messages. DirectoryOrCreate makes the directory (0755, parents too);
FileOrCreate makes an empty 0644 file but not its parent directory."""

from __future__ import annotations

import os
import stat
from pathlib import PurePosixPath

from pinnace.agent.volumes.errors import SetUpError

_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def check(path: str, path_type: str | None) -> None:
    """Validate (and for the *OrCreate types, create) `path` as the kubelet does."""
    if ".." in PurePosixPath(path).parts:
        raise SetUpError(f"invalid HostPath `{path}`: must not contain '..'")
    path_type = path_type or ""
    if path_type == "":
        return
    exists = os.path.lexists(path)
    if path_type == "DirectoryOrCreate":
        if not exists:
            try:
                os.makedirs(path, mode=0o755, exist_ok=True)
            except OSError as e:
                raise SetUpError(f"mkdir {path}: {e.strerror.lower()}") from e
            return
        path_type = "Directory"
    elif path_type == "FileOrCreate":
        if not exists:
            try:
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
                os.close(fd)
            except OSError as e:
                raise SetUpError(f"open {path}: {(e.strerror or '').lower()}") from e
            return
        path_type = "File"
    if path_type not in _CHECKS:
        raise SetUpError(f"{path_type} is an invalid volume type")
    test, what = _CHECKS[path_type]
    mode = _mode(path)
    if mode is None or not test(mode):
        raise SetUpError(f"hostPath type check failed: {path} is not {what}")


def require_exists(path: str) -> None:
    """A `local` PV's path must be there: nothing creates it."""
    if ".." in PurePosixPath(path).parts:
        raise SetUpError(f"invalid HostPath `{path}`: must not contain '..'")
    if not os.path.exists(path):
        raise SetUpError(f"path {path} does not exist")
