"""The runc runtime's state: files under `DATA_DIR/runtime/`, and the index kept of them.

    sandboxes/<id>/sandbox.json          config, netns, IP, ready, hostPorts; hosts, resolv.conf
    hostports.json, hostports.lock       published hostPorts (see `network.hostport`)
    containers/<id>/container.json       config, image, sandbox id, created_at
    containers/<id>/bundle/config.json   the OCI spec (root = bundle/rootfs, the overlay)
    containers/<id>/{upper,work}         the overlay's writable layer
    containers/<id>/container.log        CRI-format log, written by the monitor
    containers/<id>/state.json           {pid, monitor_pid, started_at} once started
    containers/<id>/exit.json            {exit_code, finished_at, oom_killed, start_failed}
    containers/<id>/exit, oom            conmon's own (its --persist-dir): read into exit.json
    runc/, crun/                         each OCI runtime's --root: this data dir's only

The files are the source of truth, so a restarted agent (or `pinnace down`) sees what is
there. `RuncState` holds the paths, the runc command line and an in-memory `Index`
(container records by id, ids by pod uid, sandbox ids by pod uid), loaded from the files
at construction and kept by this process's creates and removes: a pod's sync then reads
only that pod's files. container.json is written once, at create, and never changes, so
its record may be cached; sandbox.json (`ready`) and the monitor's files are always read
fresh. A listing of the whole node re-reads the directories, the only way to learn of
another runtime object's creations.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pinnace.agent.network import dir_hash
from pinnace.agent.runtime.interface import POD_UID, RuntimeError_
from pinnace.agent.runtime.monitor import oom_killed
from pinnace.agent.runtime.runc import oci_runtime

CGROUP_ROOT = Path("/sys/fs/cgroup")

Record = dict[str, Any]


def read_json(path: Path) -> Record | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Record) -> None:
    """Atomically (rename), so a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


async def run(*args: str, check: bool = True) -> str:
    """Run a command that starts no container (runc's output goes to a pipe only then)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise RuntimeError_(f"{' '.join(args[:4])}: {(err or out).decode().strip()}")
    return out.decode()


def exit_record(d: Path) -> Record | None:
    """How the container of dir `d` ended, or None while it has not. The Python monitor
    writes exit.json itself; conmon writes only its exit code (`exit`, its time of writing
    is the finish) and an empty `oom` on an OOM kill: those are read into exit.json here,
    once, with the memory cgroup's OOM counter asked too (conmon's event may come late)."""
    record = read_json(d / "exit.json")
    if record is not None:
        return record
    try:
        code = int((d / "exit").read_text().strip())
        finished = (d / "exit").stat().st_mtime
    except (OSError, ValueError):
        return None
    spec = read_json(d / "bundle" / "config.json") or {}
    cgroups_path = (spec.get("linux") or {}).get("cgroupsPath", "")
    record = {"exit_code": 255 if code < 0 else code, "finished_at": finished,
              "oom_killed": (d / "oom").exists() or bool(cgroups_path and
                                                         oom_killed(cgroups_path)),
              "start_failed": (d / "start_failed").exists()}
    with contextlib.suppress(OSError):  # a dir being removed meanwhile
        write_json(d / "exit.json", record)
    return record


def exited(d: Path) -> bool:
    """The container of dir `d` has ended (either monitor's files say so)."""
    return (d / "exit.json").exists() or (d / "exit").exists()


_libc = ctypes.CDLL(None, use_errno=True)


def _mount_overlay(layers: list[Path], upper: Path, work: Path, target: Path) -> None:
    lower = ":".join(str(p) for p in reversed(layers))
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options) != 0:
        err = ctypes.get_errno()
        raise RuntimeError_(f"mount overlay on {target}: {os.strerror(err)}")


def _umount(target: Path) -> None:
    if _libc.umount2(str(target).encode(), 0) != 0:
        err = ctypes.get_errno()
        raise RuntimeError_(f"umount {target}: {os.strerror(err)}")


async def mount_overlay(layers: list[Path], *, upper: Path, work: Path, target: Path
                        ) -> None:
    """The overlay of `layers` (the image's, lowest first) on `target`: the mount(2)
    call itself, in a thread: no `mount` process per container."""
    await asyncio.to_thread(_mount_overlay, layers, upper, work, target)


async def umount(target: Path) -> None:
    await asyncio.to_thread(_umount, target)


async def remove_tree(path: Path) -> None:
    """rmtree in a thread: removing a container's overlay dirs can take tens of ms."""
    await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def remove_cgroup(path: str) -> None:
    """rmdir `path` and its subtree in every hierarchy (runc removes only the leaf of what
    it made, and nothing of its parents)."""
    if not CGROUP_ROOT.is_dir():
        return
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / path.lstrip("/")
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def pod_of(c: Record) -> str:
    return c["labels"].get(POD_UID, "")


def _discard(index: dict[str, set[str]], key: str, item: str) -> None:
    items = index.get(key)
    if items is not None:
        items.discard(item)
        if not items:
            del index[key]


class Index:
    """Ids of what is on disk, by pod uid; container records."""

    def __init__(self) -> None:
        self.containers: dict[str, Record] = {}
        self.pod_containers: dict[str, set[str]] = {}
        self.pod_sandboxes: dict[str, set[str]] = {}
        self.sandbox_pod: dict[str, str] = {}

    def add_container(self, cid: str, c: Record) -> None:
        self.containers[cid] = c
        self.pod_containers.setdefault(pod_of(c), set()).add(cid)

    def drop_container(self, cid: str) -> None:
        c = self.containers.pop(cid, None)
        if c is not None:
            _discard(self.pod_containers, pod_of(c), cid)

    def add_sandbox(self, sid: str, pod_uid: str) -> None:
        self.sandbox_pod[sid] = pod_uid
        self.pod_sandboxes.setdefault(pod_uid, set()).add(sid)

    def drop_sandbox(self, sid: str) -> None:
        uid = self.sandbox_pod.pop(sid, None)
        if uid is not None:
            _discard(self.pod_sandboxes, uid, sid)


class RuncState:
    """The files of one data dir's runtime, the index of them and how to call runc."""

    def __init__(self, data_dir: str | os.PathLike[str], runc: str | None = None) -> None:
        """`runc`: the OCI runtime new containers are made with (see `oci_runtime`);
        each container keeps the one it was made with."""
        self.root = Path(data_dir) / "runtime"
        self.runc = oci_runtime.choose(runc)
        self.runc_root = self.oci_root(self.runc)
        # the per-container monitor: Debian's conmon where installed, else runtime.monitor
        self.conmon = shutil.which("conmon")
        self.hash = dir_hash(data_dir)
        self.index = Index()
        # started containers whose exit.json was not seen yet → pod uid (the exit watch)
        self.running: dict[str, str] = {}
        for sub in ("sandboxes", "containers", "runc"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        Path(self.runc_root).mkdir(exist_ok=True)
        self.load_containers()
        self.load_sandboxes()

    def oci_root(self, binary: str) -> str:
        """An OCI runtime's --root: one per runtime (runc's and crun's state differ)."""
        return str(self.root / Path(binary).name)

    def runc_command(self, *args: str, container: str | None = None) -> list[str]:
        """The OCI runtime's command line; for `container`, the runtime it was made with
        (records older than the choice were made with runc)."""
        binary = self.runc
        if container is not None:
            c = self.index.containers.get(container) or self.record(container) or {}
            binary = c.get("oci_runtime") or shutil.which("runc") or "runc"
        return [binary, "--root", self.oci_root(binary), *args]

    def sandbox_dir(self, sid: str) -> Path:
        return self.root / "sandboxes" / sid

    def container_dir(self, cid: str) -> Path:
        return self.root / "containers" / cid

    def pod_cgroup(self, pod_uid: str) -> str:
        """Cgroups are `/pinnace/<dir hash>/pod<uid>/<container id>` in every hierarchy."""
        return f"/pinnace/{self.hash}/pod{pod_uid}"

    def load_containers(self) -> None:
        """(Re)build the container index from the files (half-made ones, without
        container.json, are left out)."""
        self.index.containers.clear()
        self.index.pod_containers.clear()
        for d in (self.root / "containers").iterdir():
            c = read_json(d / "container.json")
            if c is None:
                continue
            self.index.add_container(d.name, c)
            if (d / "state.json").exists() and not exited(d):
                self.running.setdefault(d.name, pod_of(c))
        for cid in [cid for cid in self.running if cid not in self.index.containers]:
            del self.running[cid]

    def load_sandboxes(self) -> None:
        self.index.pod_sandboxes.clear()
        self.index.sandbox_pod.clear()
        for d in (self.root / "sandboxes").iterdir():
            sb = read_json(d / "sandbox.json")
            if sb is not None:
                self.index.add_sandbox(d.name, sb["pod_uid"])

    def sandbox(self, sid: str) -> Record:
        """sandbox.json, read fresh; RuntimeError_ when there is none."""
        sb = read_json(self.sandbox_dir(sid) / "sandbox.json")
        if sb is None:
            raise RuntimeError_(f"sandbox {sid} not found")
        return sb

    def sandbox_containers(self, sid: str) -> list[str]:
        uid = self.index.sandbox_pod.get(sid)
        candidates = (self.index.pod_containers.get(uid, set()) if uid is not None
                      else self.index.containers)
        return sorted(cid for cid in candidates
                      if self.index.containers[cid]["sandbox_id"] == sid)

    def container_records(self) -> list[tuple[str, Record]]:
        """Every container of the data dir, re-read from the files."""
        self.load_containers()
        return sorted(self.index.containers.items())

    def record(self, cid: str) -> Record | None:
        """The container's record; None when it is gone (also when another runtime object
        removed it). One of another object's creations is read and indexed here."""
        path = self.container_dir(cid) / "container.json"
        c = self.index.containers.get(cid)
        if c is not None:
            if path.exists():
                return c
            self.index.drop_container(cid)
            return None
        c = read_json(path)
        if c is not None:
            self.index.add_container(cid, c)
        return c

    def is_running(self, cid: str) -> bool:
        """Started and not exited, by the monitor's files."""
        d = self.container_dir(cid)
        return (d / "state.json").exists() and not exited(d)
