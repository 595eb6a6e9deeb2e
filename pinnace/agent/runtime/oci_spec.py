"""Build an OCI runtime `config.json` for one container of a pod: pure functions, no I/O.

What Kubernetes and Docker decide, decided here: the process's argv from the image's
Entrypoint/Cmd and the pod's command/args, the environment (image, then container, then
HOSTNAME), the user (the image's, root by default), Docker's default capabilities, and the
mounts every container gets (proc, sysfs read-only, /dev tmpfs, devpts, mqueue, shm, the
pod's /etc/hosts and /etc/resolv.conf). Namespaces pid/ipc/uts/mount are new; the network
namespace is the sandbox's, joined by path, or the host's when `netns_path` is ""
(hostNetwork). `runc spec`'s defaults that pods cannot live with (terminal, read-only root,
nofile 1024) are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pinnace.agent.runtime.interface import Mount

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
class SpecInput:
    rootfs: str
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    hostname: str
    netns_path: str  # "": the host's network namespace
    cgroups_path: str
    memory_limit: int | None = None  # bytes
    cpu_limit_millis: int | None = None
    additional_gids: tuple[int, ...] = ()
    privileged: bool = False
    add_capabilities: tuple[str, ...] = ()
    drop_capabilities: tuple[str, ...] = ()  # or ("ALL",)
    read_only_root: bool = False
    no_new_privileges: bool = False
    nofile: int = 1048576  # capped by the caller at what it may grant (its own hard limit)
    mounts: list[Mount] = field(default_factory=list)  # volumes, /etc/hosts, …
    annotations: dict[str, str] = field(default_factory=dict)
    terminal: bool = False  # the container's `tty`: runc makes a pty (--console-socket)


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


# every capability the kernel knows of: what a privileged container gets
ALL_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
CFS_PERIOD = 100_000  # µs, the kernel's and kubelet's default


def capabilities(spec: SpecInput) -> list[str]:
    """Docker's defaults, or all when privileged; then securityContext's drop and add
    (`NET_ADMIN` or `CAP_NET_ADMIN`; drop `ALL` empties the set first)."""
    if spec.privileged:
        return list(ALL_CAPABILITIES)
    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") or c == "ALL" else f"CAP_{c}"
    drop = {norm(c) for c in spec.drop_capabilities}
    caps = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    for c in spec.add_capabilities:
        name = norm(c)
        if name == "ALL":
            return list(ALL_CAPABILITIES)
        if name not in caps:
            caps.append(name)
    return caps


def build_spec(spec: SpecInput) -> dict[str, Any]:
    """The OCI runtime spec (version 1.0.2) for `spec`."""
    caps = capabilities(spec)
    mounts = _standard_mounts()
    for m in spec.mounts:
        mounts.append({"destination": m.container_path, "type": "bind", "source": m.host_path,
                       "options": ["rbind", "rprivate", "ro" if m.readonly else "rw"]})
    resources: dict[str, Any] = {"devices": [{"allow": spec.privileged, "access": "rwm"}]}
    if spec.memory_limit:
        # swap equal to the limit: no swap beyond it, as kubelet does
        resources["memory"] = {"limit": spec.memory_limit, "swap": spec.memory_limit}
    if spec.cpu_limit_millis:
        # kubelet's rule: quota = millicores * period / 1000, at least 1 ms
        quota = max(spec.cpu_limit_millis * CFS_PERIOD // 1000, 1000)
        resources["cpu"] = {"quota": quota, "period": CFS_PERIOD}
    if spec.privileged:  # a writable /sys, nothing masked
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.terminal,
            "user": {"uid": spec.uid, "gid": spec.gid,
                     **({"additionalGids": list(spec.additional_gids)}
                        if spec.additional_gids else {})},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": spec.nofile,
                         "soft": spec.nofile}],
            "noNewPrivileges": spec.no_new_privileges,
        },
        "root": {"path": spec.rootfs, "readonly": spec.read_only_root},
        "hostname": spec.hostname,
        "mounts": mounts,
        "annotations": spec.annotations,
        "linux": {
            "cgroupsPath": spec.cgroups_path,
            "resources": resources,
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                # no entry: the host's network namespace (hostNetwork)
                *([{"type": "network", "path": spec.netns_path}] if spec.netns_path else []),
            ],
            "maskedPaths": [] if spec.privileged else MASKED_PATHS,
            "readonlyPaths": [] if spec.privileged else READONLY_PATHS,
        },
    }
