"""`pinnace up` on a machine that cannot run a real node (here: no runc on PATH) says why
and which flag gives simulated nodes, and still serves the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.cluster import KUBECTL
from tests.ports import free_port


def test_up_without_runc_explains_and_serves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinnace.cli", "up", "--data-dir", str(data),
         "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PATH": str(empty)})
    try:
        deadline = time.monotonic() + 30
        while not (data / "kubeconfig").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no kubeconfig"
            time.sleep(0.05)
        nodes = subprocess.run([KUBECTL, "--kubeconfig", str(data / "kubeconfig"), "get",
                                "nodes", "-o", "json"], capture_output=True, text=True,
                               env={**os.environ, "HOME": str(tmp_path)}, timeout=30)
        assert nodes.returncode == 0, nodes.stderr
        assert json.loads(nodes.stdout)["items"] == []
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "pinnace: no node: runc is not installed (scripts/setup installs it)" in err
    assert "`pinnace up --fake-nodes N` runs simulated nodes" in err
    assert not (data / "runtime").exists()  # nothing was set up on the host
