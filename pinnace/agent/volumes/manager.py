"""VolumeManager: every volume of the pods of one node, as the kubelet's volume manager
and plugins lay them out:

    <pods_dir>/<pod uid>/volumes/kubernetes.io~empty-dir/<name>      (tmpfs if Memory)
    <pods_dir>/<pod uid>/volumes/kubernetes.io~configmap/<name>      atomic writer, disk
    <pods_dir>/<pod uid>/volumes/kubernetes.io~secret/<name>         atomic writer, tmpfs 0700
    <pods_dir>/<pod uid>/volumes/kubernetes.io~downward-api/<name>   atomic writer, tmpfs
    <pods_dir>/<pod uid>/volumes/kubernetes.io~projected/<name>      atomic writer, tmpfs 0700
    <pods_dir>/<pod uid>/volumes/kubernetes.io~nfs/<name>            nfs mount (see nfs.py)
    hostPath and persistentVolumeClaim (hostPath/local PV): the host path itself;
    a claim bound to an nfs PV is mounted like a pod's own nfs volume

The pod worker calls `setup` on every sync (idempotent: a projected volume is read
from the API once, then only `refresh` re-reads it), `mounts` when it creates a
container, `refresh` periodically (the atomic writer swaps `..data` only if content
changed, and running containers see it through their bind mount of the volume dir),
`teardown` when the pod is gone and `cleanup_all` for `pinnace down`. Work on one pod
is serialised by a lock so a slow read cannot overwrite a newer one.

Deletion stays inside the pod's directory: everything mounted below it is unmounted
first, then the tree is removed without following symlinks (hostPath and PV data are
never below it and are never touched).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinnace.agent.runtime.interface import Mount
from pinnace.agent.volumes import (
    atomic_writer,
    config_map,
    downward_api,
    empty_dir,
    host,
    host_path,
    nfs,
    projected,
    pvc,
    secret,
    subpath,
)
from pinnace.agent.volumes.errors import (
    CREATE_CONTAINER_CONFIG_ERROR,
    SetUpError,
    VolumeError,
    setup_failed,
)
from pinnace.agent.volumes.token_manager import TokenManager
from pinnace.api.types import Obj

log = logging.getLogger(__name__)

# projecting kinds: (plugin dir, on tmpfs, mode of the volume root); always read-only in containers
_PROJECTING = {
    "configMap": (config_map.PLUGIN_DIR, False, 0o755),
    "secret": (secret.PLUGIN_DIR, True, 0o755),
    "downwardAPI": (downward_api.PLUGIN_DIR, True, 0o755),
    "projected": (projected.PLUGIN_DIR, True, 0o755),
}
_UNSUPPORTED_NOTE = "no volume plugin matched"


@dataclass(frozen=True)
class PreparedVolume:
    """A volume ready on the host: where it is and whether containers must see it read-only."""
    name: str
    kind: str  # the pod spec key: emptyDir, configMap, secret, hostPath, …
    host_path: Path
    readonly: bool = False


def _kind(vol: Obj) -> str:
    return next((k for k in vol if k != "name" and vol[k] is not None), "emptyDir")


class VolumeManager:
    def __init__(self, client: Any, *, pods_dir: Path, node_name: str = "") -> None:
        self.client = client
        self.pods_dir = Path(pods_dir)
        self.node_name = node_name
        self._locks: dict[str, asyncio.Lock] = {}
        self.tokens = TokenManager(client)  # projected serviceAccountToken sources

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def pod_dir(self, uid: str) -> Path:
        # a uid is one path element: "", ".." or "a/b" would aim teardown at other data
        if not uid or uid in (".", "..") or "/" in uid or "\0" in uid:
            raise ValueError(f"invalid pod uid {uid!r}")
        return self.pods_dir / uid

    def volume_dir(self, uid: str, plugin_dir: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / plugin_dir / name

    # --- setup ----------------------------------------------------------------------------

    async def setup(self, pod: Obj) -> dict[str, PreparedVolume]:
        """Prepare every volume of the pod; the first failure is raised (as FailedMount)
        after the other volumes were still set up, as the kubelet mounts them apart."""
        uid = pod["metadata"]["uid"]
        async with self._lock(uid):
            self.pods_dir.mkdir(parents=True, exist_ok=True)
            for d in (self.pod_dir(uid), self.pod_dir(uid) / "volumes"):
                d.mkdir(mode=0o750, exist_ok=True)  # no host user may walk into a pod
            prepared: dict[str, PreparedVolume] = {}
            first_error: VolumeError | None = None
            for vol in (pod.get("spec") or {}).get("volumes") or []:
                try:
                    prepared[vol["name"]] = await self._setup_one(pod, vol)
                except SetUpError as e:
                    first_error = first_error or setup_failed(vol["name"], str(e))
                except OSError as e:
                    first_error = first_error or setup_failed(vol["name"], str(e))
            if first_error is not None:
                raise first_error
            return prepared

    async def _setup_one(self, pod: Obj, vol: Obj) -> PreparedVolume:
        uid, name, kind = pod["metadata"]["uid"], vol["name"], _kind(vol)
        source = vol.get(kind) or {}
        if kind == "emptyDir":
            path = self.volume_dir(uid, empty_dir.PLUGIN_DIR, name)
            empty_dir.setup(path, source)
            return PreparedVolume(name, kind, path)
        if kind in _PROJECTING:
            plugin_dir, on_tmpfs, root_mode = _PROJECTING[kind]
            path = self.volume_dir(uid, plugin_dir, name)
            path.mkdir(mode=0o750, parents=True, exist_ok=True)
            if on_tmpfs and not host.is_mounted(path):
                host.mount_tmpfs(path, mode=root_mode)
            os.chmod(path, root_mode)
            if not (path / atomic_writer.DATA_DIR).is_symlink():  # read once; refresh updates
                atomic_writer.write(path, await self._payload(pod, kind, source))
            return PreparedVolume(name, kind, path, readonly=True)
        if kind == "hostPath":
            host_path.check(source.get("path", ""), source.get("type"))
            return PreparedVolume(name, kind, Path(source.get("path", "")))
        if kind == "persistentVolumeClaim":
            pv_kind, pv_source = await pvc.resolve(self.client, pod["metadata"]["namespace"],
                                                   source.get("claimName", ""))
            readonly = bool(source.get("readOnly"))
            if pv_kind == "nfs":
                return await self._setup_nfs(uid, name, kind, pv_source, readonly)
            return PreparedVolume(name, kind, Path(pv_source.get("path", "")), readonly=readonly)
        if kind == "nfs":
            return await self._setup_nfs(uid, name, kind, source, False)
        raise SetUpError(f"{_UNSUPPORTED_NOTE}: {kind} volumes are not supported by pinnace")

    async def _setup_nfs(self, uid: str, name: str, kind: str, source: Obj,
                         readonly: bool) -> PreparedVolume:
        path = self.volume_dir(uid, nfs.PLUGIN_DIR, name)
        await nfs.setup(path, nfs.state_file(self.pod_dir(uid), name), source,
                        read_only=readonly)
        return PreparedVolume(name, kind, path,
                              readonly=readonly or bool(source.get("readOnly")))

    async def _payload(self, pod: Obj, kind: str, source: Obj) -> atomic_writer.Payload:
        namespace = pod["metadata"]["namespace"]
        if kind == "configMap":
            return await config_map.payload(self.client, namespace, source)
        if kind == "secret":
            return await secret.payload(self.client, namespace, source)
        if kind == "downwardAPI":
            return await downward_api.payload(pod, source, self._allocatable)
        return await projected.payload(self.client, pod, source, self._allocatable,
                                       self.tokens)

    async def _allocatable(self) -> dict[str, str]:
        """The node's allocatable: what a container without a limit may use."""
        if not self.node_name:
            return {}
        node = await self.client.get(self.client.resource("v1", "Node"), self.node_name)
        return (node.get("status") or {}).get("allocatable") or {}

    # --- containers -----------------------------------------------------------------------

    def mounts(self, container: Obj, vols: dict[str, PreparedVolume]) -> list[Mount]:
        """The container's volumeMounts as runtime mounts (subPath resolved and checked)."""
        out: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            vol = vols.get(vm["name"])
            if vol is None:
                raise VolumeError(CREATE_CONTAINER_CONFIG_ERROR,
                                  f'cannot find volume "{vm["name"]}" to mount into container '
                                  f'"{container["name"]}"')
            path = vol.host_path
            if vm.get("subPath"):
                path = subpath.resolve(path, vm["subPath"], mount_name=vm["name"],
                                       container=container["name"])
            out.append(Mount(str(path), vm["mountPath"],
                             readonly=bool(vm.get("readOnly")) or vol.readonly))
        return out

    # --- updates --------------------------------------------------------------------------

    async def refresh(self, pod: Obj) -> list[VolumeError]:
        """Re-project configMap/secret/downwardAPI/projected volumes already set up; a
        version is swapped in only when the content changed. Failures (a source deleted
        meanwhile) keep the last content and are returned for the worker to report."""
        uid = pod["metadata"]["uid"]
        errors: list[VolumeError] = []
        async with self._lock(uid):
            for vol in (pod.get("spec") or {}).get("volumes") or []:
                kind = _kind(vol)
                if kind not in _PROJECTING:
                    continue
                path = self.volume_dir(uid, _PROJECTING[kind][0], vol["name"])
                if not (path / atomic_writer.DATA_DIR).is_symlink():
                    continue  # not set up yet: setup's job
                try:
                    if atomic_writer.write(path, await self._payload(pod, kind, vol[kind])):
                        log.info("pod %s volume %s: new version", uid, vol["name"])
                except SetUpError as e:
                    errors.append(setup_failed(vol["name"], str(e)))
        return errors

    # --- teardown -------------------------------------------------------------------------

    async def teardown(self, pod_uid: str) -> None:
        """Unmount and remove everything of the pod under pods_dir."""
        async with self._lock(pod_uid):
            # nfs first: stop the FUSE processes by PID and detach, never touching the export
            await nfs.teardown_pod(self.pod_dir(pod_uid))
            await asyncio.to_thread(host.remove_tree, self.pod_dir(pod_uid))
        self._locks.pop(pod_uid, None)
        self.tokens.forget(pod_uid)

    async def cleanup_all(self) -> None:
        """Every pod's volumes of this pods_dir (for `pinnace down`)."""
        if not self.pods_dir.is_dir():
            return
        for entry in sorted(os.listdir(self.pods_dir)):
            await self.teardown(entry)
        await nfs.stop_strays(self.pods_dir)  # FUSE processes whose state file is gone
        host.unmount_all(self.pods_dir)  # anything mounted by hand under a stray name
