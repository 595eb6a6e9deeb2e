"""Which OCI runtime the node uses: the caller's or $PINNACE_OCI_RUNTIME's choice wins;
without crun on PATH it is runc (no cgroup check, no mount)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinnace.agent.runtime.runc import oci_runtime


def tool(bin_dir: Path, name: str) -> str:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_without_crun_it_is_runc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runc = tool(tmp_path, "runc")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PINNACE_OCI_RUNTIME", raising=False)
    assert oci_runtime.choose() == runc


def test_an_explicit_choice_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runc, crun = tool(tmp_path, "runc"), tool(tmp_path, "crun")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PINNACE_OCI_RUNTIME", "runc")
    assert oci_runtime.choose() == runc
    assert oci_runtime.choose("crun") == crun  # the caller's over the environment's
