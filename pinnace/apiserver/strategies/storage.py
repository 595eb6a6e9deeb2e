"""PersistentVolumes and claims: the admission Kubernetes enables by default for them.

- StorageObjectInUseProtection: a new claim gets the `kubernetes.io/pvc-protection`
  finalizer, a new volume `kubernetes.io/pv-protection` (the protection controllers,
  controllers/pv_protection.py, take them off once deleting is safe).
- DefaultStorageClass: a new claim that names no class at all (storageClassName unset
  and no beta annotation; "" is a choice, left alone) gets the default StorageClass —
  the one annotated `storageclass.kubernetes.io/is-default-class: "true"`, the newest of
  several. No default class: the claim stays class-less, and the PV binder assigns the
  default later if one appears (retroactive assignment).
- DELETE answers with the object, as for every PV and claim in Kubernetes.
"""

from __future__ import annotations

from pinnace.api import pv_matching as pvm
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


class VolumeStrategy(DefaultStrategy):
    returns_deleted_object = True

    def admit_create(self, obj: Obj) -> None:
        _add_finalizer(obj, pvm.PV_PROTECTION)
