"""local-path volume files: sizes of the backing file and the ext4 size read from its
superblock (mkfs.ext4 on a plain file: no mount, no root needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pinnace.agent.volumes import local_path as volumes

MiB = 1024 * 1024


def test_device_size_has_a_floor_and_is_block_aligned() -> None:
    assert volumes.device_size(1) == volumes.MIN_SIZE
    assert volumes.device_size(20 * MiB) == 20 * MiB
    assert volumes.device_size(20 * MiB + 1) == 20 * MiB + 4096


def test_backing_file_sits_beside_the_volumes() -> None:
    assert volumes.backing_file(Path("/d/storage/pvc-1_ns_c")) == \
        Path("/d/storage/.backing/pvc-1_ns_c.ext4")


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")
@pytest.mark.parametrize("size", [20 * MiB, 600 * MiB])
def test_fs_size_reads_the_superblock(tmp_path: Path, size: int) -> None:
    image = tmp_path / "v.ext4"
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    assert volumes.fs_size(image) == size


def test_volume_dirs_lists_volumes_and_orphaned_backing_files(tmp_path: Path) -> None:
    (tmp_path / "pvc-a_ns_c").mkdir()
    (tmp_path / ".backing").mkdir()
    (tmp_path / ".backing" / "pvc-b_ns_c.ext4").touch()
    (tmp_path / "unrelated").mkdir()
    assert volumes.volume_dirs(tmp_path) == [tmp_path / "pvc-a_ns_c", tmp_path / "pvc-b_ns_c"]


def test_unenforced_volume_is_a_world_writable_dir_made_whole(tmp_path: Path) -> None:
    vol = tmp_path / "pvc-a_ns_c"
    volumes.create_unenforced(vol)
    assert vol.is_dir() and oct(vol.stat().st_mode & 0o777) == "0o777"
    (vol / "f").write_text("kept")
    volumes.create_unenforced(vol)  # again: nothing changes
    assert (vol / "f").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pvc-a_ns_c"]  # no partial left
    assert not volumes.is_enforced(vol)
