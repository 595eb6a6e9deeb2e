"""The built-in local-path provisioner (k3s' local-path-provisioner, done as a controller):
the API half of dynamic provisioning. The directories themselves are made, sized, grown
and removed by the node agent of the volume's node (agent/local_storage.py); the two
meet only through the PV (see api/local_path.py for the contract).

At start it installs the StorageClass `local-path` as the cluster default, once: an
existing class of that name (an administrator's edit) is left as it is.

Watches claims (the key), PVs (a PV change queues its claim) and StorageClasses.
`reconcile(namespace/name)` of a claim whose class names this provisioner:

- unbound, with `volume.kubernetes.io/selected-node` (the scheduler wrote it for a
  WaitForFirstConsumer claim): create PV `pvc-<claim uid>`: capacity = the request,
  the claim's access modes, the class' reclaim policy, a `local` source in the node's
  storage dir (its Node's `pinnace.io/local-path-dir` annotation), node affinity to
  that node, claimRef pre-bound to the claim; the PV binder completes the bind.
  Events as the external provisioner words them (Provisioning, ProvisioningSucceeded,
  ProvisioningFailed). What local-path cannot do is refused with a Warning, not retried:
  a selector, access modes beyond ReadWriteOnce(Pod), block mode, a node that offers no
  storage dir. An Immediate class has no node to provision on (local-path-provisioner
  fails the same way): the claim waits with a Warning.
- bound to one of our PVs, the request grown past the PV's capacity, the class allowing
  expansion: the PV's capacity follows (the external resizer's half); the claim gets
  the condition FileSystemResizePending until the node agent has grown the file system
  and set `status.capacity` (the kubelet's half).
- Reclaim Delete: a PV of ours whose claim is gone (or Released by the binder) is deleted;
  its node's agent then removes the directory and the backing file.
"""

from __future__ import annotations

import logging

from pinnace.api import local_path as lp
from pinnace.api.conditions import find, new_condition
from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller, delete_if_same

log = logging.getLogger(__name__)

COMPONENT = f"{lp.PROVISIONER}_pinnace"  # external-provisioner's "<name>_<identity>"
_SUPPORTED_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}


def unsupported(claim: Obj) -> str | None:
    """Why local-path cannot provision this claim (its provisioner's wording), or None."""
    spec = claim.get("spec") or {}
    if spec.get("selector"):
        return "claim.Spec.Selector is not supported"
    if not set(spec.get("accessModes") or []) <= _SUPPORTED_MODES:
        return "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"
    if spec.get("volumeMode") == "Block":
        return "local-path volumes are file systems: volumeMode Block is not supported"
    if lp.claim_request(claim) is None:
        return "claim has no valid storage request"
    return None


def provisioned_pv(claim: Obj, storage_class: Obj, node: str, storage_dir: str) -> Obj:
    """The PV for `claim` on `node` (pure): pre-bound to the claim, sized to its request."""
    m = claim["metadata"]
    spec = claim.get("spec") or {}
    name = f"pvc-{m['uid']}"
    path = f"{storage_dir.rstrip('/')}/{lp.volume_dir_name(name, m['namespace'], m['name'])}"
    return {
        "metadata": {"name": name, "annotations": {lp.PROVISIONED_BY: lp.PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
                         "resourceVersion": m.get("resourceVersion", "")},
            "local": {"path": path},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": lp.HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
        },
    }


class LocalPathProvisioner(Controller):
    name = "local-path-provisioner"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.claims = self.watch("v1", "PersistentVolumeClaim", on_delete=self._claim_deleted)
        self.volumes = factory.informer("v1", "PersistentVolume")
        self.volumes.add_handler(on_add=self._pv_changed,
                                 on_update=lambda _o, n: self._pv_changed(n),
                                 on_delete=self._pv_changed)
        self.classes = factory.informer("storage.k8s.io/v1", "StorageClass")
        self.classes.add_handler(on_add=self._class_changed,
                                 on_update=lambda _o, n: self._class_changed(n))
        self.nodes = factory.informer("v1", "Node")
        self.pv_rt = client.resource("v1", "PersistentVolume")
        self.pvc_rt = client.resource("v1", "PersistentVolumeClaim")
        self.class_rt = client.resource("storage.k8s.io/v1", "StorageClass")
        self.release_queue = self.add_queue("release", self.reconcile_volume)
        self.add_loop(self.install_class)

    # -- event handlers: keys only ----------------------------------------------------------

    def _pv_changed(self, pv: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.queue.add(f"{ref.get('namespace')}/{ref['name']}")
        if lp.is_local_path(pv):
            self.release_queue.add(pv["metadata"]["name"])

    def _claim_deleted(self, claim: Obj) -> None:
        """Its volume may be released now (Reclaim Delete)."""
        self.release_queue.add((claim.get("spec") or {}).get("volumeName") or
                               f"pvc-{claim['metadata']['uid']}")

    def _class_changed(self, sc: Obj) -> None:
        if sc.get("provisioner") != lp.PROVISIONER:
            return
        for claim in self.claims.list():
            if (claim.get("spec") or {}).get("storageClassName") == sc["metadata"]["name"]:
                self.enqueue(claim)

    async def install_class(self) -> None:
        """The default class, created once (k3s' manifest: an administrator's copy wins)."""
        if self.classes.get(lp.CLASS_NAME) is not None:
            return
        try:
            await self.client.create(self.class_rt, lp.default_class())
        except ApiError as e:
            if e.code != 409:
                log.warning("installing StorageClass %s: %s", lp.CLASS_NAME, e)

    # -- claims -------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None or claim["metadata"].get("deletionTimestamp"):
            return
        sc = self.classes.get((claim.get("spec") or {}).get("storageClassName") or "")
        if sc is None or sc.get("provisioner") != lp.PROVISIONER:
            return
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if volume_name:
            await self._expand(claim, sc, self.volumes.get(volume_name))
            return
        if self.volumes.get(f"pvc-{claim['metadata']['uid']}") is not None:
            return  # provisioned; the binder binds it
        await self._provision(claim, sc)

    async def _provision(self, claim: Obj, sc: Obj) -> None:
        node_name = ((claim["metadata"].get("annotations") or {}).get(lp.SELECTED_NODE))
        if not node_name:
            if sc.get("volumeBindingMode") == "Immediate":
                await self._event(claim, "Warning", "ProvisioningFailed",
                                  "configuration error, no node was specified: local-path "
                                  "volumes need a WaitForFirstConsumer class")
            return  # WaitForFirstConsumer: the scheduler picks the node first
        problem = unsupported(claim)
        node = self.nodes.get(node_name)
        if problem is None and node is None:
            problem = f'node "{node_name}" not found'
        storage_dir = ((node or {}).get("metadata", {}).get("annotations") or {}).get(
            lp.STORAGE_DIR_ANNOTATION)
        if problem is None and not storage_dir:
            problem = (f"node {node_name} offers no local-path storage (no "
                       f"{lp.STORAGE_DIR_ANNOTATION} annotation: a simulated node?)")
        m = claim["metadata"]
        if problem is not None:  # the user's to fix: say so, do not retry
            await self._event(claim, "Warning", "ProvisioningFailed",
                              f"failed to provision volume with StorageClass "
                              f'"{sc["metadata"]["name"]}": {problem}')
            return
        await self._event(claim, "Normal", "Provisioning",
                          f'External provisioner is provisioning volume for claim '
                          f'"{m["namespace"]}/{m["name"]}"')
        pv = provisioned_pv(claim, sc, node_name, str(storage_dir))
        try:
            await self.client.create(self.pv_rt, pv)
        except ApiError as e:
            if e.code == 409:
                return  # made by an earlier attempt; the informer will show it
            await self._event(claim, "Warning", "ProvisioningFailed",
                              f'failed to provision volume with StorageClass '
                              f'"{sc["metadata"]["name"]}": {e}')
            raise
        await self._event(claim, "Normal", "ProvisioningSucceeded",
                          f"Successfully provisioned volume {pv['metadata']['name']}")

    async def _expand(self, claim: Obj, sc: Obj, pv: Obj | None) -> None:
        if pv is None or not lp.is_local_path(pv) or not sc.get("allowVolumeExpansion"):
            return
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != claim["metadata"]["uid"]:
            return
        request, capacity = lp.claim_request(claim), lp.pv_capacity(pv)
        if request is None or capacity is None or request <= capacity:
            return
        new_size = claim["spec"]["resources"]["requests"]["storage"]
        await self.client.patch(self.pv_rt, pv["metadata"]["name"],
                                {"spec": {"capacity": {"storage": new_size}}})
        status = claim.get("status") or {}
        conditions = [c for c in status.get("conditions") or [] if c.get("type") not in
                      ("Resizing", lp.RESIZE_PENDING)]
        conditions.append(new_condition(lp.RESIZE_PENDING, "True",
                                        message=lp.RESIZE_PENDING_MESSAGE,
                                        previous=find(status.get("conditions"),
                                                      lp.RESIZE_PENDING),
                                        extra_times=("lastProbeTime",)))
        try:
            await self.client.patch(self.pvc_rt, claim["metadata"]["name"],
                                    {"status": {"conditions": conditions}},
                                    namespace=claim["metadata"]["namespace"],
                                    subresource="status")
        except ApiError as e:
            if e.code != 404:
                raise
        await self._event(claim, "Normal", "FileSystemResizeRequired",
                          "Require file system resize of volume on node")

    # -- volumes ------------------------------------------------------------------------------

    async def reconcile_volume(self, name: str) -> None:
        """Reclaim Delete: our PV whose claim is gone goes (the agent removes the data)."""
        pv = self.volumes.get(name)
        if pv is None or not lp.is_local_path(pv) or pv["metadata"].get("deletionTimestamp"):
            return
        spec = pv.get("spec") or {}
        if spec.get("persistentVolumeReclaimPolicy", "Delete") != "Delete":
            return
        ref = spec.get("claimRef") or {}
        claim = self.claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
        released = (pv.get("status") or {}).get("phase") == "Released"
        if claim is not None and claim["metadata"]["uid"] == ref.get("uid") and not released:
            return
        await delete_if_same(self.client, self.pv_rt, pv)

    async def _event(self, claim: Obj, type_: str, reason: str, message: str) -> None:
        await record_event(self.client, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                         **claim},
                           component=COMPONENT, type_=type_, reason=reason, message=message)

