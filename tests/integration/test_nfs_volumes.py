"""nfs volumes against a real NFS server (nfs-ganesha in a network namespace, see
tests/nfs_server.py) and a real API server: the volume manager mounts the export (here
through the userspace FUSE client: this kernel has none), files written through the mount
land in the export with the writer's uid, readOnly is enforced, failures are FailedMount
in the kubelet's words, a restarted agent adopts the mount, a dead server turns into EIO
(never a hang) and comes back, and teardown leaves no mount and no process.

Everything that touches a path inside the mount runs in a subprocess with a timeout, so
a regression shows up as a failed assertion, not a hung test run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.agent.volumes import VolumeError, VolumeManager
from pinnace.agent.volumes.host import mounts_under, unmount_all
from pinnace.agent.volumes.nfs import fuse_processes

NS = "default"


@pytest.fixture
def host_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pinnace-nfs-"))
    os.chmod(d, 0o755)
    try:
        yield d
        assert mounts_under(d) == []
        assert fuse_processes(d) == []
    finally:
        for pid, _ in fuse_processes(d):
            os.kill(pid, 9)
        unmount_all(d)
        shutil.rmtree(d)


@pytest.fixture
def vm(client: Any, host_dir: Path) -> VolumeManager:
    return VolumeManager(client, pods_dir=host_dir / "pods", node_name="node-1")


def _pod(volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": NS, "uid": str(uuid.uuid4())},
            "spec": {"volumes": volumes, "containers": [{"name": "app"}]}}


def _sh(script: str, *, user: int | None = None, timeout: float = 30
        ) -> subprocess.CompletedProcess[str]:
    """A shell touching the mount, as a container process would, bounded in time."""
    cmd = ["sh", "-c", script]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _export_dir(nfs_server: Any, name: str) -> Path:
    d = nfs_server.export / name
    d.mkdir(mode=0o777, exist_ok=True)
    os.chmod(d, 0o777)
    return d


async def test_nfs_volume_read_write_owner_and_teardown(vm: VolumeManager, nfs_server: Any,
                                                        host_dir: Path) -> None:
    data = _export_dir(nfs_server, "rw")
    (data / "before").write_text("from the server\n")
    pod = _pod([{"name": "d", "nfs": {"server": nfs_server.server, "path": str(data)}}])
    vols = await vm.setup(pod)
    path = vols["d"].host_path
    assert path.name == "d" and path.parent.name == "kubernetes.io~nfs"
    assert _sh(f"findmnt -no FSTYPE {path}").stdout.strip() == "fuse.pinnace-nfs"
    r = _sh(f"cat {path}/before && echo root-line >> {path}/log && mkdir {path}/sub")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from the server\n"
    assert (data / "log").read_text() == "root-line\n"
    # a container's view: a bind mount of the volume (pod dirs are closed to host users)
    view = host_dir / "view"
    view.mkdir()
    _sh(f"mount --bind {path} {view}")
    try:
        r = _sh(f"echo user-line > {view}/user.txt", user=1000)
        assert r.returncode == 0, r.stderr
    finally:
        _sh(f"umount -l {view}")
    st = (data / "user.txt").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)  # the writer's identity, on the server
    assert (data / "sub").is_dir()

    # what programs do on a volume: rename over a file, links, truncate, modes, times, df
    r = _sh(f"cd {path} && echo new > tmp && mv tmp log && ln -s log link && cat link && "
            "ln log hard && truncate -s 2 hard && chmod 600 log && touch -d @1000000000 log && "
            "stat -c '%a %s %Y' log && rm hard && rmdir sub && ls && df -P . | tail -1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["new", "600 2 1000000000"]
    assert lines[2:6] == ["before", "link", "log", "user.txt"]
    assert lines[6].split()[-1] == str(path)  # df: statfs answered
    assert os.readlink(data / "link") == "log" and (data / "log").read_text() == "ne"

    again = await vm.setup(pod)  # every sync: the same mount, nothing remounted
    assert again["d"].host_path == path
    await vm.teardown(pod["metadata"]["uid"])
    assert mounts_under(host_dir) == [] and fuse_processes(host_dir) == []
    assert (data / "log").read_text() == "ne"  # the export keeps its data


async def test_read_only_and_claim_bound_to_nfs_pv(client: Any, vm: VolumeManager,
                                                   nfs_server: Any) -> None:
    data = _export_dir(nfs_server, "pv")
    (data / "f").write_text("kept")
    await client.create(client.resource("v1", "PersistentVolume"), {
        "metadata": {"name": "nfs-pv-it"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "nfs": {"server": nfs_server.server, "path": str(data)}}})
    await client.create(client.resource("v1", "PersistentVolumeClaim"), {
        "metadata": {"name": "claim"},
        "spec": {"accessModes": ["ReadWriteMany"], "volumeName": "nfs-pv-it",
                 "resources": {"requests": {"storage": "1Gi"}}}}, NS)
    await client.patch(client.resource("v1", "PersistentVolumeClaim"), "claim",
                       {"status": {"phase": "Bound"}}, namespace=NS, subresource="status")
    pod = _pod([{"name": "rw", "persistentVolumeClaim": {"claimName": "claim"}},
                {"name": "ro", "persistentVolumeClaim": {"claimName": "claim",
                                                         "readOnly": True}},
                {"name": "direct-ro", "nfs": {"server": nfs_server.server, "path": str(data),
                                              "readOnly": True}}])
    vols = await vm.setup(pod)
    assert not vols["rw"].readonly and vols["ro"].readonly and vols["direct-ro"].readonly
    for ro in ("ro", "direct-ro"):  # read-only on the host mount too, not only in runc's bind
        r = _sh(f"cat {vols[ro].host_path}/f; echo x > {vols[ro].host_path}/g")
        assert r.stdout == "kept" and "Read-only file system" in r.stderr
    r = _sh(f"echo x > {vols['rw'].host_path}/g")
    assert r.returncode == 0, r.stderr
    assert (data / "g").read_text() == "x\n"
    await vm.teardown(pod["metadata"]["uid"])


async def test_failures_are_failed_mount_in_kubelets_words(vm: VolumeManager,
                                                           nfs_server: Any) -> None:
    pod = _pod([{"name": "gone", "nfs": {"server": nfs_server.server, "path": "/no/such/export"}}])
    with pytest.raises(VolumeError) as e:
        await vm.setup(pod)
    assert e.value.reason == "FailedMount"
    assert e.value.message.startswith('MountVolume.SetUp failed for volume "gone" : '
                                      'mount failed: ')
    assert f"Mounting arguments: {nfs_server.server} /no/such/export" in e.value.message
    assert e.value.message.endswith("Output: nfs_fuse: access denied by server while mounting "
                                    f"{nfs_server.server}:/no/such/export")
    await vm.teardown(pod["metadata"]["uid"])


async def test_agent_restart_adopts_the_mount_and_cleanup_all_stops_it(
        client: Any, vm: VolumeManager, nfs_server: Any, host_dir: Path) -> None:
    data = _export_dir(nfs_server, "adopt")
    pod = _pod([{"name": "d", "nfs": {"server": nfs_server.server, "path": str(data)}}])
    await vm.setup(pod)
    (pid, _), = fuse_processes(host_dir)
    restarted = VolumeManager(client, pods_dir=host_dir / "pods", node_name="node-1")
    vols = await restarted.setup(pod)
    assert fuse_processes(host_dir) == [(pid, str(vols["d"].host_path))]
    assert _sh(f"echo a > {vols['d'].host_path}/a").returncode == 0
    # the state file lost: `pinnace down` still finds the process by its command line
    for f in (host_dir / "pods").glob("*/plugins/kubernetes.io~nfs/*.json"):
        f.unlink()
    await restarted.cleanup_all()
    assert fuse_processes(host_dir) == [] and mounts_under(host_dir) == []


async def test_dead_server_is_eio_not_a_hang_and_the_mount_recovers(
        vm: VolumeManager, nfs_server: Any, host_dir: Path) -> None:
    data = _export_dir(nfs_server, "dies")
    (data / "f").write_text("before\n")
    pod = _pod([{"name": "d", "nfs": {"server": nfs_server.server, "path": str(data)}}])
    path = (await vm.setup(pod))["d"].host_path
    nfs_server.stop()
    try:
        r = _sh(f"cat {path}/f", timeout=60)
        assert r.returncode != 0 and "Input/output error" in r.stderr
        # another pod's volumes are set up meanwhile: nothing waits on the dead server
        other = _pod([{"name": "e", "emptyDir": {}}])
        await vm.setup(other)
        await vm.teardown(other["metadata"]["uid"])
        # a new mount of the dead server fails as a FailedMount instead of hanging
        late = _pod([{"name": "late", "nfs": {"server": nfs_server.server, "path": str(data)}}])
        with pytest.raises(VolumeError, match=r'MountVolume\.SetUp failed for volume "late"'):
            await vm.setup(late)
        await vm.teardown(late["metadata"]["uid"])
    finally:
        nfs_server.start()
    r = _sh(f"cat {path}/f && echo after >> {path}/f", timeout=60)
    assert r.returncode == 0, r.stderr
    assert (data / "f").read_text() == "before\nafter\n"
    await vm.teardown(pod["metadata"]["uid"])


async def test_teardown_with_the_server_dead(vm: VolumeManager, nfs_server: Any,
                                             host_dir: Path) -> None:
    data = _export_dir(nfs_server, "gone")
    pod = _pod([{"name": "d", "nfs": {"server": nfs_server.server, "path": str(data)}}])
    await vm.setup(pod)
    nfs_server.stop()
    try:
        await vm.teardown(pod["metadata"]["uid"])
        assert mounts_under(host_dir) == [] and fuse_processes(host_dir) == []
    finally:
        nfs_server.start()


async def test_hung_server_bounds_every_call_and_teardown(vm: VolumeManager, nfs_server: Any,
                                                          host_dir: Path) -> None:
    """kubernetes#31272: a server that stops answering (not even a reset) must not hang
    anything but the calls on its own volume, and those only for the call deadline."""
    data = _export_dir(nfs_server, "hung")
    (data / "f").write_text("x\n")
    pods = [_pod([{"name": "d", "nfs": {"server": nfs_server.server, "path": str(data)}}])
            for _ in range(2)]
    paths = [(await vm.setup(p))["d"].host_path for p in pods]
    nfs_server.freeze()
    try:
        r = _sh(f"cat {paths[0]}/f", timeout=60)
        assert r.returncode != 0 and "Input/output error" in r.stderr
        await vm.teardown(pods[1]["metadata"]["uid"])  # removed while the server hangs
        assert fuse_processes(host_dir) == [(fuse_processes(host_dir)[0][0], str(paths[0]))]
    finally:
        nfs_server.thaw()
    r = _sh(f"cat {paths[0]}/f", timeout=60)
    assert r.returncode == 0 and r.stdout == "x\n", r.stderr
    await vm.teardown(pods[0]["metadata"]["uid"])
