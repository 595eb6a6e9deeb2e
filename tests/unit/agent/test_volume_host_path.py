"""hostPath type checks with Kubernetes' messages, on real files."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pinnace.agent.volumes.errors import SetUpError
from pinnace.agent.volumes.host_path import check


def test_types_that_match(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    check(str(tmp_path), "Directory")
    check(str(tmp_path / "f"), "File")
    check("/dev/null", "CharDevice")
    check(str(tmp_path / "nothing"), "")  # no type: no check
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        check(str(tmp_path / "sock"), "Socket")


@pytest.mark.parametrize("kind,what", [
    ("Directory", "a directory"), ("File", "a file"), ("Socket", "a socket file"),
    ("CharDevice", "a character device"), ("BlockDevice", "a block device")])
def test_mismatch_messages(tmp_path: Path, kind: str, what: str) -> None:
    target = tmp_path / ("f" if kind == "Directory" else "d")
    if kind == "Directory":
        target.write_text("x")
    else:
        target.mkdir()
    with pytest.raises(SetUpError) as e:
        check(str(target), kind)
    assert str(e.value) == f"hostPath type check failed: {target} is not {what}"


def test_missing_directory_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SetUpError, match="is not a directory"):
        check(str(tmp_path / "x"), "Directory")


def test_or_create_types_create(tmp_path: Path) -> None:
    check(str(tmp_path / "a" / "b"), "DirectoryOrCreate")
    assert (tmp_path / "a" / "b").is_dir()
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o755
    check(str(tmp_path / "file"), "FileOrCreate")
    assert (tmp_path / "file").read_bytes() == b""
    assert (tmp_path / "file").stat().st_mode & 0o777 == 0o644
    with pytest.raises(SetUpError, match="is not a file"):
        check(str(tmp_path / "a"), "FileOrCreate")
    with pytest.raises(SetUpError, match="no such file or directory"):
        check(str(tmp_path / "missing" / "file"), "FileOrCreate")  # parents are not made


def test_backsteps_and_unknown_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SetUpError, match=r"must not contain '\.\.'"):
        check("/tmp/../etc", "")
    with pytest.raises(SetUpError, match="Fifo is an invalid volume type"):
        check(str(tmp_path), "Fifo")
