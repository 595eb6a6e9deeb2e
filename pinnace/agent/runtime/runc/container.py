"""Containers under runc: an overlayfs rootfs from the image store's unpacked layers, the
user the process runs as, the OCI spec, and a monitor process that owns the container:
Debian's conmon (`runc.conmon`) where installed, the Python one (`runtime.monitor`) for
containers with stdin or a tty, or where conmon is not.

create: container.json, then the overlay (lower = the image's layers, upper/work in the
container's dir) mounted on bundle/rootfs, the image's user resolved against that rootfs'
/etc/passwd and /etc/group (the securityContext wins), then bundle/config.json. A failure
on the way removes what was made. start: the monitor is launched and the container is
started; from then on the container is the monitor's, not this object's: drop the object
(or restart the agent) and the container runs on, its exit still recorded. stop: the
image's stop signal, the grace period, then SIGKILL. Status is read from the monitor's
files each time.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from pinnace.agent.images import ImageError, ImageInfo, ImageStore
from pinnace.agent.runtime import oci_spec
from pinnace.agent.runtime.interface import (
    POD_UID,
    ContainerConfig,
    ContainerConfigError,
    ContainerState,
    ContainerStatus,
    Mount,
    RuntimeError_,
)
from pinnace.agent.runtime.runc import conmon
from pinnace.agent.runtime.runc.state import (
    Record,
    RuncState,
    exit_record,
    exited,
    mount_overlay,
    mounted,
    pod_of,
    read_json,
    read_text,
    remove_cgroup,
    remove_tree,
    run,
    umount,
    write_json,
)

_MONITOR = str(Path(__file__).parent.parent / "monitor.py")


def _nofile() -> int:
    """1048576 as Docker gives, unless the agent itself may not go that high (without
    CAP_SYS_RESOURCE the container cannot get more than its creator's hard limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)


def _user(image: ImageInfo, config: ContainerConfig, rootfs: Path) -> tuple[int, int]:
    """(uid, gid) the process runs as: the image's USER looked up in its own files, then
    the securityContext's runAsUser/runAsGroup; runAsNonRoot refuses root."""
    uid, gid = oci_spec.parse_user(image.user, read_text(rootfs / "etc/passwd"),
                                   read_text(rootfs / "etc/group"))
    sec = config.security
    uid = sec.run_as_user if sec.run_as_user is not None else uid
    gid = sec.run_as_group if sec.run_as_group is not None else gid
    if sec.run_as_non_root and uid == 0:
        raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    return uid, gid


class Containers:
    def __init__(self, state: RuncState, images: ImageStore) -> None:
        self._state = state
        self._images = images

    async def create(self, sandbox_id: str, config: ContainerConfig) -> str:
        st = self._state
        sb = st.sandbox(sandbox_id)
        if not sb["ready"]:
            raise RuntimeError_(f"sandbox {sandbox_id} is not ready")
        try:
            image = self._images.resolve(config.image)
            layers = await asyncio.to_thread(self._images.unpacked_layers, config.image)
        except ImageError as e:
            raise RuntimeError_(f"image {config.image}: {e}") from None
        cid = secrets.token_hex(32)
        d = st.container_dir(cid)
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
            "stdin": config.stdin, "stdin_once": config.stdin_once, "tty": config.tty,
            # made with, and monitored by, these for its whole life (an agent restarted
            # with other choices still finds its containers' own)
            "oci_runtime": st.runc,
            "monitor": "conmon" if st.conmon and not (config.stdin or config.tty)
                       else "python"}
        write_json(d / "container.json", record)
        st.index.add_container(cid, record)
        try:
            await mount_overlay(layers, upper=d / "upper", work=d / "work", target=rootfs)
            uid, gid = _user(image, config, rootfs)
            spec = self._spec(sb, cid, config, image, rootfs, uid, gid)
            if not spec["process"]["args"]:
                raise RuntimeError_(f"image {config.image} has no command and none was given")
            write_json(d / "bundle" / "config.json", spec)
        except (ValueError, RuntimeError_) as e:
            await self.remove(cid)
            # the same kind of error, so the agent can tell a refused spec from a failure
            kind = type(e) if isinstance(e, RuntimeError_) else RuntimeError_
            raise kind(f"create container {config.name}: {e}") from None
        return cid

    def _spec(self, sb: Record, cid: str, config: ContainerConfig, image: ImageInfo,
              rootfs: Path, uid: int, gid: int) -> Record:
        sec = config.security
        sandbox_dir = self._state.sandbox_dir(sb["id"])
        return oci_spec.build_spec(oci_spec.SpecInput(
            rootfs=str(rootfs),
            args=oci_spec.process_args(entrypoint=image.entrypoint, cmd=image.cmd,
                                       command=config.command, args=config.args),
            env=oci_spec.merge_env(image.env, config.env, sb["name"]),
            cwd=config.working_dir or image.working_dir or "/", uid=uid, gid=gid,
            hostname=socket.gethostname() if sb.get("host_network") else sb["name"],
            netns_path=sb["netns"],
            cgroups_path=f"{self._state.pod_cgroup(sb['pod_uid'])}/{cid}",
            memory_limit=config.memory_limit, cpu_limit_millis=config.cpu_limit_millis,
            nofile=_nofile(), additional_gids=sec.supplemental_groups,
            privileged=sec.privileged, add_capabilities=sec.add_capabilities,
            drop_capabilities=sec.drop_capabilities, read_only_root=sec.read_only_root,
            no_new_privileges=sec.no_new_privileges,
            mounts=[Mount(str(sandbox_dir / "hosts"), "/etc/hosts"),
                    Mount(str(sandbox_dir / "resolv.conf"), "/etc/resolv.conf"),
                    *config.mounts],
            annotations=config.annotations, terminal=config.tty))

    async def start(self, container_id: str) -> None:
        d = self._state.container_dir(container_id)
        if not (d / "container.json").exists():
            raise RuntimeError_(f"container {container_id} not found")
        if (d / "state.json").exists() or exited(d):
            raise RuntimeError_(f"container {container_id} was already started")
        c = self._state.record(container_id)
        if c is not None and c.get("monitor") == "conmon" and self._state.conmon:
            await conmon.launch(self._state, container_id, c)
        else:
            line = await asyncio.to_thread(self._launch_monitor, container_id)
            if not line.startswith("ok"):
                raise RuntimeError_(
                    f"start container: {line.removeprefix('error ') or 'monitor died'}")
        if c is not None:
            self._state.running[container_id] = pod_of(c)

    def _launch_monitor(self, cid: str) -> str:
        st = self._state
        d = st.container_dir(cid)
        c = st.index.containers.get(cid) or read_json(d / "container.json") or {}
        # stdin / tty: the monitor keeps the container's stdin or pty and serves attach
        flags = [flag for flag, on in (("stdin", c.get("stdin")), ("tty", c.get("tty")),
                                       ("stdin-once", c.get("stdin_once"))) if on]
        runc, _, root = st.runc_command(container=cid)
        with open(d / "monitor.err", "ab") as err:
            # -I -S: the monitor is stdlib only; skipping site's .pth files saves ~20 ms
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _MONITOR, str(d), runc, root, cid, *flags],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True, cwd="/")
        assert proc.stdout is not None
        with proc.stdout:
            line = proc.stdout.readline().decode().strip()
        proc.wait()  # the monitor forked: this is its short-lived parent
        return line

    async def stop(self, container_id: str, grace_period: float) -> None:
        st = self._state
        d = st.container_dir(container_id)
        c = st.record(container_id)
        if c is None or exited(d):
            return
        if not (d / "state.json").exists():  # created, never started
            write_json(d / "exit.json", {"exit_code": 0, "finished_at": time.time(),
                                         "oom_killed": False})
            return
        sig = c.get("stop_signal") or "SIGTERM"
        if grace_period > 0:
            await run(*st.runc_command("kill", container_id, sig, container=container_id),
                      check=False)
            if await self._wait_exit(d, grace_period):
                return
        await run(*st.runc_command("kill", container_id, "KILL", container=container_id),
                  check=False)
        if not await self._wait_exit(d, 10.0):
            raise RuntimeError_(f"container {container_id} did not exit after SIGKILL")

    async def _wait_exit(self, d: Path, within: float) -> bool:
        """Poll for exit.json (or a dead monitor): first after 10 ms, as a signalled
        container often exits at once, then every 50 ms, as many may be stopping."""
        deadline = time.monotonic() + within
        state = read_json(d / "state.json")
        pid = state["monitor_pid"] if state is not None else None
        delay = 0.01
        while not exited(d):
            if pid is not None and _monitor_gone(d, pid):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    async def remove(self, container_id: str) -> None:
        st = self._state
        d = st.container_dir(container_id)
        st.running.pop(container_id, None)  # its exit is no event: it is being removed
        if not d.exists():
            st.index.drop_container(container_id)
            return
        c = read_json(d / "container.json")
        await run(*st.runc_command("delete", "--force", container_id,
                                   container=container_id), check=False)
        rootfs = d / "bundle" / "rootfs"
        if mounted(rootfs):
            await umount(rootfs)
        spec = read_json(d / "bundle" / "config.json")
        if spec is not None:
            remove_cgroup(spec["linux"]["cgroupsPath"])
        elif c is not None:
            remove_cgroup(f"{st.pod_cgroup(pod_of(c))}/{container_id}")
        await remove_tree(d)
        if not (d / "container.json").exists():
            st.index.drop_container(container_id)

    def status_of(self, cid: str, c: Record) -> ContainerStatus | None:
        """Status from the monitor's files, read fresh; None when the container is gone."""
        d = self._state.container_dir(cid)
        state = read_json(d / "state.json")
        exit_ = exit_record(d)
        if state is None and exit_ is None and not (d / "container.json").exists():
            self._state.index.drop_container(cid)  # removed by another runtime object
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
        if _monitor_gone(d, state["monitor_pid"]):
            return ContainerStatus(**common, state=ContainerState.UNKNOWN,
                                   message="the container's monitor is gone")
        return ContainerStatus(**common, state=ContainerState.RUNNING)

    async def status(self, container_id: str) -> ContainerStatus:
        c = self._state.record(container_id)
        status = self.status_of(container_id, c) if c is not None else None
        if status is None:
            raise RuntimeError_(f"container {container_id} not found")
        return status

    async def list(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        st = self._state
        if pod_uid is None:
            records = st.container_records()
        else:
            ids = st.index.pod_containers.get(pod_uid, ())
            records = sorted((cid, st.index.containers[cid]) for cid in ids)
        return [s for cid, c in records if (s := self.status_of(cid, c)) is not None]


def _monitor_gone(d: Path, pid: int) -> bool:
    """The monitor died without recording the exit (killed, or the machine rebooted)."""
    if pid <= 0:  # not known: never signal a group or every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return not exited(d)
    except PermissionError:
        pass
    return False
