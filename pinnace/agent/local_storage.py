"""The node agent's half of local-path storage: it makes, grows and removes the volumes
the local-path provisioner (controllers/local_path.py) assigned to this node, so local
volumes work on any node of a multi-node cluster. The host work is
`volumes/local_path.py`'s (one loop-mounted ext4 per volume, sizes enforced).

At start the agent annotates its Node with its storage dir (`pinnace.io/local-path-dir`,
`<data dir>/storage`): that is how the provisioner knows where to put this node's
volumes. Then, one queue of PV names (informer → workqueue → `reconcile(name)`):

- a local-path PV of this node (provisioned-by annotation, node affinity to this node,
  its path in this storage dir — nothing outside it is ever touched): its volume exists
  and is mounted, sized to the PV's capacity. A new volume where sizes cannot be
  enforced is a plain directory and the claim gets a Warning `VolumeSizeNotEnforced`.
- the PV's capacity grew (the provisioner's half of an expansion): the file system is
  grown (online, or offline once no container holds it: rechecked every few seconds);
  then the bound claim's `status.capacity` follows and its FileSystemResizePending
  condition goes, with the kubelet's FileSystemResizeSuccessful Event.
- the PV is gone (reclaim Delete): its volume is unmounted and its directory and backing
  file are deleted. Volumes whose PV vanished while the agent was away are removed once
  the informer has synced, as sandboxes of deleted pods are.

A restart re-adopts: mounted volumes stay mounted, unmounted ones (after `pinnace down`
or a reboot) are mounted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from pinnace.agent.volumes import local_path as volumes
from pinnace.api import local_path as lp
from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

RECHECK_PENDING = 3.0  # seconds between tries of an offline grow


class LocalStorage:
    def __init__(self, client: Client, factory: InformerFactory, *, node_name: str,
                 storage_dir: Path) -> None:
        self.client = client
        self.node_name = node_name
        self.storage_dir = storage_dir
        self.queue = WorkQueue()
        self.enforcement_unavailable = ""
        self._removed: dict[str, Path] = {}
        self.volumes = factory.informer("v1", "PersistentVolume")
        self.volumes.add_handler(on_add=self._changed, on_update=lambda _o, n: self._changed(n),
                                 on_delete=self._deleted)
        self.claims = factory.informer("v1", "PersistentVolumeClaim")
        # a claim's status changes (bound, resize pending) may call for a capacity report
        self.claims.add_handler(on_add=self._claim_changed,
                                on_update=lambda _o, n: self._claim_changed(n))
        self.node = factory.informer("v1", "Node", field_selector=f"metadata.name={node_name}")
        self.node.add_handler(on_add=self._node_seen, on_update=lambda _o, n: self._node_seen(n))
        self.pv_rt = client.resource("v1", "PersistentVolume")
        self.pvc_rt = client.resource("v1", "PersistentVolumeClaim")
        self.node_rt = client.resource("v1", "Node")
        self._annotating: asyncio.Task[None] | None = None

    # -- event handlers: keys only --------------------------------------------------------

    def _volume_dir(self, pv: Obj) -> Path | None:
        """The volume's directory if the PV is a local-path volume of this node's."""
        if not lp.is_local_path(pv) or lp.pv_node(pv) != self.node_name:
            return None
        path = Path(pv["spec"]["local"].get("path") or "")
        if path.parent != self.storage_dir or not path.name.startswith("pvc-"):
            return None  # not ours to make or delete, whatever the PV says
        return path

    def _changed(self, pv: Obj) -> None:
        if self._volume_dir(pv) is not None:
            self.queue.add(pv["metadata"]["name"])

    def _claim_changed(self, claim: Obj) -> None:
        pv = self.volumes.get((claim.get("spec") or {}).get("volumeName") or "")
        if pv is not None:
            self._changed(pv)

    def _deleted(self, pv: Obj) -> None:
        path = self._volume_dir(pv)
        if path is not None:
            self._removed[pv["metadata"]["name"]] = path
            self.queue.add(pv["metadata"]["name"])

    def _node_seen(self, node: Obj) -> None:
        annotations = node["metadata"].get("annotations") or {}
        if annotations.get(lp.STORAGE_DIR_ANNOTATION) == str(self.storage_dir):
            return
        if self._annotating is None or self._annotating.done():
            self._annotating = asyncio.get_running_loop().create_task(self._annotate())

    async def _annotate(self) -> None:
        patch = {"metadata": {"annotations": {lp.STORAGE_DIR_ANNOTATION: str(self.storage_dir)}}}
        try:
            await self.client.patch(self.node_rt, self.node_name, patch)
        except ApiError as e:  # the next Node update tries again
            log.warning("annotating node %s with its storage dir: %s", self.node_name, e)

    # -- run ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.enforcement_unavailable = volumes.enforcement_unavailable()
        if self.enforcement_unavailable:
            log.warning("local-path volume sizes are not enforced on this node: %s",
                        self.enforcement_unavailable)
        self.storage_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self.volumes.wait_synced()
        await self.node.wait_synced()
        await self._remove_orphans()
        try:
            await run_workers(self.queue, self.reconcile, workers=2, name="local-storage")
        finally:
            self.queue.shutdown()
            if self._annotating is not None:
                self._annotating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._annotating

    async def _remove_orphans(self) -> None:
        known = {p for pv in self.volumes.list() if (p := self._volume_dir(pv)) is not None}
        for vol in volumes.volume_dirs(self.storage_dir):
            if vol not in known:
                log.info("removing local volume %s: its PV is gone", vol.name)
                try:
                    await volumes.remove(vol)
                except (OSError, volumes.StorageError) as e:
                    log.warning("removing local volume %s: %s", vol.name, e)

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, name: str) -> None:
        pv = self.volumes.get(name)
        path = self._volume_dir(pv) if pv is not None else None
        if pv is None or path is None:
            gone = self._removed.pop(name, None)
            if gone is not None and pv is None:
                await volumes.remove(gone)
            return
        self._removed.pop(name, None)
        size = lp.pv_capacity(pv) or 0
        if not volumes.is_enforced(path) and not path.exists():
            await self._make(pv, path, size)
        if volumes.is_enforced(path):
            await volumes.ensure_mounted(path)
            if not await volumes.grow(path, size):
                self.queue.add_after(name, RECHECK_PENDING)  # in use: try again later
                return
        await self._report_capacity(pv)

    async def _make(self, pv: Obj, path: Path, size: int) -> None:
        if self.enforcement_unavailable:
            volumes.create_unenforced(path)
            await self._claim_event(pv, "Warning", "VolumeSizeNotEnforced",
                                    f"volume {pv['metadata']['name']} on node {self.node_name}"
                                    f" is a plain directory, its size is not enforced: "
                                    f"{self.enforcement_unavailable}")
            return
        await volumes.create(path, size)

    async def _report_capacity(self, pv: Obj) -> None:
        """The bound claim's status.capacity follows the PV's, once the file system has it
        (the kubelet's half of an expansion)."""
        ref = pv["spec"].get("claimRef") or {}
        claim = self.claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
        if claim is None or claim["metadata"]["uid"] != ref.get("uid"):
            return
        status = claim.get("status") or {}
        if status.get("phase") != "Bound":
            return  # the binder writes the capacity when it binds
        capacity = lp.pv_capacity(pv)
        reported = lp.storage_bytes(status.get("capacity"))
        pending = any(c.get("type") == lp.RESIZE_PENDING for c in status.get("conditions") or [])
        if capacity is None or (reported is not None and reported >= capacity and not pending):
            return
        conditions = [c for c in status.get("conditions") or []
                      if c.get("type") not in (lp.RESIZE_PENDING, "Resizing")]
        patch = {"status": {"capacity": {"storage": pv["spec"]["capacity"]["storage"]},
                            "conditions": conditions or None}}
        try:
            await self.client.patch(self.pvc_rt, claim["metadata"]["name"], patch,
                                    namespace=claim["metadata"]["namespace"],
                                    subresource="status")
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if reported is not None and reported < capacity:
            await self._claim_event(pv, "Normal", "FileSystemResizeSuccessful",
                                    f'MountVolume.NodeExpandVolume succeeded for volume '
                                    f'"{pv["metadata"]["name"]}" {self.node_name}')

    async def _claim_event(self, pv: Obj, type_: str, reason: str, message: str) -> None:
        ref = pv["spec"].get("claimRef") or {}
        claim = self.claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
        if claim is None:
            return
        await record_event(self.client, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                         **claim},
                           component="kubelet", type_=type_, reason=reason, message=message,
                           host=self.node_name)
