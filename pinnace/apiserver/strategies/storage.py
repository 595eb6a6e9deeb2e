"""PersistentVolumes and claims: the admission Kubernetes enables by default for them.

- StorageObjectInUseProtection: a new claim gets the `kubernetes.io/pvc-protection`
  finalizer, a new volume `kubernetes.io/pv-protection` (the protection controllers,
  controllers/pv_protection.py, take them off once deleting is safe).
- DefaultStorageClass: a new claim that names no class at all (storageClassName unset
  and no beta annotation; "" is a choice, left alone) gets the default StorageClass —
  the one annotated `storageclass.kubernetes.io/is-default-class: "true"`, the newest of
  several. No default class: the claim stays class-less, and the PV binder assigns the
  default later if one appears (retroactive assignment).
- PersistentVolumeClaimResize: a claim's storage request may grow only once it is Bound
  and only if its StorageClass says `allowVolumeExpansion: true` (403 otherwise, with
  Kubernetes' words); the provisioner and the node then grow the volume.
- DELETE answers with the object, as for every PV and claim in Kubernetes.
"""

from __future__ import annotations

from pinnace.api import errors
from pinnace.api import pv_matching as pvm
from pinnace.api.local_path import claim_request
from pinnace.api.types import Obj
from pinnace.apiserver.strategy import DefaultStrategy


def _add_finalizer(obj: Obj, finalizer: str) -> None:
    finalizers = obj["metadata"].setdefault("finalizers", [])
    if finalizer not in finalizers:
        finalizers.append(finalizer)


class ClaimStrategy(DefaultStrategy):
    returns_deleted_object = True

    def admit_create(self, obj: Obj) -> None:
        _add_finalizer(obj, pvm.PVC_PROTECTION)
        if pvm.class_unset(obj):
            default = pvm.default_class(self.ctx.storage_classes())
            if default is not None:
                obj.setdefault("spec", {})["storageClassName"] = default["metadata"]["name"]

    def validate_update(self, new: Obj, old: Obj, subresource: str) -> None:
        super().validate_update(new, old, subresource)
        if subresource == "":
            self._admit_resize(new, old)

    def _admit_resize(self, new: Obj, old: Obj) -> None:
        grown, before = claim_request(new), claim_request(old)
        if grown is None or before is None or grown <= before:
            return
        name = new["metadata"].get("name", "")
        if (old.get("status") or {}).get("phase") != "Bound":
            raise errors.forbidden(f'persistentvolumeclaims "{name}" is forbidden: Only bound '
                                   "persistent volume claims can be expanded")
        class_name = (new.get("spec") or {}).get("storageClassName") or ""
        sc = next((c for c in self.ctx.storage_classes()
                   if c["metadata"]["name"] == class_name), None)
        if not class_name or sc is None or not sc.get("allowVolumeExpansion"):
            raise errors.forbidden(
                f'persistentvolumeclaims "{name}" is forbidden: only dynamically provisioned '
                "pvc can be resized and the storageclass that provisions the pvc must support "
                "resize")


class VolumeStrategy(DefaultStrategy):
    returns_deleted_object = True

    def admit_create(self, obj: Obj) -> None:
        _add_finalizer(obj, pvm.PV_PROTECTION)
