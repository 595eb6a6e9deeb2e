"""subPath: created when missing, refused when it leaves the volume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pinnace.agent.volumes.errors import VolumeError
from pinnace.agent.volumes.subpath import resolve


def _resolve(vol: Path, sub: str) -> Path:
    return resolve(vol, sub, mount_name="data", container="app")


def test_existing_file_and_created_dir(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir(mode=0o755)
    (vol / "f").write_text("x")
    assert _resolve(vol, "f") == vol / "f"
    made = _resolve(vol, "a/b")
    assert made == vol / "a" / "b" and made.is_dir()


def test_symlink_inside_the_volume_is_followed(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    (vol / "real").mkdir(parents=True)
    os.symlink("real", vol / "link")
    assert _resolve(vol, "link") == vol / "real"


@pytest.mark.parametrize("sub,msg", [
    ("/etc", "error SubPath `/etc` must not be an absolute path"),
    ("../x", "unable to provision SubPath `../x`: must not contain '..'"),
    ("out/x", 'failed to prepare subPath for volumeMount "data" of container "app"'),
    ("abs", 'failed to prepare subPath for volumeMount "data" of container "app"'),
])
def test_escapes_are_refused(tmp_path: Path, sub: str, msg: str) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink("../outside", vol / "out")
    os.symlink(str(outside), vol / "abs")
    with pytest.raises(VolumeError) as e:
        _resolve(vol, sub)
    assert e.value.reason == "CreateContainerConfigError"
    assert e.value.message == msg
    assert list(outside.iterdir()) == []  # nothing was created outside
