"""The Recycle reclaim policy: a released volume is scrubbed by a pod, then Available
again (Kubernetes' recycler, `pkg/volume/util/recyclerclient`, and the PV controller's
recycleVolumeOperation; the policy is deprecated upstream but still served).

As Kubernetes does, the scrub is an ordinary pod, `recycler-for-<pv>` in `default`,
that mounts the volume's source at /scrub and empties it (`restartPolicy: Never`, a
deadline); only hostPath and nfs volumes have a recycler — any other source fails with
Kubernetes' "No recycler plugin found for the volume!". The pod runs where the volume
is reachable: a volume with node affinity gives the pod the same required affinity.
The image is the guide's busybox (Kubernetes defaults to a debian-base image; any image
with a POSIX shell does, and a cluster that runs the seeds has this one).

`recycler_pod` is pure; the binder creates the pod, and on its outcome unbinds the
volume (Available, event VolumeRecycled "Volume recycled") or fails it
(VolumeFailedRecycle "Recycle failed: …"), deleting the pod either way.
"""

from __future__ import annotations

from pinnace.api.types import Obj

NAMESPACE = "default"
PREFIX = "recycler-for-"
IMAGE = "busybox:1.28"
DEADLINE_SECONDS = 300  # Kubernetes: 60 s minimum, +30 s per GiB by default
# Kubernetes' scrub: everything under /scrub, dot files included, must go
SCRUB = 'test -e /scrub && rm -rf /scrub/..?* /scrub/.[!.]* /scrub/* && ' \
    'test -z "$(ls -A /scrub)" || exit 1'
ANN_VOLUME_UID = "pinnace.io/recycled-volume-uid"  # which volume (by uid) the pod scrubs


def pod_name(volume_name: str) -> str:
    return PREFIX + volume_name


def volume_of(pod: Obj) -> str | None:
    """The volume a recycler pod scrubs, from its name; None for other pods."""
    m = pod.get("metadata") or {}
    name = m.get("name") or ""
    if m.get("namespace") != NAMESPACE or not name.startswith(PREFIX):
        return None
    return name[len(PREFIX):]


def recycler_pod(volume: Obj) -> Obj | None:
    """The pod that scrubs `volume`, or None when its source has no recycler."""
    spec = volume.get("spec") or {}
    if spec.get("hostPath"):
        source = {"hostPath": {"path": spec["hostPath"].get("path", "")}}
    elif spec.get("nfs"):
        source = {"nfs": dict(spec["nfs"])}
    else:
        return None
    m = volume["metadata"]
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": DEADLINE_SECONDS,
        "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "vol", **source}],
        "containers": [{"name": "pv-recycler", "image": IMAGE, "command": ["/bin/sh"],
                        "args": ["-c", SCRUB],
                        "volumeMounts": [{"name": "vol", "mountPath": "/scrub"}]}],
    }
    required = (spec.get("nodeAffinity") or {}).get("required")
    if required:
        pod_spec["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": required}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(m["name"]), "namespace": NAMESPACE,
                         "annotations": {ANN_VOLUME_UID: m.get("uid", "")}},
            "spec": pod_spec}
