"""A real etcd cluster on loopback for tests and benchmarks: Debian's `etcd-server`.

    with EtcdCluster(tmp_path, members=3) as etcd:
        store = await open_etcd(etcd.endpoints)
        etcd.stop_member(0)        # SIGKILL by PID; start_member(0) brings it back

Each member keeps its data in `DIR/mN`, logs to `DIR/mN.log`, listens for clients and
peers on free 127.0.0.1 ports and is stopped by its own PID. With `tls=True` clients
speak HTTPS and must present a certificate of the cluster's CA (`--client-cert-auth`):
`DIR/tls/ca.crt`, `client.crt`, `client.key` are the client's (see `write_tls`).
"""

from __future__ import annotations

import ipaddress
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.ports import free_port

BINARY = "/usr/bin/etcd"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def available() -> bool:
    return shutil.which(BINARY) is not None


def write_tls(directory: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1 and a client certificate under it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def issue(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
              signer: ec.EllipticCurvePrivateKey, extensions: list) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    def save(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        (directory / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-test-ca")])
    ca = issue("etcd-test-ca", ca_key, ca_name, ca_key,
               [(x509.BasicConstraints(ca=True, path_length=None), True)])
    save("ca", ca_key, ca)
    for stem, usage, san in (
            # the member's own gateway dials its gRPC port with this certificate too
            ("server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
             [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            ("client", [ExtendedKeyUsageOID.CLIENT_AUTH], [])):
        key = ec.generate_private_key(ec.SECP256R1())
        extensions = [(x509.ExtendedKeyUsage(usage), False)]
        if san:
            extensions.append((x509.SubjectAlternativeName(san), False))
        save(stem, key, issue(f"etcd-test-{stem}", key, ca_name, ca_key, extensions))


class EtcdCluster:
    def __init__(self, directory: Path, *, members: int = 1, tls: bool = False) -> None:
        self.dir = Path(directory)
        self.tls = tls
        self.names = [f"m{i}" for i in range(members)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * members

    @property
    def endpoints(self) -> list[str]:
        scheme = "https" if self.tls else "http"
        return [f"{scheme}://127.0.0.1:{p}" for p in self.client_ports]

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

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
                "--heartbeat-interval", "50", "--election-timeout", "500",
                *(["--cert-file", str(self.tls_dir / "server.crt"),
                   "--key-file", str(self.tls_dir / "server.key"),
                   "--trusted-ca-file", str(self.tls_dir / "ca.crt"),
                   "--client-cert-auth"] if self.tls else [])]

    def start_member(self, i: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{self.names[i]}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(self._command(i), stdout=log,
                                             stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        if self.tls and not (self.tls_dir / "ca.crt").exists():
            write_tls(self.tls_dir)
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
                    with self._open(f"{self.endpoints[i]}/health") as r:
                        if b'"true"' in r.read():
                            break
                except (OSError, urllib.error.URLError):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / f"{self.names[i]}.log").read_text()[-3000:]
                    self.stop()
                    raise RuntimeError(f"etcd member {self.names[i]} did not start: {log}")
                time.sleep(0.1)

    def _open(self, url: str) -> Any:
        if not self.tls:
            return _DIRECT.open(url, timeout=2)
        context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        context.load_cert_chain(self.tls_dir / "client.crt", self.tls_dir / "client.key")
        return urllib.request.urlopen(url, timeout=2, context=context)

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
