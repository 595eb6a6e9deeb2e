"""The recycler pod of a Recycle volume: pinnace.controllers.pv_recycler, no server."""

from __future__ import annotations

from pinnace.controllers import pv_recycler


def volume(**source: object) -> dict:
    return {"metadata": {"name": "pv1", "uid": "u-1"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Recycle", **source}}


def test_hostpath_and_nfs_volumes_get_a_scrub_pod() -> None:
    pod = pv_recycler.recycler_pod(volume(hostPath={"path": "/data/x", "type": ""}))
    assert pod is not None
    assert pod["metadata"]["name"] == "recycler-for-pv1"
    assert pod["metadata"]["namespace"] == "default"
    assert pod["metadata"]["annotations"] == {pv_recycler.ANN_VOLUME_UID: "u-1"}
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] > 0
    assert spec["volumes"] == [{"name": "vol", "hostPath": {"path": "/data/x"}}]
    c = spec["containers"][0]
    assert c["volumeMounts"] == [{"name": "vol", "mountPath": "/scrub"}]
    assert c["command"] == ["/bin/sh"] and "rm -rf /scrub/" in c["args"][1]
    nfs = pv_recycler.recycler_pod(volume(nfs={"server": "10.0.0.1", "path": "/e"}))
    assert nfs is not None
    assert nfs["spec"]["volumes"][0]["nfs"] == {"server": "10.0.0.1", "path": "/e"}
    assert pv_recycler.volume_of(pod) == "pv1"
    assert pv_recycler.volume_of({"metadata": {"name": "web", "namespace": "default"}}) is None


def test_node_affinity_follows_and_other_sources_have_no_recycler() -> None:
    required = {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}
    pod = pv_recycler.recycler_pod(volume(hostPath={"path": "/d"},
                                          nodeAffinity={"required": required}))
    assert pod is not None
    assert pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"] == required
    assert pv_recycler.recycler_pod(volume(local={"path": "/mnt/x"})) is None
    assert pv_recycler.recycler_pod(volume(csi={"driver": "x", "volumeHandle": "h"})) is None
