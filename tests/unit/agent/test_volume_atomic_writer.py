"""The kubelet's atomic writer layout: timestamped dir, `..data`, per-key symlinks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pinnace.agent.volumes.atomic_writer import FileProjection, write

TS = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$")


def _ts_dirs(d: Path) -> list[str]:
    return [e.name for e in d.iterdir() if TS.match(e.name)]


def test_layout_modes_and_nested_paths(tmp_path: Path) -> None:
    assert write(tmp_path, {"a": FileProjection(b"1", 0o644),
                            "dir/b": FileProjection(b"2", 0o400)})
    [ts] = _ts_dirs(tmp_path)
    assert os.readlink(tmp_path / "..data") == ts
    assert os.readlink(tmp_path / "a") == "..data/a"
    assert os.readlink(tmp_path / "dir") == "..data/dir"
    assert (tmp_path / "dir" / "b").read_bytes() == b"2"
    assert (tmp_path / "dir" / "b").stat().st_mode & 0o777 == 0o400
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == sorted(["..data", ts, "a", "dir"])


def test_unchanged_payload_keeps_the_version(tmp_path: Path) -> None:
    payload = {"a": FileProjection(b"1", 0o644)}
    write(tmp_path, payload)
    before = os.readlink(tmp_path / "..data")
    assert not write(tmp_path, payload)
    assert os.readlink(tmp_path / "..data") == before
    # a mode change alone is a new version
    assert write(tmp_path, {"a": FileProjection(b"1", 0o600)})
    assert os.readlink(tmp_path / "..data") != before


def test_update_swaps_data_and_drops_removed_keys(tmp_path: Path) -> None:
    write(tmp_path, {"a": FileProjection(b"1", 0o644), "b": FileProjection(b"2", 0o644)})
    write(tmp_path, {"a": FileProjection(b"3", 0o644)})
    assert (tmp_path / "a").read_bytes() == b"3"
    assert not os.path.lexists(tmp_path / "b")
    assert len(_ts_dirs(tmp_path)) == 1  # the old version is gone
    assert not os.path.lexists(tmp_path / "..data_tmp")


@pytest.mark.parametrize("bad", ["/abs", "../x", "a/../../x", "..hidden"])
def test_paths_that_leave_or_shadow_the_volume_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        write(tmp_path, {bad: FileProjection(b"", 0o644)})
