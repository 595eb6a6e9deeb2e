"""A `pinnace up` process for end-to-end tests, and kubectl pointed at it.

Each cluster gets its own data dir, a free loopback port and its own HOME, so
kubectl's discovery cache never leaks between tests (or from yesterday).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_port

KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


@dataclass
class Cluster:
    data_dir: Path
    home: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    # run a real node (runc containers): `pinnace up`; otherwise the control plane alone
    # (`pinnace server`), or simulated nodes when the test passes --fake-nodes
    real_node: bool = False
    extra: tuple[str, ...] = ()  # the flags of the last start, which `restart()` passes again

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self, timeout: float = 30.0, extra: tuple[str, ...] = ()) -> None:
        self.kubeconfig.unlink(missing_ok=True)
        self.extra = extra
        self.log_path = self.data_dir.parent / f"pinnace-{self.port}.log"
        log = open(self.log_path, "ab")
        command = "up" if self.real_node or "--fake-nodes" in extra else "server"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pinnace.cli", command, "--data-dir", str(self.data_dir),
             "--port", str(self.port), *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.kubeconfig.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pinnace up exited: {self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("pinnace up did not become ready")
            time.sleep(0.05)

    def restart(self, timeout: float = 30.0) -> None:
        """Start again with the flags of the last start (after `stop()` or `kill()`)."""
        self.start(timeout, extra=self.extra)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def down(self) -> str:
        """`pinnace down`: no container, mount, netns, link or cgroup of this cluster left.
        Returns what it printed (what it stopped)."""
        result = subprocess.run([sys.executable, "-m", "pinnace.cli", "down", "--data-dir",
                                 str(self.data_dir)], capture_output=True, text=True,
                                timeout=120, check=True)
        return result.stdout

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.home)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([KUBECTL, *args], env=self.env(), capture_output=True,
                                text=True, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def kubectl_popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([KUBECTL, *args], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def client(self):
        """An official `kubernetes` ApiClient for this cluster."""
        from kubernetes import client, config
        return config.new_client_from_config(str(self.kubeconfig)) or client.ApiClient()
