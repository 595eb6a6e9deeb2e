"""The nginx and perl stand-ins carry the Debian userland of the real images, as kubectl sees
it on a real node: `kubectl exec` runs their sh, cat, GNU tar, grep, ...; `kubectl cp` (GNU tar
at the container's end, both ways) moves bytes in and out unchanged.

One real-node cluster for the module, pulling through the session's local registry; its
teardown (`pinnace down`) checks that no container or mount is left behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import real_cluster, run_pod


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("userland"), local_registry.url)


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> Iterator[str]:
    """An nginx pod running the image's own command."""
    run_pod(cluster, "web", [{"name": "nginx", "image": "nginx:1.19"}])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
    yield "web"
    cluster.kubectl("delete", "pod", "web", "--wait=false")


def test_exec_cat_prints_the_nginx_config(cluster: Cluster, web: str) -> None:
    conf = cluster.kubectl("exec", web, "--", "cat", "/etc/nginx/nginx.conf").stdout
    assert "worker_processes" in conf and "include /etc/nginx/sites-enabled/*;" in conf


def test_exec_runs_the_gnu_tools_through_sh(cluster: Cluster, web: str) -> None:
    def sh(script: str) -> str:
        return cluster.kubectl("exec", web, "--", "sh", "-c", script).stdout

    assert sh("echo hi | tar --version | head -n 1").startswith("tar (GNU tar) ")
    assert sh("ls --version | head -n 1").startswith("ls (GNU coreutils) ")
    assert sh("ls /etc/nginx | grep -x nginx.conf") == "nginx.conf\n"
    assert sh("find /etc/nginx -maxdepth 1 -name 'mime.*'") == "/etc/nginx/mime.types\n"
    assert sh("echo 'listen 80' | sed 's/80/8080/'") == "listen 8080\n"
    assert sh("echo round | gzip | gzip -d") == "round\n"
    assert cluster.kubectl("exec", web, "--", "bash", "-c",
                           "echo ${BASH_VERSINFO[0]}").stdout.strip().isdigit()
    # exec resolves through the image's PATH, and the shell is dash as in Debian
    assert sh("readlink /bin/sh; command -v cat") == "dash\n/bin/cat\n"


def test_kubectl_cp_in_and_out_keeps_the_bytes(cluster: Cluster, web: str,
                                               tmp_path: Path) -> None:
    data = bytes(range(256)) * 512 + os.urandom(4096)  # every byte value, and no pattern
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    cluster.kubectl("cp", str(src), f"{web}:/tmp/blob.bin")
    inside = cluster.kubectl("exec", web, "--", "sha256sum", "/tmp/blob.bin").stdout.split()[0]
    assert inside == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    cluster.kubectl("cp", f"{web}:/tmp/blob.bin", str(back))
    assert back.read_bytes() == data


def test_kubectl_cp_copies_a_directory_out(cluster: Cluster, web: str, tmp_path: Path) -> None:
    cluster.kubectl("cp", f"{web}:/usr/share/nginx/html", str(tmp_path / "html"))
    assert "Welcome to nginx" in (tmp_path / "html" / "index.html").read_text()


def test_perl_image_has_a_shell_and_coreutils(cluster: Cluster) -> None:
    # `sleep` is coreutils' here: the image's own command is perl's debugger, which needs a tty
    run_pod(cluster, "camel", [{"name": "perl", "image": "perl:5.34.0",
                                "command": ["sleep", "3600"]}])
    try:
        cluster.kubectl("wait", "--for=condition=Ready", "pod/camel", "--timeout=90s")
        listed = cluster.kubectl("exec", "camel", "--", "sh", "-c", "ls / | grep -q usr",
                                 check=False)
        assert listed.returncode == 0, listed.stderr
        missing = cluster.kubectl("exec", "camel", "--", "sh", "-c", "ls / | grep -q nothere",
                                  check=False)
        assert missing.returncode == 1
        out = cluster.kubectl("exec", "camel", "--", "sh", "-c",
                              "perl -e 'print qq(perl $^V\\n)' | cut -d. -f1").stdout
        assert out == "perl v5\n"
    finally:
        cluster.kubectl("delete", "pod", "camel", "--wait=false")
