"""Which OCI runtime binary new containers are made with: crun where installed and usable,
else runc (both speak the same command line; crun creates and starts in about a third of
runc's time and deletes in a tenth).

crun refuses a hybrid cgroup layout (v1 hierarchies under /sys/fs/cgroup plus a v2 one at
/sys/fs/cgroup/unified) while any controller is bound to the v2 hierarchy ("cgroups in
hybrid mode not supported"). On such a host the controllers the v2 hierarchy holds
(typically hugetlb alone, which nothing here limits) are mounted as v1 hierarchies of their
own under /sys/fs/cgroup, once, as the host's init would; runc works either way. When that
cannot be done, runc is used. An explicit choice (`PINNACE_OCI_RUNTIME`, or the caller's)
wins over all this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP2_FSTYPE = "cgroup2"


def choose(preferred: str | None = None) -> str:
    """The path of the OCI runtime to use (`preferred`, else $PINNACE_OCI_RUNTIME, else
    crun when it can run here, else runc)."""
    name = preferred or os.environ.get("PINNACE_OCI_RUNTIME")
    if name:
        return shutil.which(name) or name
    crun = shutil.which("crun")
    if crun is not None and crun_cgroups_ready():
        return crun
    return shutil.which("runc") or "runc"


def _mount_types() -> dict[str, str]:
    with open("/proc/self/mounts") as f:
        return {parts[1]: parts[2] for line in f if len(parts := line.split()) > 2}


def crun_cgroups_ready() -> bool:
    """True when crun accepts this host's cgroups: a pure v1 or v2 layout, or a hybrid one
    whose v2 hierarchy holds no controller (moved to v1 mounts here if need be)."""
    mounts = _mount_types()
    unified = CGROUP_ROOT / "unified"
    if mounts.get(str(CGROUP_ROOT)) == CGROUP2_FSTYPE or str(unified) not in mounts:
        return True
    try:
        controllers = (unified / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    for controller in controllers:
        target = CGROUP_ROOT / controller
        if str(target) in mounts:
            continue
        try:
            target.mkdir(exist_ok=True)
        except OSError:
            return False
        done = subprocess.run(["mount", "-t", "cgroup", "-o", controller, "cgroup",
                               str(target)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if done.returncode != 0:
            return False
    try:
        return not (unified / "cgroup.controllers").read_text().split()
    except OSError:
        return False
