"""Storage object in-use protection: a claim a pod uses, and a volume bound to a claim,
are not removed under it (Kubernetes' `pvc-protection` and `pv-protection` controllers,
`pkg/controller/volume/pvcprotection`, `pvprotection`).

Admission puts the finalizers on new objects (`kubernetes.io/pvc-protection`,
`kubernetes.io/pv-protection`, apiserver/strategies/storage.py); these controllers add
them to objects that lack them and take them off once deleting is safe:

- a claim being deleted keeps its finalizer while a pod that is scheduled and not
  finished (phase neither Succeeded nor Failed) names it in `spec.volumes`. The
  informer answering "unused" is checked against a live list of the namespace's pods
  before the finalizer goes, as Kubernetes does: a pod created a moment ago must not
  lose its claim. Unscheduled pods do not hold a claim: neither the scheduler nor the
  node agent start a pod on a claim being deleted.
- a volume being deleted keeps its finalizer while it is Bound.
"""

from __future__ import annotations

import copy

from pinnace.api import pv_matching as pvm
from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import split_key
from pinnace.controllers.base import Controller

TERMINATED = ("Succeeded", "Failed")


def claim_names(pod: Obj) -> list[str]:
    """The claims a pod's volumes name."""
    return [v["persistentVolumeClaim"].get("claimName", "")
            for v in (pod.get("spec") or {}).get("volumes") or []
            if v.get("persistentVolumeClaim")]


def pod_uses_claim(pod: Obj, claim_name: str) -> bool:
    """A scheduled, unfinished pod naming the claim holds it."""
    if not (pod.get("spec") or {}).get("nodeName") or \
            (pod.get("status") or {}).get("phase") in TERMINATED:
        return False
    return claim_name in claim_names(pod)


async def _set_finalizer(client: Client, rt: object, obj: Obj, finalizer: str,
                         present: bool) -> None:
    obj = copy.deepcopy(obj)
    finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
    if present:
        finalizers.append(finalizer)
    obj["metadata"]["finalizers"] = finalizers
    try:
        await client.update(rt, obj)  # type: ignore[arg-type]
    except ApiError as e:
        if e.code != 404:  # gone: nothing to protect; 409: raised, retried on the new one
            raise


class PVCProtectionController(Controller):
    name = "pvc-protection"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.claims = self.watch("v1", "PersistentVolumeClaim")
        self.pods = factory.informer("v1", "Pod")
        self.claim_rt = client.resource("v1", "PersistentVolumeClaim")
        self.pod_rt = client.resource("v1", "Pod")
        self.pods.add_handler(on_update=self._pod_updated, on_delete=self._pod_gone)

    def _pod_gone(self, pod: Obj) -> None:
        ns = pod["metadata"].get("namespace")
        for name in claim_names(pod):
            self.queue.add(f"{ns}/{name}")

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if (new.get("status") or {}).get("phase") in TERMINATED and \
                (old.get("status") or {}).get("phase") not in TERMINATED:
            self._pod_gone(new)

    async def reconcile(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None:
            return
        finalizers = claim["metadata"].get("finalizers") or []
        deleting = bool(claim["metadata"].get("deletionTimestamp"))
        if not deleting and pvm.PVC_PROTECTION not in finalizers:
            await _set_finalizer(self.client, self.claim_rt, claim, pvm.PVC_PROTECTION, True)
        elif deleting and pvm.PVC_PROTECTION in finalizers and not await self._in_use(key):
            await _set_finalizer(self.client, self.claim_rt, claim, pvm.PVC_PROTECTION, False)

    async def _in_use(self, key: str) -> bool:
        ns, name = split_key(key)
        if any(pod_uses_claim(p, name) for p in self.pods.list(ns)):
            return True
        live = await self.client.list(self.pod_rt, ns)
        return any(pod_uses_claim(p, name) for p in live.get("items") or [])


class PVProtectionController(Controller):
    name = "pv-protection"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.volumes = self.watch("v1", "PersistentVolume")
        self.volume_rt = client.resource("v1", "PersistentVolume")

    async def reconcile(self, key: str) -> None:
        volume = self.volumes.get(key)
        if volume is None:
            return
        finalizers = volume["metadata"].get("finalizers") or []
        deleting = bool(volume["metadata"].get("deletionTimestamp"))
        if not deleting and pvm.PV_PROTECTION not in finalizers:
            await _set_finalizer(self.client, self.volume_rt, volume, pvm.PV_PROTECTION, True)
        elif deleting and pvm.PV_PROTECTION in finalizers and \
                (volume.get("status") or {}).get("phase") != "Bound":
            await _set_finalizer(self.client, self.volume_rt, volume, pvm.PV_PROTECTION, False)


__all__ = ["PVCProtectionController", "PVProtectionController", "claim_names",
           "pod_uses_claim"]
