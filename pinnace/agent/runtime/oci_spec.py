"""Build an OCI runtime `config.json` for one container of a pod: pure functions, no I/O.

What Kubernetes and Docker decide, decided here: the process's argv from the image's
Entrypoint/Cmd and the pod's command/args, the environment (image, then container, then
HOSTNAME), the user (the image's, root by default), Docker's default capabilities, and the
mounts every container gets (proc, sysfs read-only, /dev tmpfs, devpts, mqueue, shm, the
pod's /etc/hosts and /etc/resolv.conf). Namespaces pid/ipc/uts/mount are new; the network
namespace is the sandbox's, joined by path. `runc spec`'s defaults that pods cannot live
with (terminal, read-only root, nofile 1024) are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set (moby's oci/caps/defaults.go)
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass(frozen=True)
class BindMount:
    """A host path bind-mounted into the container (volumes, /etc/hosts, …)."""

    host_path: str
    container_path: str
    readonly: bool = False


@dataclass(frozen=True)
class SpecInput:
    rootfs: str
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    hostname: str
    netns_path: str
    cgroups_path: str
    memory_limit: int | None = None  # bytes
    nofile: int = 1048576  # capped by the caller at what it may grant (its own hard limit)
    mounts: list[BindMount] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


def process_args(*, entrypoint: list[str], cmd: list[str], command: list[str],
                 args: list[str]) -> list[str]:
    """Kubernetes' rule: `command` replaces the Entrypoint (and drops the image's Cmd),
    `args` replaces the Cmd."""
    if command:
        return [*command, *args]
    return [*entrypoint, *(args or cmd)]


def merge_env(image_env: list[str], env: dict[str, str], hostname: str) -> list[str]:
    """The image's `KEY=value` list overridden by the container's, plus HOSTNAME and a
    default PATH, in a stable order (image first)."""
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    merged["HOSTNAME"] = hostname
    merged.update(env)
    return [f"{k}={v}" for k, v in merged.items()]


def parse_user(user: str, passwd: str = "", group: str = "") -> tuple[int, int]:
    """An image's `User` ("", "1000", "1000:1000", "nginx", "nginx:www") → (uid, gid),
    names looked up in the rootfs's /etc/passwd and /etc/group text."""
    if not user:
        return 0, 0
    name, _, grp = user.partition(":")
    uid: int | None = int(name) if name.isdigit() else None
    gid: int | None = None
    for line in passwd.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and (parts[0] == name or (uid is not None and parts[2] == name)):
            uid, gid = int(parts[2]), int(parts[3])
            break
    if uid is None:
        raise ValueError(f"user {name!r} not found in the image's /etc/passwd")
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            for line in group.splitlines():
                parts = line.split(":")
                if len(parts) >= 3 and parts[0] == grp:
                    gid = int(parts[2])
                    break
            else:
                raise ValueError(f"group {grp!r} not found in the image's /etc/group")
    return uid, gid if gid is not None else 0


def _standard_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def build_spec(spec: SpecInput) -> dict[str, Any]:
    """The OCI runtime spec (version 1.0.2) for `spec`."""
    caps = list(DEFAULT_CAPABILITIES)
    mounts = _standard_mounts()
    for m in spec.mounts:
        mounts.append({"destination": m.container_path, "type": "bind", "source": m.host_path,
                       "options": ["rbind", "rprivate", "ro" if m.readonly else "rw"]})
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if spec.memory_limit:
        # swap equal to the limit: no swap beyond it, as kubelet does
        resources["memory"] = {"limit": spec.memory_limit, "swap": spec.memory_limit}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": spec.uid, "gid": spec.gid},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": spec.nofile,
                         "soft": spec.nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": spec.rootfs, "readonly": False},
        "hostname": spec.hostname,
        "mounts": mounts,
        "annotations": spec.annotations,
        "linux": {
            "cgroupsPath": spec.cgroups_path,
            "resources": resources,
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": spec.netns_path},
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
