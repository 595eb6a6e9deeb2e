"""The kubelet's atomic writer: a volume's files change all at once, never half.

Layout of a projected volume (configMap, secret, downwardAPI, projected):

    ..2026_11_25_18_36_58.0123456789/   the files of one version (a "timestamped dir")
    ..data -> ..2026_11_25_18_36_58.0123456789
    log_level -> ..data/log_level       one symlink per top-level name of the payload

A new version is written into a new timestamped dir, then a `..data_tmp` symlink to it
is renamed over `..data` (rename(2) is atomic), then the old dir is removed. A
container that bind-mounted the volume dir sees the switch as one step, because its
paths go through `..data`; a subPath mount of one file pins the old inode, so it does
not update (as in Kubernetes). Nothing is rewritten when the payload is unchanged.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DATA_DIR = "..data"
_DATA_TMP = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int


Payload = dict[str, FileProjection]


def validate_path(path: str) -> None:
    """A payload path: relative, no `..` element, not starting with `..` (reserved)."""
    p = PurePosixPath(path)
    if not path or p.is_absolute():
        raise ValueError(f"invalid path {path!r}: must be relative")
    if ".." in p.parts:
        raise ValueError(f"invalid path {path!r}: must not contain '..'")
    if path.startswith(".."):
        raise ValueError(f"invalid path {path!r}: must not start with '..'")


def _current(target: Path) -> Path | None:
    link = target / DATA_DIR
    if not link.is_symlink():
        return None
    return target / os.readlink(link)


def _read(ts_dir: Path) -> Payload:
    out: Payload = {}
    for root, _dirs, files in os.walk(ts_dir):
        for name in files:
            full = Path(root) / name
            st = full.lstat()
            out[str(full.relative_to(ts_dir))] = FileProjection(full.read_bytes(),
                                                                st.st_mode & 0o7777)
    return out


def _new_ts_dir(target: Path) -> Path:
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    while True:
        d = target / (stamp + str(secrets.randbelow(10**10)).zfill(10))
        try:
            d.mkdir(mode=0o755)
        except FileExistsError:
            continue
        os.chmod(d, 0o755)
        return d


def write(target: Path, payload: Payload) -> bool:
    """Make `target` show exactly `payload`; True if a new version was switched in."""
    for path in payload:
        validate_path(path)
    old = _current(target)
    changed = old is None or not old.is_dir() or _read(old) != payload
    if changed:
        new = _new_ts_dir(target)
        for path, f in payload.items():
            full = new / path
            full.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            full.write_bytes(f.data)
            os.chmod(full, f.mode)  # explicit: the umask must not change the mode
        tmp = target / _DATA_TMP
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(new.name, tmp)
        os.rename(tmp, target / DATA_DIR)
    _user_visible_links(target, {PurePosixPath(p).parts[0] for p in payload})
    if changed and old is not None and old.is_dir():
        _remove_dir(old)
    return changed


def _user_visible_links(target: Path, names: set[str]) -> None:
    for name in names:
        link = target / name
        if not link.is_symlink():
            os.symlink(f"{DATA_DIR}/{name}", link)
    for entry in target.iterdir():
        # drop names the payload no longer has (only our own ..data links)
        if (entry.name not in names and not entry.name.startswith("..") and entry.is_symlink()
                and os.readlink(entry).startswith(DATA_DIR + "/")):
            entry.unlink()


def _remove_dir(d: Path) -> None:
    shutil.rmtree(d, ignore_errors=True)  # files only, written by us; no mounts inside
