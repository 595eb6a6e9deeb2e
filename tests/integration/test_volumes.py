"""Pod volumes on a real host, against a real API server: atomic-writer projections seen
through real bind mounts, secrets on tmpfs that a non-root host user cannot read, Memory
emptyDirs as sized tmpfs, hostPath and PVC paths, subPath, and a teardown that leaves no
mount and never deletes data outside the pod's directory.

Every test checks /proc/mounts for leftovers under its tmp dir at the end (and unmounts
them, so a failing test does not leak).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from pinnace.agent.volumes import VolumeError, VolumeManager
from pinnace.agent.volumes.host import mounts_under, unmount_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")
NS = "default"


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A world-traversable dir (unlike pytest's 0700 tmp dirs), so permission checks on
    the volumes themselves mean something; no mount may be left below it."""
    d = Path(tempfile.mkdtemp(prefix="pinnace-vol-"))
    os.chmod(d, 0o755)
    try:
        yield d
        assert mounts_under(d) == []
    finally:
        unmount_all(d)
        shutil.rmtree(d)


@pytest.fixture
def vm(client: Any, host_dir: Path) -> VolumeManager:
    return VolumeManager(client, pods_dir=host_dir / "pods", node_name="node-1")


def _pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None,
         **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": NS, "uid": str(uuid.uuid4()), **meta},
            "spec": {"volumes": volumes,
                     "containers": [{"name": "app", "volumeMounts": mounts or []}]}}


async def _create(client: Any, kind: str, obj: dict[str, Any]) -> None:
    await client.create(client.resource("v1", kind), obj, NS)


def _bind(src: Path, dst: Path) -> None:
    subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)


def _mount_entry(path: Path) -> list[str]:
    return next(line.split() for line in Path("/proc/mounts").read_text().splitlines()
                if line.split()[1] == str(path))


async def test_config_map_items_modes_and_update_through_bind_mount(
        client: Any, vm: VolumeManager, host_dir: Path) -> None:
    await _create(client, "ConfigMap", {"metadata": {"name": "app-config"},
                                        "data": {"log_level": "debug", "app": "x"},
                                        "binaryData": {"bin": base64.b64encode(b"\0\1").decode()}})
    pod = _pod([{"name": "config-volume", "configMap": {
        "name": "app-config", "defaultMode": 0o640,
        "items": [{"key": "log_level", "path": "conf/log_level", "mode": 0o600},
                  {"key": "bin", "path": "bin"}]}}],
        [{"name": "config-volume", "mountPath": "/etc/config"},
         {"name": "config-volume", "mountPath": "/etc/bin", "subPath": "bin"}])
    vols = await vm.setup(pod)
    vol = vols["config-volume"].host_path
    assert vol == host_dir / "pods" / pod["metadata"]["uid"] / "volumes" / \
        "kubernetes.io~configmap" / "config-volume"
    assert sorted(p.name for p in vol.iterdir() if not p.name.startswith("..")) == ["bin", "conf"]
    assert (vol / "conf" / "log_level").read_text() == "debug"
    assert (vol / "conf" / "log_level").stat().st_mode & 0o777 == 0o600
    assert (vol / "bin").read_bytes() == b"\0\1"
    assert (vol / "bin").stat().st_mode & 0o777 == 0o640
    mounts = vm.mounts(pod["spec"]["containers"][0], vols)
    assert [(m.container_path, m.readonly) for m in mounts] == [("/etc/config", True),
                                                                 ("/etc/bin", True)]
    assert await vm.setup(pod) == vols  # idempotent

    # a container's view: a bind mount of the volume dir, and one of a subPath file
    view, file_view = host_dir / "view", host_dir / "file-view"
    view.mkdir()
    file_view.touch()
    _bind(Path(mounts[0].host_path), view)
    _bind(Path(mounts[1].host_path), file_view)
    try:
        await client.patch(client.resource("v1", "ConfigMap"), "app-config",
                           {"data": {"log_level": "info"},
                            "binaryData": {"bin": base64.b64encode(b"new").decode()}},
                           namespace=NS)
        assert await vm.refresh(pod) == []
        assert (view / "conf" / "log_level").read_text() == "info"
        assert file_view.read_bytes() == b"\0\1"  # subPath mounts do not update
        data_before = os.readlink(vol / "..data")
        await vm.refresh(pod)  # nothing changed: no new version
        assert os.readlink(vol / "..data") == data_before
    finally:
        unmount_all(view)
        unmount_all(file_view)
    await vm.teardown(pod["metadata"]["uid"])
    assert not (host_dir / "pods" / pod["metadata"]["uid"]).exists()


async def test_missing_config_map_fails_unless_optional(client: Any, vm: VolumeManager) -> None:
    pod = _pod([{"name": "config-volume", "configMap": {"name": "app-config"}}])
    with pytest.raises(VolumeError) as e:
        await vm.setup(pod)
    assert e.value.reason == "FailedMount"
    assert e.value.message == ('MountVolume.SetUp failed for volume "config-volume" : '
                               'configmap "app-config" not found')
    # created later: the next sync mounts it
    await _create(client, "ConfigMap", {"metadata": {"name": "app-config"}, "data": {"k": "v"}})
    vols = await vm.setup(pod)
    assert (vols["config-volume"].host_path / "k").read_text() == "v"

    optional = _pod([{"name": "o", "configMap": {"name": "nope", "optional": True}},
                     {"name": "s", "secret": {"secretName": "nope", "optional": True}}])
    vols = await vm.setup(optional)
    assert [p.name for p in vols["o"].host_path.iterdir()
            if not p.name.startswith("..")] == []
    with pytest.raises(VolumeError, match='configmap references non-existent config key: x'):
        await vm.setup(_pod([{"name": "v", "configMap": {"name": "app-config",
                                                          "items": [{"key": "x", "path": "x"}]}}]))
    await vm.cleanup_all()


async def test_secret_on_tmpfs_unreadable_by_non_root(client: Any, vm: VolumeManager,
                                                       host_dir: Path) -> None:
    await _create(client, "Secret", {"metadata": {"name": "db"}, "data": {
        "password": base64.b64encode(b"s3cr3t").decode(),
        "user": base64.b64encode(b"admin").decode()}})
    await _create(client, "ConfigMap", {"metadata": {"name": "plain"}, "data": {"k": "v"}})
    pod = _pod([{"name": "secret-volume", "secret": {"secretName": "db"}},
                {"name": "cm", "configMap": {"name": "plain"}}])
    vols = await vm.setup(pod)
    vol = vols["secret-volume"].host_path
    assert (vol / "password").read_bytes() == b"s3cr3t"
    assert (vol / "password").stat().st_mode & 0o777 == 0o644  # defaultMode, as Kubernetes
    assert _mount_entry(vol)[2] == "tmpfs"
    # the volume root lets any container user in; the pod's dir keeps host users out
    assert vol.stat().st_mode & 0o777 == 0o755
    uid_dir = host_dir / "pods" / pod["metadata"]["uid"]
    assert uid_dir.stat().st_mode & 0o777 == 0o750

    def read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(path)],
                              capture_output=True, text=True)

    denied = read_as_nobody(vol / "password")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    os.chmod(uid_dir, 0o755)  # the check works: with the pod dir open, the file is readable
    for d in (host_dir / "pods", uid_dir / "volumes", uid_dir / "volumes" / "kubernetes.io~secret"):
        os.chmod(d, 0o755)
    assert read_as_nobody(vol / "password").stdout == "s3cr3t"
    await vm.teardown(pod["metadata"]["uid"])
    assert mounts_under(host_dir) == []


async def test_empty_dir_memory_is_a_sized_tmpfs(vm: VolumeManager) -> None:
    pod = _pod([{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                {"name": "disk", "emptyDir": {"sizeLimit": "1Gi"}}])
    vols = await vm.setup(pod)
    mem = vols["cache"].host_path
    assert mem.name == "cache" and mem.parent.name == "kubernetes.io~empty-dir"
    assert _mount_entry(mem)[2] == "tmpfs"
    st = os.statvfs(mem)
    assert st.f_blocks * st.f_frsize == 8 * 2**20
    assert mem.stat().st_mode & 0o777 == 0o777
    assert not mounts_under(vols["disk"].host_path)
    await vm.setup(pod)
    assert len(mounts_under(mem)) == 1  # setup again does not stack mounts
    await vm.teardown(pod["metadata"]["uid"])


async def test_host_path_checks_and_teardown_keeps_host_data(vm: VolumeManager,
                                                             host_dir: Path) -> None:
    data = host_dir / "hostdata"
    data.mkdir()
    (data / "keep").write_text("precious")
    pod = _pod([{"name": "h", "hostPath": {"path": str(data), "type": "Directory"}},
                {"name": "e", "emptyDir": {}}],
               [{"name": "h", "mountPath": "/data", "readOnly": True},
                {"name": "h", "mountPath": "/sub", "subPath": "made/here"}])
    vols = await vm.setup(pod)
    mounts = vm.mounts(pod["spec"]["containers"][0], vols)
    assert [(m.host_path, m.readonly) for m in mounts] == [
        (str(data), True), (str(data / "made" / "here"), False)]
    # a container leaves symlinks to the host data in its emptyDir: teardown must not follow
    os.symlink(data, vols["e"].host_path / "link")
    os.symlink(data / "keep", vols["e"].host_path / "file-link")
    await vm.teardown(pod["metadata"]["uid"])
    assert (data / "keep").read_text() == "precious"
    assert (data / "made" / "here").is_dir()

    bad = _pod([{"name": "h", "hostPath": {"path": str(data / "keep"), "type": "Directory"}}])
    with pytest.raises(VolumeError) as e:
        await vm.setup(bad)
    assert e.value.message == (f'MountVolume.SetUp failed for volume "h" : hostPath type check '
                               f'failed: {data / "keep"} is not a directory')
    await vm.cleanup_all()


async def test_downward_api_labels_file_and_label_update(vm: VolumeManager) -> None:
    pod = _pod([{"name": "podinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
        labels={"zone": "us-east", "app": "web"})
    vols = await vm.setup(pod)
    vol = vols["podinfo"].host_path
    assert (vol / "labels").read_text() == 'app="web"\nzone="us-east"'
    assert (vol / "name").read_text() == "p"
    assert _mount_entry(vol)[2] == "tmpfs"
    pod["metadata"]["labels"]["zone"] = "eu"
    await vm.refresh(pod)
    assert (vol / "labels").read_text() == 'app="web"\nzone="eu"'
    await vm.teardown(pod["metadata"]["uid"])


async def test_projected_config_map_and_secret(client: Any, vm: VolumeManager) -> None:
    await _create(client, "ConfigMap", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    await _create(client, "Secret", {"metadata": {"name": "sec"},
                                     "data": {"b": base64.b64encode(b"2").decode()}})
    pod = _pod([{"name": "all", "projected": {"defaultMode": 0o440, "sources": [
        {"configMap": {"name": "cfg"}},
        {"secret": {"name": "sec", "items": [{"key": "b", "path": "sub/b"}]}},
        {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
            "fieldPath": "metadata.namespace"}}]}},
        {"serviceAccountToken": {"path": "token", "audience": "vault",
                                 "expirationSeconds": 600}}]}}])
    # the token is requested for the pod, of its ServiceAccount: both must exist
    await _create(client, "ServiceAccount", {"metadata": {"name": "default"}})
    pod = await client.create(client.resource("v1", "Pod"), {
        **pod, "metadata": {"name": "p"}, "spec": {**pod["spec"], "containers": [
            {"name": "app", "image": "busybox"}]}}, NS)
    vols = await vm.setup(pod)
    vol = vols["all"].host_path
    claims = jwt.decode((vol / "token").read_text(), options={"verify_signature": False})
    assert claims["aud"] == ["vault"] and claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"]["pod"] == {"name": "p", "uid": pod["metadata"]["uid"]}
    assert claims["sub"] == f"system:serviceaccount:{NS}:default"
    assert (vol / "a").read_text() == "1"
    assert (vol / "sub" / "b").read_text() == "2"
    assert (vol / "ns").read_text() == NS
    assert (vol / "a").stat().st_mode & 0o777 == 0o440
    assert _mount_entry(vol)[2] == "tmpfs" and vol.stat().st_mode & 0o777 == 0o755
    assert vols["all"].readonly
    await client.delete(client.resource("v1", "Secret"), "sec", NS)
    [err] = await vm.refresh(pod)  # a deleted source keeps the last content
    assert err.message == 'MountVolume.SetUp failed for volume "all" : secret "sec" not found'
    assert (vol / "sub" / "b").read_text() == "2"
    await vm.teardown(pod["metadata"]["uid"])


async def test_sub_path_escape_is_refused(vm: VolumeManager, host_dir: Path) -> None:
    pod = _pod([{"name": "e", "emptyDir": {}}],
               [{"name": "e", "mountPath": "/x", "subPath": "escape/etc"}])
    vols = await vm.setup(pod)
    os.symlink("/", vols["e"].host_path / "escape")
    with pytest.raises(VolumeError) as e:
        vm.mounts(pod["spec"]["containers"][0], vols)
    assert e.value.message == 'failed to prepare subPath for volumeMount "e" of container "app"'
    with pytest.raises(VolumeError, match='cannot find volume "nope" to mount into container'):
        vm.mounts({"name": "app", "volumeMounts": [{"name": "nope", "mountPath": "/n"}]},
                  vols)
    await vm.teardown(pod["metadata"]["uid"])


async def test_pvc_resolves_to_bound_pv_host_path(client: Any, vm: VolumeManager,
                                                  host_dir: Path) -> None:
    data = host_dir / "pv-data"
    data.mkdir()
    (data / "f").write_text("kept")
    pod = _pod([{"name": "d", "persistentVolumeClaim": {"claimName": "claim"}}])
    with pytest.raises(VolumeError) as e:
        await vm.setup(pod)
    assert e.value.message.endswith(': persistentvolumeclaim "claim" not found')
    await client.create(client.resource("v1", "PersistentVolume"), {
        "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": str(data)}}})
    await _create(client, "PersistentVolumeClaim", {
        "metadata": {"name": "claim"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    claim = await client.get(pvcs, "claim", NS)
    if (claim.get("status") or {}).get("phase") != "Bound":
        with pytest.raises(VolumeError, match=r'PVC default/claim has non-bound phase'):
            await vm.setup(pod)
        await client.patch(pvcs, "claim", {"status": {"phase": "Bound"}}, namespace=NS,
                           subresource="status")
    vols = await vm.setup(pod)
    assert vols["d"].host_path == data
    await vm.teardown(pod["metadata"]["uid"])
    assert (data / "f").read_text() == "kept"


async def test_teardown_refuses_uids_that_are_not_one_path_element(
        vm: VolumeManager, host_dir: Path) -> None:
    keep = host_dir / "pods" / "other"
    keep.mkdir(parents=True)
    for uid in ("", "..", "a/../..", "."):
        with pytest.raises(ValueError):
            await vm.teardown(uid)
    assert keep.is_dir()
    await vm.cleanup_all()
    assert list((host_dir / "pods").iterdir()) == []
