"""The `runc` runtime: real pods (a CNI netns each) and containers (runc, overlayfs rootfs
from the image store's unpacked layers, cgroups), shaped by the CRI interface.

All state is files under `DATA_DIR/runtime/`, so a restarted agent sees what is there:

    sandboxes/<id>/sandbox.json          config, netns, IP, ready, hostPorts; hosts, resolv.conf
    hostports.json, hostports.lock       published hostPorts (see `network.hostport`)
    containers/<id>/container.json       config, image, sandbox id, created_at
    containers/<id>/bundle/config.json   the OCI spec (root = bundle/rootfs, the overlay)
    containers/<id>/{upper,work}         the overlay's writable layer
    containers/<id>/container.log        CRI-format log, written by the monitor
    containers/<id>/state.json|exit.json written by the monitor (see `monitor`)
    runc/                                runc's --root: this data dir's containers only

A started container is owned by its monitor process, not by this object: drop the
object (or restart the agent) and the container runs on, its exit still recorded.
Cgroups are `/pinnace/<dir hash>/pod<uid>/<container id>` in every hierarchy.

A hostNetwork sandbox has no netns and runs no CNI: its IP is "" (the agent reports the
node's IP), its containers join no network namespace (the host's), see the node's hostname
and get a copy of the node's /etc/hosts, as kubelet gives them. Other sandboxes publish
their hostPorts while they are ready: added with the sandbox, withdrawn when it stops.

The files are the source of truth; an in-memory `_Index` (container records by id, ids
by pod uid, sandbox ids by pod uid) is loaded from them at construction and kept by this
object's creates and removes, so a pod's sync reads only that pod's files: its sandbox.json
and its containers' state.json/exit.json, always fresh (the monitor writes those). A
listing of one pod drops what another object removed; a listing of the whole node re-reads
the directory (this object does not learn of creations by another one otherwise). The exit
watch looks only at containers known to be running: one stat of exit.json each per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import tty as ttymod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinnace.agent.images import ImageError, ImageStore
from pinnace.agent.network import HostPortMapping, HostPorts, NetworkError, PodNetwork, dir_hash
from pinnace.agent.runtime import monitor, oci_spec
from pinnace.agent.runtime.interface import (
    POD_UID,
    ContainerConfig,
    ContainerEventHandler,
    ContainerState,
    ContainerStatus,
    Mount,
    PodSandboxConfig,
    PodSandboxStatus,
    RuntimeError_,
)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_MONITOR = str(Path(__file__).with_name("monitor.py"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def _run(*args: str, check: bool = True) -> str:
    # runc's own output goes to a pipe only for commands that start no container
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise RuntimeError_(f"{' '.join(args[:4])}: {(err or out).decode().strip()}")
    return out.decode()


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


class _Index:
    """Ids of what is on disk, by pod uid; container records (container.json is written
    once, at create, and never changes)."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.pod_containers: dict[str, set[str]] = {}
        self.pod_sandboxes: dict[str, set[str]] = {}
        self.sandbox_pod: dict[str, str] = {}

    def add_container(self, cid: str, c: dict[str, Any]) -> None:
        self.containers[cid] = c
        self.pod_containers.setdefault(_pod_of(c), set()).add(cid)

    def drop_container(self, cid: str) -> None:
        c = self.containers.pop(cid, None)
        if c is not None:
            _discard(self.pod_containers, _pod_of(c), cid)

    def add_sandbox(self, sid: str, pod_uid: str) -> None:
        self.sandbox_pod[sid] = pod_uid
        self.pod_sandboxes.setdefault(pod_uid, set()).add(sid)

    def drop_sandbox(self, sid: str) -> None:
        uid = self.sandbox_pod.pop(sid, None)
        if uid is not None:
            _discard(self.pod_sandboxes, uid, sid)


def _pod_of(c: dict[str, Any]) -> str:
    return c["labels"].get(POD_UID, "")


def _discard(index: dict[str, set[str]], key: str, item: str) -> None:
    items = index.get(key)
    if items is not None:
        items.discard(item)
        if not items:
            del index[key]


@dataclass(frozen=True)
class _Paths:
    root: Path

    def sandbox(self, sid: str) -> Path:
        return self.root / "sandboxes" / sid

    def container(self, cid: str) -> Path:
        return self.root / "containers" / cid


class RuncRuntime:
    name = "runc"
    version = "0.1.0"

    def __init__(self, data_dir: str | os.PathLike[str], *, pod_cidr: str,
                 runc: str = "runc") -> None:
        self._data_dir = Path(data_dir)
        self._paths = _Paths(self._data_dir / "runtime")
        self._runc = shutil.which(runc) or runc
        self._runc_root = str(self._paths.root / "runc")
        self._hash = dir_hash(data_dir)
        self._images = ImageStore(data_dir)
        self.network = PodNetwork(data_dir, pod_cidr)
        self.hostports = HostPorts(data_dir, bridge=self.network.bridge, pod_cidr=pod_cidr)
        self._handlers: list[ContainerEventHandler] = []
        self._watcher: asyncio.Task[None] | None = None
        self._index = _Index()
        # started containers whose exit.json was not seen yet → pod uid (for the watch)
        self._running: dict[str, str] = {}
        for sub in ("sandboxes", "containers", "runc"):
            (self._paths.root / sub).mkdir(parents=True, exist_ok=True)
        self._load_containers()
        self._load_sandboxes()

    def _load_containers(self) -> None:
        """(Re)build the container index from the files (half-made ones, without
        container.json, are left out as before)."""
        self._index.containers.clear()
        self._index.pod_containers.clear()
        for d in (self._paths.root / "containers").iterdir():
            c = _read_json(d / "container.json")
            if c is None:
                continue
            self._index.add_container(d.name, c)
            if (d / "state.json").exists() and not (d / "exit.json").exists():
                self._running.setdefault(d.name, _pod_of(c))
        for cid in [cid for cid in self._running if cid not in self._index.containers]:
            del self._running[cid]

    def _load_sandboxes(self) -> None:
        self._index.pod_sandboxes.clear()
        self._index.sandbox_pod.clear()
        for d in (self._paths.root / "sandboxes").iterdir():
            sb = _read_json(d / "sandbox.json")
            if sb is not None:
                self._index.add_sandbox(d.name, sb["pod_uid"])

    # -- events --------------------------------------------------------------------------

    def subscribe(self, handler: ContainerEventHandler) -> None:
        """Handlers hear of containers exiting on their own; one poll of the exit files
        every 0.5 s, started with the first subscriber."""
        self._handlers.append(handler)
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            for cid, uid in list(self._running.items()):
                d = self._paths.container(cid)
                if (d / "exit.json").exists():
                    del self._running[cid]
                    for handler in self._handlers:
                        handler(uid)
                elif not d.exists():  # removed by another runtime object
                    del self._running[cid]
            await asyncio.sleep(0.5)

    # -- sandboxes -----------------------------------------------------------------------

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        sid = secrets.token_hex(32)
        d = self._paths.sandbox(sid)
        d.mkdir(parents=True)
        host = config.host_network
        # a hostNetwork pod's ports are the host's already: nothing to publish
        mappings = [] if host else [HostPortMapping(m.container_port, m.host_port, m.protocol,
                                                    m.host_ip) for m in config.port_mappings]
        ip = ""
        try:
            if not host:
                ip = await self.network.add(sid)
                await self.hostports.add(sid, ip, mappings)
        except NetworkError as e:
            if ip:
                with contextlib.suppress(NetworkError):
                    await self.network.delete(sid)
            shutil.rmtree(d, ignore_errors=True)
            raise RuntimeError_(f"pod network: {e}") from None
        (d / "hosts").write_text(
            _read_text(Path("/etc/hosts")) if host else
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{ip}\t{config.name}\n")
        (d / "resolv.conf").write_text(_read_text(Path("/etc/resolv.conf")))
        _write_json(d / "sandbox.json", {
            "id": sid, "pod_uid": config.pod_uid, "name": config.name,
            "namespace": config.namespace, "labels": {**config.labels, POD_UID: config.pod_uid},
            "annotations": config.annotations, "ip": ip, "ready": True,
            "host_network": host, "netns": "" if host else self.network.netns_path(sid),
            "port_mappings": [dataclasses.asdict(m) for m in mappings],
            "created_at": time.time()})
        self._index.add_sandbox(sid, config.pod_uid)
        return sid

    def _sandbox(self, sid: str) -> dict[str, Any]:
        sb = _read_json(self._paths.sandbox(sid) / "sandbox.json")
        if sb is None:
            raise RuntimeError_(f"sandbox {sid} not found")
        return sb

    def _sandbox_containers(self, sid: str) -> list[str]:
        uid = self._index.sandbox_pod.get(sid)
        candidates = (self._index.pod_containers.get(uid, set()) if uid is not None
                      else self._index.containers)
        return sorted(cid for cid in candidates
                      if self._index.containers[cid]["sandbox_id"] == sid)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        try:
            sb = self._sandbox(sandbox_id)
        except RuntimeError_:
            return
        for cid in self._sandbox_containers(sandbox_id):
            await self.stop_container(cid, 0)
        try:
            await self.hostports.remove(sandbox_id)
            if not sb.get("host_network"):
                await self.network.delete(sandbox_id)
        except NetworkError as e:
            raise RuntimeError_(f"pod network: {e}") from None
        if sb["ready"]:
            sb["ready"] = False
            _write_json(self._paths.sandbox(sandbox_id) / "sandbox.json", sb)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        d = self._paths.sandbox(sandbox_id)
        if not d.exists():
            self._index.drop_sandbox(sandbox_id)
            return
        sb = _read_json(d / "sandbox.json")
        await self.stop_pod_sandbox(sandbox_id)
        for cid in self._sandbox_containers(sandbox_id):
            await self.remove_container(cid)
        if sb is not None:
            self._remove_cgroup(f"/pinnace/{self._hash}/pod{sb['pod_uid']}")
        shutil.rmtree(d, ignore_errors=True)
        if not (d / "sandbox.json").exists():
            self._index.drop_sandbox(sandbox_id)

    def _sandbox_status(self, sb: dict[str, Any]) -> PodSandboxStatus:
        return PodSandboxStatus(sb["id"], sb["pod_uid"], sb["ready"], sb["ip"],
                                sb["created_at"], sb["labels"])

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        return self._sandbox_status(self._sandbox(sandbox_id))

    async def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[PodSandboxStatus]:
        if pod_uid is None:
            self._load_sandboxes()
            sids = list(self._index.sandbox_pod)
        else:
            sids = list(self._index.pod_sandboxes.get(pod_uid, ()))
        out = []
        for sid in sorted(sids):
            sb = _read_json(self._paths.sandbox(sid) / "sandbox.json")  # fresh: `ready`
            if sb is None:  # removed by another runtime object
                self._index.drop_sandbox(sid)
            else:
                out.append(self._sandbox_status(sb))
        return out

    # -- containers ----------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        sb = self._sandbox(sandbox_id)
        if not sb["ready"]:
            raise RuntimeError_(f"sandbox {sandbox_id} is not ready")
        try:
            image = self._images.resolve(config.image)
            layers = await asyncio.to_thread(self._images.unpacked_layers, config.image)
        except ImageError as e:
            raise RuntimeError_(f"image {config.image}: {e}") from None
        cid = secrets.token_hex(32)
        d = self._paths.container(cid)
        rootfs = d / "bundle" / "rootfs"
        for sub in ("upper", "work"):
            (d / sub).mkdir(parents=True)
        rootfs.mkdir(parents=True)
        record = {
            "id": cid, "sandbox_id": sandbox_id, "name": config.name, "image": config.image,
            "image_id": (image.repo_digests or [image.id])[0], "attempt": config.attempt,
            "labels": {**config.labels, POD_UID: sb["pod_uid"]},
            "annotations": config.annotations, "created_at": time.time(),
            "stop_signal": image.stop_signal or "SIGTERM",
            "stdin": config.stdin, "stdin_once": config.stdin_once, "tty": config.tty}
        _write_json(d / "container.json", record)
        self._index.add_container(cid, record)
        try:
            lower = ":".join(str(p) for p in reversed(layers))
            await _run("mount", "-t", "overlay", "overlay", "-o",
                       f"lowerdir={lower},upperdir={d / 'upper'},workdir={d / 'work'}",
                       str(rootfs))
            uid, gid = oci_spec.parse_user(image.user, _read_text(rootfs / "etc/passwd"),
                                           _read_text(rootfs / "etc/group"))
            sec = config.security
            uid = sec.run_as_user if sec.run_as_user is not None else uid
            gid = sec.run_as_group if sec.run_as_group is not None else gid
            if sec.run_as_non_root and uid == 0:
                raise RuntimeError_("container has runAsNonRoot and image will run as root")
            spec = oci_spec.build_spec(oci_spec.SpecInput(
                rootfs=str(rootfs),
                args=oci_spec.process_args(entrypoint=image.entrypoint, cmd=image.cmd,
                                           command=config.command, args=config.args),
                env=oci_spec.merge_env(image.env, config.env, sb["name"]),
                cwd=config.working_dir or image.working_dir or "/", uid=uid, gid=gid,
                hostname=socket.gethostname() if sb.get("host_network") else sb["name"],
                netns_path=sb["netns"],
                cgroups_path=f"/pinnace/{self._hash}/pod{sb['pod_uid']}/{cid}",
                memory_limit=config.memory_limit, cpu_limit_millis=config.cpu_limit_millis,
                nofile=_nofile(), additional_gids=sec.supplemental_groups,
                privileged=sec.privileged, add_capabilities=sec.add_capabilities,
                drop_capabilities=sec.drop_capabilities, read_only_root=sec.read_only_root,
                no_new_privileges=sec.no_new_privileges,
                mounts=[Mount(str(self._paths.sandbox(sandbox_id) / "hosts"), "/etc/hosts"),
                        Mount(str(self._paths.sandbox(sandbox_id) / "resolv.conf"),
                              "/etc/resolv.conf"),
                        *config.mounts],
                annotations=config.annotations, terminal=config.tty))
            if not spec["process"]["args"]:
                raise RuntimeError_(f"image {config.image} has no command and none was given")
            _write_json(d / "bundle" / "config.json", spec)
        except (ValueError, RuntimeError_) as e:
            await self.remove_container(cid)
            raise RuntimeError_(f"create container {config.name}: {e}") from None
        return cid

    async def start_container(self, container_id: str) -> None:
        d = self._paths.container(container_id)
        if not (d / "container.json").exists():
            raise RuntimeError_(f"container {container_id} not found")
        if (d / "state.json").exists() or (d / "exit.json").exists():
            raise RuntimeError_(f"container {container_id} was already started")
        line = await asyncio.to_thread(self._launch_monitor, container_id)
        if not line.startswith("ok"):
            raise RuntimeError_(f"start container: {line.removeprefix('error ') or 'monitor died'}")
        c = self._record(container_id)
        if c is not None:
            self._running[container_id] = _pod_of(c)

    def _launch_monitor(self, cid: str) -> str:
        d = self._paths.container(cid)
        c = self._index.containers.get(cid) or _read_json(d / "container.json") or {}
        # stdin / tty: the monitor keeps the container's stdin or pty and serves attach
        flags = [flag for flag, on in (("stdin", c.get("stdin")), ("tty", c.get("tty")),
                                       ("stdin-once", c.get("stdin_once"))) if on]
        with open(d / "monitor.err", "ab") as err:
            # -I -S: the monitor is stdlib only; skipping site's .pth files saves ~20 ms
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _MONITOR, str(d), self._runc, self._runc_root, cid,
                 *flags],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True, cwd="/")
        assert proc.stdout is not None
        with proc.stdout:
            line = proc.stdout.readline().decode().strip()
        proc.wait()  # the monitor forked: this is its short-lived parent
        return line

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        d = self._paths.container(container_id)
        c = self._record(container_id)
        if c is None or (d / "exit.json").exists():
            return
        if not (d / "state.json").exists():  # created, never started
            _write_json(d / "exit.json", {"exit_code": 0, "finished_at": time.time(),
                                          "oom_killed": False})
            return
        sig = c.get("stop_signal") or "SIGTERM"
        if grace_period > 0:
            await _run(self._runc, "--root", self._runc_root, "kill", container_id, sig,
                       check=False)
            if await self._wait_exit(d, grace_period):
                return
        await _run(self._runc, "--root", self._runc_root, "kill", container_id, "KILL",
                   check=False)
        if not await self._wait_exit(d, 10.0):
            raise RuntimeError_(f"container {container_id} did not exit after SIGKILL")

    async def _wait_exit(self, d: Path, within: float) -> bool:
        """Poll for exit.json (or a dead monitor): first after 10 ms, as a signalled
        container often exits at once, then every 50 ms, as many may be stopping."""
        deadline = time.monotonic() + within
        state = _read_json(d / "state.json")
        pid = state["monitor_pid"] if state is not None else None
        delay = 0.01
        while not (d / "exit.json").exists():
            if pid is not None and self._monitor_pid_gone(d, pid):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    @staticmethod
    def _monitor_pid_gone(d: Path, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return not (d / "exit.json").exists()
        except PermissionError:
            pass
        return False

    async def remove_container(self, container_id: str) -> None:
        d = self._paths.container(container_id)
        self._running.pop(container_id, None)  # its exit is no event: it is being removed
        if not d.exists():
            self._index.drop_container(container_id)
            return
        c = _read_json(d / "container.json")
        await _run(self._runc, "--root", self._runc_root, "delete", "--force", container_id,
                   check=False)
        rootfs = d / "bundle" / "rootfs"
        if _mounted(rootfs):
            await _run("umount", str(rootfs))
        spec = _read_json(d / "bundle" / "config.json")
        if spec is not None:
            self._remove_cgroup(spec["linux"]["cgroupsPath"])
        elif c is not None:
            sb = c["labels"].get(POD_UID, "")
            self._remove_cgroup(f"/pinnace/{self._hash}/pod{sb}/{container_id}")
        shutil.rmtree(d, ignore_errors=True)
        if not (d / "container.json").exists():
            self._index.drop_container(container_id)

    def _remove_cgroup(self, path: str) -> None:
        """rmdir `path` and its subtree in every hierarchy (runc removes only the leaf of
        what it made, and nothing of its parents)."""
        if not CGROUP_ROOT.is_dir():
            return
        for hierarchy in CGROUP_ROOT.iterdir():
            top = hierarchy / path.lstrip("/")
            if not top.is_dir():
                continue
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)

    def _container_records(self) -> list[tuple[str, dict[str, Any]]]:
        """Every container of the data dir, re-read from the files."""
        self._load_containers()
        return sorted(self._index.containers.items())

    def _record(self, cid: str) -> dict[str, Any] | None:
        """The container's record; None when it is gone (also when another runtime object
        removed it). One of another object's creations is read and indexed here."""
        path = self._paths.container(cid) / "container.json"
        c = self._index.containers.get(cid)
        if c is not None:
            if path.exists():
                return c
            self._index.drop_container(cid)
            return None
        c = _read_json(path)
        if c is not None:
            self._index.add_container(cid, c)
        return c

    def _status(self, cid: str, c: dict[str, Any]) -> ContainerStatus | None:
        """Status from the monitor's files, read fresh; None when the container is gone."""
        d = self._paths.container(cid)
        state = _read_json(d / "state.json")
        exit_ = _read_json(d / "exit.json")
        if state is None and exit_ is None and not (d / "container.json").exists():
            self._index.drop_container(cid)  # removed by another runtime object
            return None
        started = state["started_at"] if state else 0.0
        common = dict(id=cid, sandbox_id=c["sandbox_id"], name=c["name"], image=c["image"],
                      image_id=c["image_id"], attempt=c["attempt"], created_at=c["created_at"],
                      started_at=started, labels=c["labels"])
        if exit_ is not None:
            code = exit_["exit_code"]
            reason = ("OOMKilled" if exit_.get("oom_killed") else
                      "StartError" if exit_.get("start_failed") else
                      "Completed" if code == 0 else "Error")
            return ContainerStatus(**common, state=ContainerState.EXITED,
                                   finished_at=exit_["finished_at"], exit_code=code,
                                   reason=reason)
        if state is None:
            return ContainerStatus(**common, state=ContainerState.CREATED)
        if self._monitor_pid_gone(d, state["monitor_pid"]):
            return ContainerStatus(**common, state=ContainerState.UNKNOWN,
                                   message="the container's monitor is gone")
        return ContainerStatus(**common, state=ContainerState.RUNNING)

    async def container_status(self, container_id: str) -> ContainerStatus:
        c = self._record(container_id)
        status = self._status(container_id, c) if c is not None else None
        if status is None:
            raise RuntimeError_(f"container {container_id} not found")
        return status

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        if pod_uid is None:
            records = self._container_records()
        else:
            ids = self._index.pod_containers.get(pod_uid, ())
            records = sorted((cid, self._index.containers[cid]) for cid in ids)
        return [s for cid, c in records if (s := self._status(cid, c)) is not None]

    def log_path(self, container_id: str) -> Path:
        """The container's CRI-format log file."""
        return self._paths.container(container_id) / "container.log"

    # -- streaming -----------------------------------------------------------------------

    async def exec_sync(self, container_id: str, cmd: list[str], time_limit: float
                        ) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            self._runc, "--root", self._runc_root, "exec", container_id, *cmd,
            stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), time_limit or None)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError_(f"exec in {container_id} timed out") from None
        return proc.returncode or 0, out, err

    async def container_logs(self, container_id: str) -> bytes:
        try:
            return self.log_path(container_id).read_bytes()
        except FileNotFoundError:
            raise RuntimeError_(f"container {container_id} not found") from None

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool
                   ) -> RuncExec:
        """Start `cmd` in the running container with its streams open (see `RuncExec`)."""
        d = self._paths.container(container_id)
        if not (d / "state.json").exists() or (d / "exit.json").exists():
            raise RuntimeError_(f"container {container_id} is not running")
        if not cmd:
            raise RuntimeError_("exec needs a command")
        return await RuncExec.start(
            [self._runc, "--root", self._runc_root], container_id, cmd,
            pid_file=d / f"exec-{secrets.token_hex(8)}.pid", stdin=stdin, tty=tty)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool
                     ) -> RuncAttach | LogAttach:
        """Attach to the running container's process: through its monitor's attach socket
        when it has stdin or a tty (`RuncAttach`), else its output as logged (`LogAttach`).
        `tty` is ignored: whether there is a terminal was fixed when it was created."""
        d = self._paths.container(container_id)
        if not (d / "state.json").exists() or (d / "exit.json").exists():
            raise RuntimeError_(f"container {container_id} is not running")
        c = self._record(container_id) or {}
        if c.get("stdin") or c.get("tty"):
            try:
                return await RuncAttach.connect(d, stdin=stdin)
            except OSError:
                if not (d / "exit.json").exists():
                    raise RuntimeError_(f"container {container_id}: its attach socket "
                                        "does not answer") from None
        return LogAttach(d)

    # -- teardown ------------------------------------------------------------------------

    async def cleanup_all(self) -> None:
        """Remove every container, mount, netns, bridge, nftables table and cgroup of this
        data dir (what `pinnace down` does); runs to the end even when parts fail."""
        if self._watcher is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._watcher.cancel()
            self._watcher = None
        for cid, _ in self._container_records():
            with contextlib.suppress(RuntimeError_):
                await self.stop_container(cid, 0)
            with contextlib.suppress(RuntimeError_, OSError):
                await self.remove_container(cid)
        containers = self._paths.root / "containers"
        for d in containers.iterdir():  # half-made ones without container.json
            rootfs = d / "bundle" / "rootfs"
            if _mounted(rootfs):
                await _run("umount", "-l", str(rootfs), check=False)
            shutil.rmtree(d, ignore_errors=True)
        for d in (self._paths.root / "sandboxes").iterdir():
            if not (_read_json(d / "sandbox.json") or {}).get("host_network"):
                with contextlib.suppress(NetworkError):
                    await self.network.delete(d.name)
            shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(NetworkError, OSError):
            await self.hostports.cleanup_all()
        with contextlib.suppress(NetworkError):
            await self.network.cleanup_all()
        self._remove_cgroup(f"/pinnace/{self._hash}")
        self._remove_cgroup("/pinnace")  # only if empty: other data dirs may use it
        self._load_containers()
        self._load_sandboxes()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _nofile() -> int:
    """1048576 as Docker gives, unless the agent itself may not go that high (without
    CAP_SYS_RESOURCE the container cannot get more than its creator's hard limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)


# -- exec sessions (`runc exec` in the foreground) ------------------------------------------


class _QueuedOutput:
    """Output chunks (channel, bytes) a reader takes in order; None marks the end and stays
    there for later reads. Shared by exec and attach sessions."""

    _output: asyncio.Queue[tuple[int, bytes] | None]

    async def read(self) -> tuple[int, bytes] | None:
        item = await self._output.get()
        if item is None:
            self._output.put_nowait(None)
        return item


class RuncExec(_QueuedOutput):
    """One `runc exec` in the foreground: runc exits with the command's exit code.

    Without a tty the command's stdio are pipes to runc. With one, runc needs a terminal
    of its own to relay the container's pty to (`--console-socket` would make runc detach,
    leaving the exit code to whoever reaps the process), so runc gets the slave side of a
    pty made here, set raw, and the agent holds the master. Resizing sets the master's
    window size and sends runc SIGWINCH, on which runc copies that size to the container's
    pty. runc writes the exec'd process's host pid to `pid_file`, so `kill` reaches the
    command itself (runc cannot forward SIGKILL)."""

    def __init__(self, proc: asyncio.subprocess.Process, pid_file: Path,
                 master: int | None) -> None:
        self._proc = proc
        self._pid_file = pid_file
        self._master = master
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._open_streams = 1 if master is not None else 2
        self._readers: list[asyncio.Task[None]] = []
        self._winch: asyncio.TimerHandle | None = None
        self._code: int | None = None

    @classmethod
    async def start(cls, runc: list[str], cid: str, cmd: list[str], *, pid_file: Path,
                    stdin: bool, tty: bool) -> RuncExec:
        args = [*runc, "exec", "--pid-file", str(pid_file)]
        if not tty:
            proc = await asyncio.create_subprocess_exec(
                *args, cid, *cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            session = cls(proc, pid_file, None)
            assert proc.stdout is not None and proc.stderr is not None
            session._readers = [asyncio.create_task(session._pump(proc.stdout, 1)),
                                 asyncio.create_task(session._pump(proc.stderr, 2))]
            return session
        master, slave = os.openpty()
        try:
            ttymod.setraw(slave)  # runc relays bytes; our side must not echo or translate
            _set_winsize(master, 80, 24)
            proc = await asyncio.create_subprocess_exec(
                *args, "--tty", cid, *cmd, stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        session = cls(proc, pid_file, master)
        asyncio.get_running_loop().add_reader(master, session._read_master)
        return session

    async def _pump(self, stream: asyncio.StreamReader, channel: int) -> None:
        while chunk := await stream.read(65536):
            await self._output.put((channel, chunk))
        self._stream_done()

    def _stream_done(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._output.put_nowait(None)

    def _read_master(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: runc, the last holder of the slave, is gone
            data = b""
        if data:
            self._output.put_nowait((1, data))
            return
        asyncio.get_running_loop().remove_reader(self._master)
        self._stream_done()

    async def write_stdin(self, data: bytes) -> None:
        if self._master is not None:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self._master, view):]
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            return
        if self._proc.stdin is None or self._proc.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            self._proc.stdin.write(data)
            await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self._master is not None:
            await self.write_stdin(b"\x04")  # a terminal's end of input: ^D
        elif self._proc.stdin is not None:
            self._proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        if self._master is None or width <= 0 or height <= 0:
            return
        _set_winsize(self._master, width, height)
        self._signal_winch()
        # runc installs its SIGWINCH handler after it starts: say it again a little later
        if self._winch is not None:
            self._winch.cancel()
        self._winch = asyncio.get_running_loop().call_later(0.3, self._signal_winch)

    def _signal_winch(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGWINCH)

    async def wait(self) -> int:
        if self._code is None:
            code = await self._proc.wait()
            self._code = 128 - code if code < 0 else code
            await self._release()
        return self._code

    async def kill(self) -> None:
        """End the command (the client went away)."""
        if self._proc.returncode is None:
            try:
                pid = int(self._pid_file.read_text().strip())
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        await self.wait()

    async def _release(self) -> None:
        if self._winch is not None:
            self._winch.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            task.cancel()
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        self._pid_file.unlink(missing_ok=True)


def _set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


# -- attach sessions (a client of the monitor's attach socket, or the log followed) ---------


class RuncAttach(_QueuedOutput):
    """Attached to a container with stdin or a tty through its monitor's attach socket
    (frames described in `monitor`): output chunks as the container writes them, stdin and
    window sizes passed on. `wait` gives the exit code once the container has exited (0
    when the attach ended first); `kill` detaches and leaves the container running."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 stdin: bool) -> None:
        self._reader = reader
        self._writer = writer
        self._stdin = stdin
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._code = 0
        self._receiver: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, d: Path, *, stdin: bool) -> RuncAttach:
        # by a dir fd: the state dir's path may be longer than a socket name may be
        dirfd = os.open(d, os.O_PATH | os.O_DIRECTORY)
        try:
            reader, writer = await asyncio.open_unix_connection(
                f"/proc/self/fd/{dirfd}/{monitor.ATTACH_SOCKET}")
        finally:
            os.close(dirfd)
        session = cls(reader, writer, stdin)
        session._send(monitor.HELLO, b"1" if stdin else b"0")
        session._receiver = asyncio.create_task(session._receive())
        return session

    def _send(self, kind: int, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(struct.pack(">BI", kind, len(data)) + data)

    async def _receive(self) -> None:
        try:
            while True:
                kind, size = struct.unpack(">BI", await self._reader.readexactly(5))
                data = await self._reader.readexactly(size) if size else b""
                if kind == monitor.EXIT:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        self._code = int(json.loads(data)["exit_code"])
                    break
                if kind in (monitor.STDOUT, monitor.STDERR):
                    await self._output.put((kind, data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._output.put_nowait(None)

    async def write_stdin(self, data: bytes) -> None:
        if self._stdin and data:
            self._send(monitor.STDIN, data)
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    async def close_stdin(self) -> None:
        if self._stdin:
            self._send(monitor.STDIN_CLOSE, b"")

    def resize(self, width: int, height: int) -> None:
        if 0 < width < 65536 and 0 < height < 65536:
            self._send(monitor.RESIZE, struct.pack(">HH", width, height))

    async def wait(self) -> int:
        if self._receiver is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._receiver)
        return self._code

    async def kill(self) -> None:
        """Detach (the client went away); the container runs on."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver


class LogAttach:
    """Attached to a container without stdin or tty (no attach socket): its output as the
    monitor logs it, from the log's end at the time of attaching until the container has
    exited (the monitor writes exit.json after the last log record)."""

    def __init__(self, d: Path) -> None:
        self._d = d
        self._log = open(d / "container.log", "rb")  # closed by read (at the end) or kill
        self._log.seek(0, os.SEEK_END)
        self._partial = b""
        self._ready: list[tuple[int, bytes]] = []
        self._done = False

    async def read(self) -> tuple[int, bytes] | None:
        while not self._ready and not self._done:
            exited = (self._d / "exit.json").exists() or not self._d.exists()
            data = self._log.read()
            if data:
                *records, self._partial = (self._partial + data).split(b"\n")
                for record in records:
                    parts = record.split(b" ", 3)  # <time> <stream> F|P <text>
                    if len(parts) == 4:
                        channel = monitor.STDERR if parts[1] == b"stderr" else monitor.STDOUT
                        self._ready.append(
                            (channel, parts[3] + (b"\n" if parts[2] == b"F" else b"")))
            elif exited:
                self._done = True
                self._log.close()
            else:
                await asyncio.sleep(0.1)
        return self._ready.pop(0) if self._ready else None

    async def write_stdin(self, data: bytes) -> None:
        pass  # the container's stdin is /dev/null

    async def close_stdin(self) -> None:
        pass

    def resize(self, width: int, height: int) -> None:
        pass

    async def wait(self) -> int:
        exit_ = _read_json(self._d / "exit.json")
        return int(exit_["exit_code"]) if exit_ is not None else 0

    async def kill(self) -> None:
        self._done = True
        self._log.close()
