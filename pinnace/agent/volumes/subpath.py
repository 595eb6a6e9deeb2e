"""subPath of a volumeMount: the host path mounted is `<volume dir>/<subPath>`, created
as a directory when missing (the kubelet does), and refused when it leaves the volume:
absolute, a `..` element, or a symlink on the way pointing outside. The result is the
fully resolved path, so what runc mounts is what was checked.

Left out: the kubelet also pins the checked path with a bind mount of an open fd so a
container racing to swap a directory for a symlink in between cannot win; and
subPathExpr ($(VAR) expansion).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from pinnace.agent.volumes.errors import CREATE_CONTAINER_CONFIG_ERROR, VolumeError
from pinnace.agent.volumes.host import within


def resolve(volume_path: Path, sub_path: str, *, mount_name: str, container: str) -> Path:
    if PurePosixPath(sub_path).is_absolute():
        raise VolumeError(CREATE_CONTAINER_CONFIG_ERROR,
                          f"error SubPath `{sub_path}` must not be an absolute path")
    if ".." in PurePosixPath(sub_path).parts:
        raise VolumeError(CREATE_CONTAINER_CONFIG_ERROR,
                          f"unable to provision SubPath `{sub_path}`: must not contain '..'")
    base = Path(os.path.realpath(volume_path))
    target = Path(os.path.realpath(base / sub_path))
    if not within(target, base):
        raise VolumeError(CREATE_CONTAINER_CONFIG_ERROR,
                          f'failed to prepare subPath for volumeMount "{mount_name}" of '
                          f'container "{container}"')
    if not os.path.lexists(target):
        try:
            os.makedirs(target, mode=base.stat().st_mode & 0o7777, exist_ok=True)
        except OSError as e:
            raise VolumeError(CREATE_CONTAINER_CONFIG_ERROR,
                              f'failed to create subPath directory for volumeMount '
                              f'"{mount_name}" of container "{container}"') from e
        # re-check: a symlink may have appeared while the directories were made
        target = Path(os.path.realpath(target))
        if not within(target, base):
            raise VolumeError(CREATE_CONTAINER_CONFIG_ERROR,
                              f'failed to prepare subPath for volumeMount "{mount_name}" of '
                              f'container "{container}"')
    return target
