"""The PV binder, the protection controllers and the storage admission against a real API
server: volumes and claims created through the API, as an administrator and a user would."""

from __future__ import annotations

from typing import Any

from pinnace.client.client import Client
from pinnace.controllers.pv_binder import PersistentVolumeBinder
from pinnace.controllers.pv_protection import PVCProtectionController, PVProtectionController
from tests.integration.conftest import eventually

NS = "default"


def pv(name: str, size: str, *, modes: tuple[str, ...] = ("ReadWriteOnce",),
       cls: str = "", reclaim: str = "Retain", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **spec.pop("metadata", {})},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                     "persistentVolumeReclaimPolicy": reclaim, "storageClassName": cls,
                     "hostPath": {"path": f"/tmp/{name}"}, **spec}}


def pvc(name: str, size: str, *, modes: tuple[str, ...] = ("ReadWriteOnce",),
        cls: str | None = "", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name},
                            "spec": {"accessModes": list(modes),
                                     "resources": {"requests": {"storage": size}}, **spec}}
    if cls is not None:
        body["spec"]["storageClassName"] = cls
    return body


async def start_binder(components: Any) -> None:
    c, f = components.client, components.factory
    await components.start(PersistentVolumeBinder(c, f), PVCProtectionController(c, f),
                           PVProtectionController(c, f))


class Storage:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.pv_rt = client.resource("v1", "PersistentVolume")
        self.pvc_rt = client.resource("v1", "PersistentVolumeClaim")
        self.sc_rt = client.resource("storage.k8s.io/v1", "StorageClass")

    async def pv(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(self.pv_rt, name)
        except Exception:
            return None

    async def pvc(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(self.pvc_rt, name, NS)
        except Exception:
            return None

    async def claim_phase(self, name: str) -> str:
        c = await self.pvc(name)
        return (c or {}).get("status", {}).get("phase", "")

    async def volume_phase(self, name: str) -> str:
        v = await self.pv(name)
        return (v or {}).get("status", {}).get("phase", "")

    async def events(self, name: str) -> list[tuple[str, str, str]]:
        items = (await self.client.list(self.client.resource("v1", "Event"), NS))["items"]
        return [(e["type"], e["reason"], e["message"]) for e in items
                if e["involvedObject"]["name"] == name]


async def test_claim_binds_smallest_fitting_volume(client: Client, components: Any) -> None:
    s = Storage(client)
    for v in (pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "1Gi"),
              pv("rwx", "2Gi", modes=("ReadWriteOnce", "ReadWriteMany")),
              pv("other-class", "2Gi", cls="fast")):
        await client.create(s.pv_rt, v)
    await start_binder(components)
    for name in ("big", "small", "tiny", "rwx", "other-class"):
        await eventually(lambda n=name: _is(s.volume_phase(n), "Available"))
    await client.create(s.pvc_rt, pvc("data", "1500Mi"), NS)
    await eventually(lambda: _is(s.claim_phase("data"), "Bound"))
    claim = await s.pvc("data")
    assert claim is not None
    assert claim["spec"]["volumeName"] == "small"
    assert claim["status"]["capacity"] == {"storage": "2Gi"}
    assert claim["status"]["accessModes"] == ["ReadWriteOnce"]
    ann = claim["metadata"]["annotations"]
    assert ann["pv.kubernetes.io/bind-completed"] == "yes"
    assert ann["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    volume = await s.pv("small")
    assert volume is not None
    assert volume["status"]["phase"] == "Bound"
    assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert volume["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    for name in ("big", "tiny", "rwx", "other-class"):
        assert await s.volume_phase(name) == "Available"


async def test_rwx_claim_does_not_bind_rwo_volume(client: Client, components: Any) -> None:
    s = Storage(client)
    await client.create(s.pv_rt, pv("rwo", "5Gi"))
    await start_binder(components)
    await client.create(s.pvc_rt, pvc("shared", "1Gi", modes=("ReadWriteMany",)), NS)
    await eventually(lambda: _has_event(s, "shared", "FailedBinding"))
    assert ("Normal", "FailedBinding", "no persistent volumes available for this claim and "
            "no storage class is set") in await s.events("shared")
    assert await s.claim_phase("shared") == "Pending"
    # an RWX volume appearing later is bound
    await client.create(s.pv_rt, pv("nfs-like", "5Gi", modes=("ReadWriteMany",)))
    await eventually(lambda: _is(s.claim_phase("shared"), "Bound"))
    assert (await s.pvc("shared") or {})["spec"]["volumeName"] == "nfs-like"
    assert await s.volume_phase("rwo") == "Available"


async def test_requested_volume_mismatch_and_prebound_volume(client: Client,
                                                             components: Any) -> None:
    s = Storage(client)
    await client.create(s.pv_rt, pv("named", "1Gi"))
    await client.create(s.pv_rt, pv("reserved", "3Gi", claimRef={
        "namespace": NS, "name": "mine"}))
    await start_binder(components)
    await client.create(s.pvc_rt, pvc("asks", "2Gi", volumeName="named"), NS)
    await eventually(lambda: _has_event(s, "asks", "VolumeMismatch"))
    assert ("Warning", "VolumeMismatch", 'Cannot bind to requested volume "named": '
            "requested PV is too small") in await s.events("asks")
    # the volume reserved for "mine" is Available, but only "mine" gets it
    await eventually(lambda: _is(s.volume_phase("reserved"), "Available"))
    await client.create(s.pvc_rt, pvc("other", "1Gi"), NS)
    await client.create(s.pvc_rt, pvc("mine", "1Gi"), NS)
    await eventually(lambda: _is(s.claim_phase("mine"), "Bound"))
    mine = await s.pvc("mine")
    assert mine is not None and mine["spec"]["volumeName"] == "reserved"
    # pre-bound by the administrator: the controller did not bind the claim's side first
    assert "pv.kubernetes.io/bound-by-controller" not in \
        ((await s.pv("reserved")) or {})["metadata"].get("annotations", {})
    await eventually(lambda: _is(s.claim_phase("other"), "Bound"))
    assert (await s.pvc("other") or {})["spec"]["volumeName"] == "named"


async def test_retain_release_and_delete_reclaim(client: Client, components: Any) -> None:
    s = Storage(client)
    await client.create(s.pv_rt, pv("kept", "1Gi", cls="a"))
    await client.create(s.pv_rt, pv("static-delete", "1Gi", cls="b", reclaim="Delete"))
    await client.create(s.pv_rt, pv("provisioned", "1Gi", cls="c", reclaim="Delete",
                                    metadata={"annotations": {
                                        "pv.kubernetes.io/provisioned-by": "test/x"}}))
    await start_binder(components)
    for claim, cls in (("ka", "a"), ("kb", "b"), ("kc", "c")):
        await client.create(s.pvc_rt, pvc(claim, "1Gi", cls=cls), NS)
        await eventually(lambda n=claim: _is(s.claim_phase(n), "Bound"))
        await client.delete(s.pvc_rt, claim, NS)
    await eventually(lambda: _is(s.volume_phase("kept"), "Released"))
    await eventually(lambda: _is(s.volume_phase("static-delete"), "Failed"))
    failed = await s.pv("static-delete")
    assert failed is not None
    assert failed["status"]["reason"] == "VolumeFailedDelete"
    assert failed["status"]["message"] == ('error getting deleter volume plugin for volume '
                                           '"static-delete": no deletable volume plugin '
                                           'matched')

    async def provisioned_gone() -> bool:
        return await s.pv("provisioned") is None
    await eventually(provisioned_gone)
    assert await s.volume_phase("kept") == "Released"


async def test_claim_used_by_pod_stays_terminating(client: Client, components: Any) -> None:
    s = Storage(client)
    pods = client.resource("v1", "Pod")
    await client.create(s.pv_rt, pv("vol", "1Gi"))
    await start_binder(components)
    await client.create(s.pvc_rt, pvc("used", "1Gi"), NS)
    await eventually(lambda: _is(s.claim_phase("used"), "Bound"))
    await client.create(pods, {"metadata": {"name": "user"}, "spec": {
        "nodeName": "somewhere",
        "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "used"}}]}}, NS)
    await client.delete(s.pvc_rt, "used", NS)
    claim = await s.pvc("used")
    assert claim is not None and claim["metadata"].get("deletionTimestamp")
    # the binder and the protection controller leave it be while the pod exists
    await client.create(s.pvc_rt, pvc("probe", "5Gi"), NS)
    await eventually(lambda: _has_event(s, "probe", "FailedBinding"))
    assert await s.pvc("used") is not None
    await client.delete(pods, "user", NS, grace_period_seconds=0)

    async def claim_gone() -> bool:
        return await s.pvc("used") is None
    await eventually(claim_gone)
    await eventually(lambda: _is(s.volume_phase("vol"), "Released"))


async def test_default_class_admission_and_retroactive(client: Client,
                                                        components: Any) -> None:
    s = Storage(client)
    await start_binder(components)
    await client.create(s.pvc_rt, pvc("early", "1Gi", cls=None), NS)
    await client.create(s.pvc_rt, pvc("none", "1Gi", cls=""), NS)
    await client.create(s.sc_rt, {
        "metadata": {"name": "std", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/std", "volumeBindingMode": "WaitForFirstConsumer"})
    created = await client.create(s.pvc_rt, pvc("late", "1Gi", cls=None), NS)
    assert created["spec"]["storageClassName"] == "std"  # admission

    async def early_class() -> bool:
        return ((await s.pvc("early")) or {})["spec"].get("storageClassName") == "std"
    await eventually(early_class)  # the binder, retroactively
    assert ((await s.pvc("none")) or {})["spec"]["storageClassName"] == ""
    await eventually(lambda: _has_event(s, "late", "WaitForFirstConsumer"))
    assert ("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created "
            "before binding") in await s.events("late")
    # the scheduler picks a node: the claim goes to the class's provisioner
    claim = await s.pvc("late")
    assert claim is not None
    claim["metadata"].setdefault("annotations", {})[
        "volume.kubernetes.io/selected-node"] = "n1"
    await client.update(s.pvc_rt, claim)
    await eventually(lambda: _has_event(s, "late", "ExternalProvisioning"))
    claim = await s.pvc("late")
    assert claim is not None
    ann = claim["metadata"]["annotations"]
    assert ann["volume.kubernetes.io/storage-provisioner"] == "example.com/std"
    assert ann["volume.beta.kubernetes.io/storage-provisioner"] == "example.com/std"
    # the provisioner creates a volume pre-bound to the claim: the binder completes it
    await client.create(s.pv_rt, pv(f"pvc-{claim['metadata']['uid']}", "1Gi", cls="std",
                                    reclaim="Delete", claimRef={
                                        "namespace": NS, "name": "late",
                                        "uid": claim["metadata"]["uid"]},
                                    metadata={"annotations": {
                                        "pv.kubernetes.io/provisioned-by": "example.com/std"}}))
    await eventually(lambda: _is(s.claim_phase("late"), "Bound"))


async def _is(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def _has_event(s: Storage, name: str, reason: str) -> bool:
    return any(r == reason for _, r, _ in await s.events(name))
