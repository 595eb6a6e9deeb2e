"""persistentVolumeClaim volumes: claim -> bound PersistentVolume (`spec.volumeName`)
-> its source: `hostPath` or `local` (used in place like a hostPath volume, checked here)
or `nfs` (mounted by the manager like a pod's own nfs volume). Errors use the wording of
the kubelet's volume populator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinnace.agent.volumes import host_path, local_path
from pinnace.agent.volumes.errors import SetUpError
from pinnace.api.errors import ApiError


async def resolve(client: Any, namespace: str, claim_name: str) -> tuple[str, dict[str, Any]]:
    """The bound PV's volume source as (kind, source): hostPath and local already
    checked; nfs for the caller to mount."""
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
        host_path.check(spec["hostPath"].get("path", ""), spec["hostPath"].get("type"))
        return "hostPath", spec["hostPath"]
    if spec.get("local"):
        path = spec["local"].get("path", "")
        host_path.require_exists(path)
        await local_path.prepare(Path(path))  # a local-path volume: mounted and grown
        return "local", spec["local"]
    if spec.get("nfs"):
        return "nfs", spec["nfs"]
    kinds = sorted(k for k in spec if k not in ("accessModes", "capacity", "claimRef",
                                               "persistentVolumeReclaimPolicy", "storageClassName",
                                               "volumeMode", "mountOptions", "nodeAffinity"))
    raise SetUpError(f"persistent volume {volume_name}: unsupported volume source "
                     f"{', '.join(kinds) or '(none)'}")

