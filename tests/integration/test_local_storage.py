"""The node agent's local-path volumes on the real host, against a real API server: a PV
the provisioner assigned to this node becomes a loop-mounted ext4 of the PV's size
(writing past it: ENOSPC), grows when the PV's capacity grows (then the claim's status
follows), waits to grow while something else holds the file system, survives an agent
restart without a second mount, and goes (mount, loop device, directory, backing file)
with its PV — also when the PV went while the agent was away.

The PVs and claims are written here as the provisioner and the binder would write them.
Nothing may be left on the host: no mount under the test's dir, no loop device on its
files.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.agent.local_storage import LocalStorage
from pinnace.agent.volumes import local_path as volumes
from pinnace.agent.volumes.errors import SetUpError
from pinnace.agent.volumes.host import is_mounted, mounts_under, unmount, unmount_all
from pinnace.api import local_path as lp
from pinnace.api.errors import ApiError
from pinnace.cluster import ComponentRunner
from tests.integration.conftest import Components, eventually

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or bool(volumes.enforcement_unavailable()),
                                reason="loop mounts need root, loop devices and e2fsprogs")
NS = "default"
NODE = "node-1"
MiB = 1024 * 1024


@pytest.fixture
def storage_dir(tmp_path: Path) -> Iterator[Path]:
    """The node's storage dir; afterwards unmounted as `pinnace down` does it, which must
    leave no mount and no loop device behind."""
    d = tmp_path / "storage"
    try:
        yield d
        volumes.unmount_all(d)
        assert mounts_under(tmp_path) == []
        assert volumes.loop_devices(tmp_path) == []
    finally:
        unmount_all(tmp_path)


async def _agent(client: Any, components: Components, storage_dir: Path) -> LocalStorage:
    agent = LocalStorage(client, components.factory, node_name=NODE, storage_dir=storage_dir)
    await components.start(agent)
    return agent


async def _node(client: Any) -> None:
    await client.create(client.resource("v1", "Node"), {"metadata": {"name": NODE}})


async def _volume(client: Any, storage_dir: Path, name: str, size: str = "20Mi"
                  ) -> tuple[dict[str, Any], Path]:
    """A claim, bound to a local-path PV on NODE (as provisioner and binder leave them)."""
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    claim = await client.create(pvcs, {
        "metadata": {"name": name},
        "spec": {"storageClassName": lp.CLASS_NAME, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": size}}}}, NS)
    pv_name = f"pvc-{claim['metadata']['uid']}"
    path = storage_dir / lp.volume_dir_name(pv_name, NS, name)
    pv = await client.create(client.resource("v1", "PersistentVolume"), {
        "metadata": {"name": pv_name, "annotations": {lp.PROVISIONED_BY: lp.PROVISIONER}},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": lp.CLASS_NAME,
                 "claimRef": {"kind": "PersistentVolumeClaim", "namespace": NS, "name": name,
                              "uid": claim["metadata"]["uid"]},
                 "local": {"path": str(path)},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": lp.HOSTNAME_LABEL, "operator": "In", "values": [NODE]}]}]}}}})
    await client.patch(pvcs, name, {"spec": {"volumeName": pv_name}}, namespace=NS)
    await client.patch(pvcs, name, {"status": {"phase": "Bound", "capacity": {"storage": size},
                                               "accessModes": ["ReadWriteOnce"]}},
                       namespace=NS, subresource="status")
    return pv, path


def _write(path: Path, mib: int) -> None:
    """Write `mib` MiB into a new file; raises OSError(ENOSPC) when the volume is full."""
    target = path / f"blob-{uuid.uuid4().hex[:6]}"
    try:
        with open(target, "wb") as f:
            for _ in range(mib):
                f.write(b"\0" * MiB)
            f.flush()
            os.fsync(f.fileno())
    finally:
        target.unlink(missing_ok=True)


def _mount_cmd(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_count(path: Path) -> int:
    return sum(1 for line in Path("/proc/self/mounts").read_text().splitlines()
               if line.split()[1] == str(path))


async def test_volume_is_sized_enforced_and_node_annotated(client: Any, components: Components,
                                                           storage_dir: Path) -> None:
    await _node(client)
    await _agent(client, components, storage_dir)
    pv, path = await _volume(client, storage_dir, "data")
    await eventually(lambda: is_mounted(path))
    assert oct(path.stat().st_mode & 0o777) == "0o777"
    st = os.statvfs(path)
    assert 17 * MiB < st.f_blocks * st.f_frsize <= 20 * MiB
    _write(path, 10)
    with pytest.raises(OSError) as e:
        _write(path, 25)
    assert e.value.errno == errno.ENOSPC
    node = await client.get(client.resource("v1", "Node"), NODE)
    assert node["metadata"]["annotations"][lp.STORAGE_DIR_ANNOTATION] == str(storage_dir)
    await client.delete(client.resource("v1", "PersistentVolume"), pv["metadata"]["name"])
    await eventually(lambda: not path.exists() and not volumes.backing_file(path).exists())
    assert volumes.loop_devices(storage_dir) == []


async def test_expansion_grows_the_file_system_and_the_claim_capacity(
        client: Any, components: Components, storage_dir: Path) -> None:
    await _node(client)
    await _agent(client, components, storage_dir)
    pv, path = await _volume(client, storage_dir, "grow")
    await eventually(lambda: is_mounted(path))
    (path / "kept").write_text("data")
    with pytest.raises(OSError):
        _write(path, 30)
    pvs, pvcs = client.resource("v1", "PersistentVolume"), client.resource(
        "v1", "PersistentVolumeClaim")
    await client.patch(pvs, pv["metadata"]["name"], {"spec": {"capacity": {"storage": "60Mi"}}})

    async def reported() -> bool:
        claim = await client.get(pvcs, "grow", NS)
        return claim["status"]["capacity"] == {"storage": "60Mi"}
    await eventually(reported, within=20)
    assert is_mounted(path) and _mount_count(path) == 1
    _write(path, 30)
    assert (path / "kept").read_text() == "data"


async def test_a_held_file_system_waits_to_grow_until_released(
        client: Any, components: Components, storage_dir: Path, tmp_path: Path) -> None:
    """Where the kernel refuses online growth (no CAP_SYS_RESOURCE), a volume still
    mounted elsewhere (a container's bind mount) must not be resized under it."""
    await _node(client)
    await _agent(client, components, storage_dir)
    pv, path = await _volume(client, storage_dir, "held")
    await eventually(lambda: is_mounted(path))
    holder = tmp_path / "holder"
    holder.mkdir()
    _mount_cmd("--bind", str(path), str(holder))
    try:
        pvs = client.resource("v1", "PersistentVolume")
        await client.patch(pvs, pv["metadata"]["name"],
                           {"spec": {"capacity": {"storage": "60Mi"}}})
        pvcs = client.resource("v1", "PersistentVolumeClaim")

        async def reported() -> bool:
            claim = await client.get(pvcs, "held", NS)
            return claim["status"]["capacity"] == {"storage": "60Mi"}
        online = volumes.fs_size(volumes.loop_devices(storage_dir)[0]) > 20 * MiB
        await eventually(lambda: is_mounted(path) and (
            online or volumes.backing_file(path).stat().st_size == 60 * MiB))
        if not online:
            await eventually(lambda: is_mounted(path))
            assert not await reported()  # still 20Mi: it waits
    finally:
        unmount(holder)
    await eventually(reported, within=20)
    assert _mount_count(path) == 1
    _write(path, 30)


async def test_restart_adopts_mounts_and_removes_volumes_of_deleted_pvs(
        client: Any, components: Components, storage_dir: Path) -> None:
    await _node(client)
    runner = ComponentRunner(client)
    await runner.start(LocalStorage(client, runner.factory, node_name=NODE,
                                    storage_dir=storage_dir))
    try:
        kept_pv, kept = await _volume(client, storage_dir, "kept")
        gone_pv, gone = await _volume(client, storage_dir, "gone")
        await eventually(lambda: is_mounted(kept) and is_mounted(gone))
        (kept / "f").write_text("still here")
    finally:
        await runner.stop()
    # while the agent is away: its PV goes; and `pinnace down` unmounts the other
    await client.delete(client.resource("v1", "PersistentVolume"), gone_pv["metadata"]["name"])
    volumes.unmount_all(storage_dir)
    assert not is_mounted(kept)
    with pytest.raises(SetUpError, match="is not mounted on this node yet"):
        volumes.check_ready(kept)  # a pod may not use the bare directory below the mount
    with pytest.raises(ApiError):
        await client.get(client.resource("v1", "PersistentVolume"), gone_pv["metadata"]["name"])
    await _agent(client, components, storage_dir)
    await eventually(lambda: is_mounted(kept) and not gone.exists())
    assert _mount_count(kept) == 1
    assert (kept / "f").read_text() == "still here"
    assert not volumes.backing_file(gone).exists()
    await client.delete(client.resource("v1", "PersistentVolume"), kept_pv["metadata"]["name"])
    await eventually(lambda: not kept.exists())
