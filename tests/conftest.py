"""Suite-wide settings.

Property-based tests explore new random inputs on every developer run; in CI
(`CI=true`) they replay a fixed sequence, so a submission's result depends on its
code alone. A failure found locally is a real bug either way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

from tests.paths import REPO

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding busybox_1.28.tar, nginx_1.19.tar and perl_5.34.0.tar, built once
    per test session by scripts/build-test-images (needs root and the Debian mirror)."""
    out = tmp_path_factory.mktemp("test-images")
    built = subprocess.run([str(REPO / "scripts" / "build-test-images"), str(out)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="session")
def local_registry(test_images: Path, tmp_path_factory: pytest.TempPathFactory):
    """A docker-registry on loopback serving library/busybox:1.28, library/nginx:1.19 and
    library/perl:5.34.0 (the test images) for the session. Make it a node's docker.io
    mirror with `local_registry.write_registries_yaml(data_dir)`; see tests/registry.py.
    Read-only for tests: start an own LocalRegistry to push other content."""
    from tests.registry import LocalRegistry, available

    assert available(), "docker-registry is not installed (scripts/setup --test installs it)"
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as registry:
        for name, tag in (("busybox", "1.28"), ("nginx", "1.19"), ("perl", "5.34.0")):
            registry.push_archive(test_images / f"{name}_{tag}.tar", f"library/{name}", tag)
        yield registry


@pytest.fixture(scope="module")
def nfs_server(tmp_path_factory: pytest.TempPathFactory):
    """A real NFS server (nfs-ganesha + rpcbind) in a network namespace of its own, for a
    module's tests: `.server` is its address, `.export` the exported dir (mode 0777),
    `.stop()`/`.start()` kill and restart it. See tests/nfs_server.py."""
    from tests.nfs_server import available, leftover_namespaces, running_nfs_server

    why = available()
    assert why is None, why
    base = tmp_path_factory.mktemp("nfs")
    os.chmod(base, 0o755)  # ganesha (root) exports it; containers' users walk through it
    with running_nfs_server(base) as srv:
        yield srv
    assert [n for n in leftover_namespaces() if n == srv.netns] == []
