"""A real etcd cluster on loopback for tests and benchmarks: Debian's `etcd-server`.

    with EtcdCluster(tmp_path, members=3) as etcd:
        store = await open_etcd(etcd.endpoints)
        etcd.stop_member(0)        # SIGKILL by PID; start_member(0) brings it back

Each member keeps its data in `DIR/mN`, logs to `DIR/mN.log`, listens for clients and
peers on free 127.0.0.1 ports and is stopped by its own PID.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.registry import _free_port

BINARY = "/usr/bin/etcd"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def available() -> bool:
    return shutil.which(BINARY) is not None


class EtcdCluster:
    def __init__(self, directory: Path, *, members: int = 1) -> None:
        self.dir = Path(directory)
        self.names = [f"m{i}" for i in range(members)]
        self.client_ports = [_free_port() for _ in self.names]
        self.peer_ports = [_free_port() for _ in self.names]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * members

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def _command(self, i: int) -> list[str]:
        peers = ",".join(f"{n}=http://127.0.0.1:{p}"
                         for n, p in zip(self.names, self.peer_ports, strict=True))
        client = self.endpoints[i]
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        return [BINARY, "--name", self.names[i], "--data-dir", str(self.dir / self.names[i]),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", peers, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"pinnace-test-{self.peer_ports[0]}",
                "--logger", "zap", "--log-level", "warn",
                # short elections: a stopped member's successor is chosen within a second
                "--heartbeat-interval", "50", "--election-timeout", "500"]

    def start_member(self, i: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{self.names[i]}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(self._command(i), stdout=log,
                                             stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for i in range(len(self.names)):
            self.start_member(i)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running member answers /health with a leader."""
        deadline = time.monotonic() + timeout
        for i, proc in enumerate(self.procs):
            if proc is None:
                continue
            while True:
                try:
                    with _DIRECT.open(f"{self.endpoints[i]}/health", timeout=2) as r:
                        if b'"true"' in r.read():
                            break
                except (OSError, urllib.error.URLError):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / f"{self.names[i]}.log").read_text()[-3000:]
                    self.stop()
                    raise RuntimeError(f"etcd member {self.names[i]} did not start: {log}")
                time.sleep(0.1)

    def stop_member(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs[i] = None

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.stop_member(i, signal.SIGTERM)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
