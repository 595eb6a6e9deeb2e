"""emptyDir volumes: a directory of the pod, 0777 so any container user may write
(as the kubelet makes it); `medium: Memory` mounts a tmpfs there, sized by `sizeLimit`
when given (else the kernel's default, half the RAM). A sizeLimit on disk is not
enforced (the kubelet enforces it by eviction, which pinnace does not do yet)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pinnace.agent.volumes import host
from pinnace.api.quantity import int_value

PLUGIN_DIR = "kubernetes.io~empty-dir"


def setup(path: Path, source: dict[str, Any]) -> None:
    path.mkdir(mode=0o750, parents=True, exist_ok=True)
    if source.get("medium") == "Memory" and not host.is_mounted(path):
        limit = source.get("sizeLimit")
        host.mount_tmpfs(path, mode=0o777, size=int_value(limit) if limit else None)
    os.chmod(path, 0o777)
