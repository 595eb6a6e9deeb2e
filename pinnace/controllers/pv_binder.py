"""The PersistentVolume binder: claims meet volumes (Kubernetes' PV controller,
`pkg/controller/volume/persistentvolume/pv_controller.go`, read for behaviour).

Two queues, one worker each (syncing claims is not reentrant: two workers could bind
two claims to one volume): claims by `namespace/name`, volumes by name. Both read the
newest version they know — the informer's, or the one this controller just wrote if
the informer has not caught up (`_Latest`), so the four writes of one bind do not make
the next sync undo or redo them.

A claim without `pv.kubernetes.io/bind-completed` (unbound):
- no class at all and a default StorageClass exists: the class is filled in
  (retroactive default class assignment), the next sync goes on;
- `spec.volumeName` empty: the best volume (pinnace/api/pv_matching.py) is bound; none:
  a WaitForFirstConsumer claim not yet scheduled gets WaitForFirstConsumer, a claim
  with a class is handed to its provisioner (the storage-provisioner annotations and
  an ExternalProvisioning event; a missing class is a ProvisioningFailed warning), a
  class-less one gets FailedBinding; it stays Pending;
- `spec.volumeName` set: that volume is bound if it is free and fits (else a
  VolumeMismatch warning), or the bind is finished if it already points here.
A bound claim whose volume vanished or points elsewhere is Lost.

Binding is Kubernetes' order: PV claimRef (+ bound-by-controller) → PV Bound → claim
volumeName (+ bind-completed, bound-by-controller) → claim Bound (capacity and access
modes of the volume). Each step is skipped when already done, so a sync after a crash
or a conflict finishes what the last one began.

A volume: no claimRef → Available; pre-bound by name only → Available (its claim
binds it); its claim gone (or replaced by a namesake) → Released, then reclaimed:
Retain keeps it Released with its data; Delete removes a dynamically provisioned volume
(the PV object: the node agent of its node removes the data when it sees it go) and
fails others as Kubernetes does with no deleter (Failed, VolumeFailedDelete); Recycle
fails as Kubernetes does without a recycler plugin (Failed, VolumeFailedRecycle) —
pinnace runs no recycler pods, and the Recycle policy is deprecated upstream.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable

from pinnace.api import pv_matching as pvm
from pinnace.api.errors import ApiError
from pinnace.api.timestamps import now_rfc3339
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import Informer, key_of
from pinnace.controllers.base import Controller

log = logging.getLogger(__name__)

COMPONENT = "persistentvolume-controller"
RESYNC_PERIOD = 15.0  # seconds, Kubernetes' --pvclaimbinder-sync-period
NO_CLASS = "no persistent volumes available for this claim and no storage class is set"
WAITING = "waiting for first consumer to be created before binding"
EXTERNAL = ("Waiting for a volume to be created either by the external provisioner '{}' or "
            "manually by the system administrator. If volume creation is delayed, please "
            "verify that the provisioner is running and correctly registered.")
NO_RECYCLER = "No recycler plugin found for the volume!"
NO_DELETER = 'error getting deleter volume plugin for volume "{}": no deletable volume ' \
    "plugin matched"


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class _Latest:
    """An informer's view, overlaid with the versions this controller wrote itself until
    the informer has them (Kubernetes' storeObjectUpdate caches)."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.written: dict[str, Obj] = {}

    def get(self, key: str) -> Obj | None:
        cached = self.informer.get(key)
        mine = self.written.get(key)
        if mine is None:
            return cached
        if cached is None or _rv(cached) >= _rv(mine):
            del self.written[key]  # the informer caught up (or it is gone)
            return cached
        return mine

    def by_index(self, index: str, value: str) -> list[Obj]:
        """The informer's index, newest versions (what we wrote may have moved them to
        another value: matching checks each object again)."""
        out = []
        for cached in self.informer.by_index(index, value):
            obj = self.get(key_of(cached))
            if obj is not None:
                out.append(obj)
        return out

    def wrote(self, obj: Obj) -> Obj:
        self.written[key_of(obj)] = obj
        return obj


def _annotations(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def _set_annotation(obj: Obj, key: str, value: str = "yes") -> None:
    obj["metadata"].setdefault("annotations", {})[key] = value


class PersistentVolumeBinder(Controller):
    name = "persistentvolume-binder"
    workers = 1

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.claims = self.watch("v1", "PersistentVolumeClaim", on_delete=self._claim_deleted)
        self.volumes = factory.informer("v1", "PersistentVolume")
        self.volumes.add_index(pvm.CANDIDATES_INDEX, pvm.candidates_index)
        self.classes = factory.informer("storage.k8s.io/v1", "StorageClass")
        self.claim_rt = client.resource("v1", "PersistentVolumeClaim")
        self.volume_rt = client.resource("v1", "PersistentVolume")
        self.latest_claims = _Latest(self.claims)
        self.latest_volumes = _Latest(self.volumes)
        self.volume_queue = self.add_queue("volumes", self.sync_volume)
        self.volumes.add_handler(on_add=self._volume_changed,
                                 on_update=lambda _o, n: self._volume_changed(n),
                                 on_delete=self._volume_deleted)
        self.classes.add_handler(on_add=self._class_changed,
                                 on_update=lambda _o, n: self._class_changed(n))
        self.add_loop(self._resync)

    # -- event handlers: keys only -------------------------------------------------------

    def _claim_deleted(self, claim: Obj) -> None:
        # the volume sees nothing change: wake it, it may be Released now
        name = (claim.get("spec") or {}).get("volumeName")
        if name:
            self.volume_queue.add(name)
        for pv in self.volumes.list():
            if pvm.is_bound_to(pv, claim) and pv["metadata"]["name"] != name:
                self.volume_queue.add(pv["metadata"]["name"])

    def _volume_changed(self, pv: Obj) -> None:
        self.volume_queue.add(pv["metadata"]["name"])
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref:
            if not ref.get("uid"):  # reserved for one claim: that claim may bind it now
                self.queue.add(f"{ref.get('namespace')}/{ref.get('name')}")
        elif (pv.get("status") or {}).get("phase") == "Available":
            self._wake_pending(lambda claim: pvm.could_bind(claim, pv))  # it may fit one

    def _wake_pending(self, wanted: Callable[[Obj], bool]) -> None:
        for claim in self.claims.list():
            if not claim["spec"].get("volumeName") and \
                    (claim.get("status") or {}).get("phase", "Pending") == "Pending" and \
                    wanted(claim):
                self.enqueue(claim)

    async def _resync(self) -> None:
        """Every claim and volume again now and then, as Kubernetes' syncPeriod does: what
        no event announces (a volume freed by a claim that bound elsewhere) is seen."""
        while True:
            await asyncio.sleep(RESYNC_PERIOD)
            for claim in self.claims.list():
                self.enqueue(claim)
            for pv in self.volumes.list():
                self.volume_queue.add(pv["metadata"]["name"])

    def _volume_deleted(self, pv: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.queue.add(f"{ref.get('namespace')}/{ref['name']}")

    def _class_changed(self, storage_class: Obj) -> None:
        """A class appeared or changed: pending claims may get it as their default, or be
        provisioned by it."""
        name = storage_class["metadata"]["name"]
        default = pvm.is_default_class(storage_class)
        self._wake_pending(lambda claim: pvm.claim_class(claim) == name or
                           (default and pvm.class_unset(claim)))

    # -- claims --------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        claim = self.latest_claims.get(key)
        if claim is None:
            return
        claim = copy.deepcopy(claim)
        if pvm.ANN_BIND_COMPLETED in _annotations(claim):
            await self._sync_bound_claim(claim)
        else:
            await self._sync_unbound_claim(claim)

    def _class_of(self, claim: Obj) -> Obj | None:
        name = pvm.claim_class(claim)
        return self.classes.get(name) if name else None

    async def _sync_unbound_claim(self, claim: Obj) -> None:
        volume_name = claim["spec"].get("volumeName") or ""
        if not volume_name:
            if pvm.class_unset(claim):
                default = pvm.default_class(self.classes.list())
                if default is not None:
                    claim["spec"]["storageClassName"] = default["metadata"]["name"]
                    self.latest_claims.wrote(await self.client.update(self.claim_rt, claim))
                    return  # the update brings the claim back with its class
            storage_class = self._class_of(claim)
            delay = pvm.is_delay_binding(storage_class)
            candidates = [v for k in pvm.candidate_keys(claim)
                          for v in self.latest_volumes.by_index(pvm.CANDIDATES_INDEX, k)]
            volume = pvm.find_best_match(claim, candidates, delay_binding=delay)
            if volume is not None:
                await self._bind(copy.deepcopy(volume), claim)
                return
            if delay and pvm.ANN_SELECTED_NODE not in _annotations(claim):
                await self._event(claim, "Normal", "WaitForFirstConsumer", WAITING)
            elif pvm.claim_class(claim):
                claim = await self._provision(claim, storage_class)
            else:
                await self._event(claim, "Normal", "FailedBinding", NO_CLASS)
            await self._claim_phase(claim, "Pending")
            return
        volume = self.latest_volumes.get(volume_name)
        if volume is None:
            await self._claim_phase(claim, "Pending")  # it may be created later
            return
        volume = copy.deepcopy(volume)
        ref = volume["spec"].get("claimRef")
        if not ref:
            reason = pvm.volume_mismatch(volume, claim)
            if reason is not None:
                await self._event(claim, "Warning", "VolumeMismatch",
                                  f'Cannot bind to requested volume "{volume_name}": {reason}')
                await self._claim_phase(claim, "Pending")
                return
            await self._bind(volume, claim)
        elif pvm.is_bound_to(volume, claim):
            await self._bind(volume, claim)
        elif pvm.ANN_BOUND_BY_CONTROLLER not in _annotations(claim):
            await self._claim_phase(claim, "Pending")  # the user asked for a taken volume
        else:
            raise RuntimeError(f"invalid binding of claim {key_of(claim)} to volume "
                               f"{volume_name}: volume already claimed by "
                               f"{ref.get('namespace')}/{ref.get('name')}")

    async def _provision(self, claim: Obj, storage_class: Obj | None) -> Obj:
        """Hand the claim to its class's provisioner (Kubernetes' external provisioning:
        annotate, say whom we wait for); the provisioner creates a pre-bound volume."""
        if storage_class is None:
            name = pvm.claim_class(claim)
            await self._event(claim, "Warning", "ProvisioningFailed",
                              f'storageclass.storage.k8s.io "{name}" not found')
            return claim
        provisioner = storage_class.get("provisioner") or ""
        ann = _annotations(claim)
        if ann.get(pvm.ANN_STORAGE_PROVISIONER) != provisioner or \
                ann.get(pvm.ANN_BETA_STORAGE_PROVISIONER) != provisioner:
            _set_annotation(claim, pvm.ANN_STORAGE_PROVISIONER, provisioner)
            _set_annotation(claim, pvm.ANN_BETA_STORAGE_PROVISIONER, provisioner)
            claim = self.latest_claims.wrote(await self.client.update(self.claim_rt, claim))
        await self._event(claim, "Normal", "ExternalProvisioning", EXTERNAL.format(provisioner))
        return claim

    async def _sync_bound_claim(self, claim: Obj) -> None:
        volume_name = claim["spec"].get("volumeName") or ""
        if not volume_name:
            await self._claim_phase(claim, "Lost", "ClaimLost", "Bound claim has lost "
                                    "reference to PersistentVolume. Data on the volume is lost!")
            return
        volume = self.latest_volumes.get(volume_name)
        if volume is None:
            await self._claim_phase(claim, "Lost", "ClaimLost", "Bound claim has lost its "
                                    "PersistentVolume. Data on the volume is lost!")
            return
        volume = copy.deepcopy(volume)
        ref = volume["spec"].get("claimRef")
        if not ref or ref.get("uid") == claim["metadata"]["uid"]:
            await self._bind(volume, claim)  # finish or repair (e.g. the status)
        else:
            await self._claim_phase(claim, "Lost", "ClaimMisbound", "Two claims are bound to "
                                    "the same volume, this one is bound incorrectly")

    async def _bind(self, volume: Obj, claim: Obj) -> None:
        """Kubernetes' four steps, each only if not yet done."""
        spec = volume["spec"]
        ref = spec.get("claimRef") or {}
        if not pvm.is_bound_to(volume, claim) or not ref.get("uid"):
            if not pvm.is_bound_to(volume, claim):
                _set_annotation(volume, pvm.ANN_BOUND_BY_CONTROLLER)
            spec["claimRef"] = pvm.claim_ref(claim)
            volume = self.latest_volumes.wrote(await self.client.update(self.volume_rt, volume))
        volume = await self._volume_phase(volume, "Bound")
        name = volume["metadata"]["name"]
        ann = _annotations(claim)
        if claim["spec"].get("volumeName") != name or pvm.ANN_BIND_COMPLETED not in ann:
            if claim["spec"].get("volumeName") != name:
                claim["spec"]["volumeName"] = name
                _set_annotation(claim, pvm.ANN_BOUND_BY_CONTROLLER)
            _set_annotation(claim, pvm.ANN_BIND_COMPLETED)
            claim = self.latest_claims.wrote(await self.client.update(self.claim_rt, claim))
        status = claim.setdefault("status", {})
        capacity = {"storage": volume["spec"]["capacity"]["storage"]}
        modes = list(volume["spec"].get("accessModes") or [])
        if status.get("phase") != "Bound" or status.get("capacity") != capacity or \
                status.get("accessModes") != modes:
            status.update(phase="Bound", capacity=capacity, accessModes=modes)
            self.latest_claims.wrote(await self.client.update_status(self.claim_rt, claim))

    async def _claim_phase(self, claim: Obj, phase: str, reason: str = "",
                           message: str = "") -> None:
        status = claim.setdefault("status", {})
        if status.get("phase") == phase:
            return
        status["phase"] = phase
        if phase == "Pending":  # an unbound claim has no capacity yet
            status.pop("capacity", None)
            status.pop("accessModes", None)
        self.latest_claims.wrote(await self.client.update_status(self.claim_rt, claim))
        if reason:
            await self._event(claim, "Warning", reason, message)

    # -- volumes -------------------------------------------------------------------------

    async def sync_volume(self, name: str) -> None:
        volume = self.latest_volumes.get(name)
        if volume is None:
            return
        volume = copy.deepcopy(volume)
        ref = volume["spec"].get("claimRef")
        if not ref:
            await self._volume_phase(volume, "Available")
            return
        if not ref.get("uid"):  # pre-bound by its creator: its claim binds it
            await self._volume_phase(volume, "Available")
            return
        claim = await self._claim_for(ref)
        if claim is None:
            if volume["status"].get("phase") not in ("Released", "Failed"):
                volume = await self._volume_phase(volume, "Released")
            await self._reclaim(volume)
            return
        if not claim["spec"].get("volumeName"):
            if pvm.volume_mode_mismatch(claim, volume):
                await self._event(volume, "Warning", "VolumeMismatch", "Cannot bind "
                                  "PersistentVolume to requested PersistentVolumeClaim "
                                  f'"{claim["metadata"]["name"]}" due to incompatible volumeMode.')
                return
            self.queue.add(key_of(claim))  # the claim's sync finishes the bind
            return
        if claim["spec"]["volumeName"] == name:
            await self._volume_phase(volume, "Bound")
            return
        # the claim is bound to another volume
        ann = _annotations(volume)
        if ann.get(pvm.ANN_PROVISIONED_BY) and \
                volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            if volume["status"].get("phase") not in ("Released", "Failed"):
                volume = await self._volume_phase(volume, "Released")
            await self._reclaim(volume)
            return
        await self._unbind(volume)

    async def _claim_for(self, ref: Obj) -> Obj | None:
        """The claim a volume's claimRef names, if it is that claim (same uid). Not in the
        cache: asked of the API server, as a new claim may not have reached it yet."""
        key = f"{ref.get('namespace')}/{ref.get('name')}"
        claim = self.latest_claims.get(key)
        if claim is None:
            try:
                claim = await self.client.get(self.claim_rt, ref.get("name", ""),
                                              ref.get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise
                return None
        return claim if claim["metadata"].get("uid") == ref.get("uid") else None

    async def _unbind(self, volume: Obj) -> None:
        if pvm.ANN_BOUND_BY_CONTROLLER in _annotations(volume):
            volume["spec"].pop("claimRef", None)
            volume["metadata"]["annotations"].pop(pvm.ANN_BOUND_BY_CONTROLLER, None)
        else:
            volume["spec"]["claimRef"].pop("uid", None)  # stays pre-bound to its claim
        volume = self.latest_volumes.wrote(await self.client.update(self.volume_rt, volume))
        await self._volume_phase(volume, "Available")

    async def _reclaim(self, volume: Obj) -> None:
        policy = volume["spec"].get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain":
            return
        if policy == "Recycle":
            await self._volume_phase(volume, "Failed", "VolumeFailedRecycle", NO_RECYCLER)
            return
        if volume["metadata"].get("deletionTimestamp"):
            return
        if _annotations(volume).get(pvm.ANN_PROVISIONED_BY):
            m = volume["metadata"]
            try:
                await self.client.delete(self.volume_rt, m["name"],
                                         preconditions={"uid": m["uid"]})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
            return
        await self._volume_phase(volume, "Failed", "VolumeFailedDelete",
                                 NO_DELETER.format(volume["metadata"]["name"]))

    async def _volume_phase(self, volume: Obj, phase: str, reason: str = "",
                            message: str = "") -> Obj:
        status = volume.setdefault("status", {})
        if status.get("phase") == phase:
            return volume
        status["phase"] = phase
        status["lastPhaseTransitionTime"] = now_rfc3339()
        if message:
            status["message"] = message
        else:
            status.pop("message", None)
        if reason:
            status["reason"] = reason
        else:
            status.pop("reason", None)
        volume = self.latest_volumes.wrote(await self.client.update_status(self.volume_rt,
                                                                           volume))
        if reason:
            await self._event(volume, "Warning", reason, message)
        return volume

    async def _event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        kind = "PersistentVolume" if "namespace" not in obj["metadata"] or \
            not obj["metadata"].get("namespace") else "PersistentVolumeClaim"
        await record_event(self.client, {**obj, "apiVersion": "v1", "kind": kind},
                           component=COMPONENT, type_=type_, reason=reason, message=message)
