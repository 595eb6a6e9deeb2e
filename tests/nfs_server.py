"""A real NFS server for tests: Debian's nfs-ganesha (VFS backend) and rpcbind in a network
namespace of the test's own, reached from the host over a veth pair.

    with running_nfs_server(tmp_path) as srv:   # srv.server: the address; srv.export: the dir
        srv.stop(); srv.start()         # the NFS server dies and comes back (rpcbind stays)
        srv.freeze(); srv.thaw()        # it hangs (SIGSTOP), then answers again

Why a namespace: rpcbind listens on 0.0.0.0:111 (`-h 127.0.0.1` aborts) and ganesha's ports
are fixed; inside a namespace they disturb nothing on the host, and two test runs at once
each have their own. The namespace gets its own /run (a tmpfs, in the mount namespace that
`ip netns exec` makes) for rpcbind's socket. The host end of the veth and the address inside
are a random /30 in 10.216.0.0/13, away from pod CIDRs. Everything is removed on exit, also
when the body failed: processes by PID, then the namespace (which takes the veth with it).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

NETNS_PREFIX = "pnfs-test-"


def available() -> str | None:
    """Why a server cannot be started here, or None."""
    for tool in ("ganesha.nfsd", "rpcbind", "ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup TEST_PACKAGES)"
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing"
    if os.geteuid() != 0:
        return "needs root"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


class NfsServer:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.export = base / "export"
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{random.randint(0, 99999)}"
        octets = f"10.{random.randint(216, 223)}.{random.randint(0, 255)}"
        last = random.randrange(0, 256, 4)
        self.host_address = f"{octets}.{last + 1}"
        self.server = f"{octets}.{last + 2}"  # what a PV or pod names as `server`
        self.veth = f"pnfs{random.randint(0, 0xffffff):06x}"
        self._rpcbind: subprocess.Popen[bytes] | None = None
        self._ganesha: subprocess.Popen[bytes] | None = None

    def setup(self) -> None:
        self.export.mkdir(parents=True, exist_ok=True)
        os.chmod(self.export, 0o777)
        (self.base / "recovery").mkdir(exist_ok=True)
        (self.base / "ganesha.conf").write_text(
            "NFS_CORE_PARAM { Protocols = 3; NFS_Port = 2049; MNT_Port = 20048;\n"
            "  Enable_UDP = false; Enable_NLM = false; Enable_RQUOTA = false; }\n"
            f"NFSV4 {{ Graceless = true; RecoveryRoot = {self.base / 'recovery'}; }}\n"
            f"EXPORT {{ Export_Id = 1; Path = {self.export}; Pseudo = {self.export};\n"
            "  Access_Type = RW; Squash = No_Root_Squash; SecType = sys;\n"
            "  FSAL { Name = VFS; } }\n")
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns",
            self.netns)
        _ip("addr", "add", f"{self.host_address}/30", "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        _ip("-n", self.netns, "addr", "add", f"{self.server}/30", "dev", "eth0")
        _ip("-n", self.netns, "link", "set", "eth0", "up")
        _ip("-n", self.netns, "link", "set", "lo", "up")
        # rpcbind is the namespace's long-lived process; ganesha joins its namespaces
        self._rpcbind = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "sh", "-c",
             "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/rpcbind && "
             "chown _rpc /run/rpcbind 2>/dev/null; exec rpcbind -f"],
            stdout=subprocess.DEVNULL, stderr=open(self.base / "rpcbind.log", "ab"),
            start_new_session=True)
        deadline = time.monotonic() + 10
        while not self._rpcbind_ready():
            if time.monotonic() > deadline or self._rpcbind.poll() is not None:
                raise RuntimeError(f"rpcbind did not start: {self._log('rpcbind.log')}")
            time.sleep(0.05)
        self.start()

    def _rpcbind_ready(self) -> bool:
        r = subprocess.run(["ip", "netns", "exec", self.netns, "ss", "-Hltn", "sport", "= :111"],
                           capture_output=True, text=True)
        return bool(r.stdout.strip())

    def _log(self, name: str) -> str:
        p = self.base / name
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def start(self) -> None:
        """Start ganesha (again) and wait until the export answers."""
        assert self._rpcbind is not None
        self._ganesha = subprocess.Popen(
            ["nsenter", "-t", str(self._rpcbind.pid), "-n", "-m", "ganesha.nfsd", "-F",
             "-f", str(self.base / "ganesha.conf"), "-L", str(self.base / "ganesha.log"),
             "-p", str(self.base / "ganesha.pid"), "-N", "NIV_EVENT"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.answers():
            if time.monotonic() > deadline or self._ganesha.poll() is not None:
                raise RuntimeError(f"ganesha did not start: {self._log('ganesha.log')}")
            time.sleep(0.1)

    def answers(self) -> bool:
        import nfs_rs
        try:
            with nfs_rs.Client.connect(f"nfs://{self.server}{self.export}?version=3",
                                       connect_timeout=1, operation_timeout=2) as c:
                c.stat(".")
            return True
        except Exception:  # not up yet
            return False

    def stop(self) -> None:
        """The NFS server dies (SIGKILL: no goodbye to clients); rpcbind stays."""
        _kill(self._ganesha)
        self._ganesha = None

    def freeze(self) -> None:
        """The server hangs (SIGSTOP): connections stay open, nothing answers."""
        assert self._ganesha is not None
        os.kill(self._ganesha.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._ganesha is not None
        os.kill(self._ganesha.pid, signal.SIGCONT)

    def teardown(self) -> None:
        if self._ganesha is not None and self._ganesha.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._ganesha.pid, signal.SIGCONT)
        _kill(self._ganesha)
        _kill(self._rpcbind)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)


@contextlib.contextmanager
def running_nfs_server(base: Path) -> Iterator[NfsServer]:
    srv = NfsServer(base)
    try:
        srv.setup()
        yield srv
    finally:
        srv.teardown()


def leftover_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]
