"""What a data dir may have left on the host: network namespaces, its bridge, mounts,
loop devices backed by its files (local-path volumes), nfs volumes' FUSE processes, cgroups
and its nftables table (hostPorts) named after it. Tests assert this is empty after tearing
down."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

from pinnace.agent.network import dir_hash
from pinnace.agent.volumes.local_path import loop_devices
from pinnace.agent.volumes.nfs import fuse_processes


def leftovers(data: Path) -> list[str]:
    h = dir_hash(data)
    found = [f"netns {n}" for n in subprocess.run(["ip", "netns"], capture_output=True,
                                                  text=True).stdout.split() if h in n]
    if Path(f"/sys/class/net/pn{h}").exists():
        found.append(f"bridge pn{h}")
    found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines()
              if str(data) in line]
    found += [f"loop device {d}" for d in loop_devices(data)]  # local-path volumes
    found += [f"nfs mount process {pid} ({point})" for pid, point in fuse_processes(data)]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/pinnace/{h}")]
    if shutil.which("nft") is not None:
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True,
                                text=True).stdout.splitlines()
        # the hostPort table pinnace-<h>, the Service proxy's pinnace-svc-<h> and the
        # pods' masquerade pinnace-net-<h>
        found += [f"nft {t}" for t in tables
                  if t.endswith((f" pinnace-{h}", f" pinnace-svc-{h}", f" pinnace-net-{h}"))]
    return found


def random_pod_cidr() -> str:
    """A /24 in 10.200.0.0/13 (random), so a test's pods never route like a running
    cluster's (10.42.0.0/16) or another test's."""
    return f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24"
