"""persistentVolumeClaim volumes: claim -> bound PersistentVolume (`spec.volumeName`)
-> its `hostPath` or `local` source, used in place like a hostPath volume. Errors use
the wording of the kubelet's volume populator; nfs cannot work on these machines (the
kernel has no NFS client), which is said plainly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinnace.agent.volumes import host_path, local_path
from pinnace.agent.volumes.errors import SetUpError
from pinnace.api.errors import ApiError

NFS_UNSUPPORTED = ("nfs volumes are not supported on this node: the kernel has no NFS "
                   "client filesystem")


async def resolve(client: Any, namespace: str, claim_name: str) -> str:
    """The host path backing the claim, after the PV source's own checks."""
    try:
        pvc = await client.get(client.resource("v1", "PersistentVolumeClaim"), claim_name,
                               namespace)
    except ApiError as e:
        if e.code == 404:
            raise SetUpError(f'persistentvolumeclaim "{claim_name}" not found') from e
        raise SetUpError(f"failed to fetch PVC from API server: {e}") from e
    if (pvc.get("metadata") or {}).get("deletionTimestamp"):
        raise SetUpError(f"can't start pod because PVC {namespace}/{claim_name} is being "
                         "deleted")
    phase = (pvc.get("status") or {}).get("phase", "")
    volume_name = (pvc.get("spec") or {}).get("volumeName", "")
    if phase != "Bound" or not volume_name:
        raise SetUpError(f'PVC {namespace}/{claim_name} has non-bound phase ("{phase}") or '
                         f'empty pvc.Spec.VolumeName ("{volume_name}")')
    try:
        pv = await client.get(client.resource("v1", "PersistentVolume"), volume_name)
    except ApiError as e:
        raise SetUpError(f"failed to fetch PV {volume_name} from API server: {e}") from e
    spec = pv.get("spec") or {}
    if spec.get("hostPath"):
        path = spec["hostPath"].get("path", "")
        host_path.check(path, spec["hostPath"].get("type"))
        return path
    if spec.get("local"):
        path = spec["local"].get("path", "")
        host_path.require_exists(path)
        await local_path.prepare(Path(path))  # a local-path volume: mounted and grown
        return path
    if spec.get("nfs"):
        raise SetUpError(NFS_UNSUPPORTED)
    kinds = sorted(k for k in spec if k not in ("accessModes", "capacity", "claimRef",
                                               "persistentVolumeReclaimPolicy", "storageClassName",
                                               "volumeMode", "mountOptions", "nodeAffinity"))
    raise SetUpError(f"persistent volume {volume_name}: unsupported volume source "
                     f"{', '.join(kinds) or '(none)'}")

