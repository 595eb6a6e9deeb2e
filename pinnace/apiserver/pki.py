"""The cluster's PKI: a CA, the API server's serving certificate, the admin token.

Layout under the data dir (created once, reused on every later start):

    pki/            0700
      ca.crt        self-signed CA, EC P-256, 10 years
      ca.key        0600
      server.crt    serving certificate signed by the CA, 1 year
      server.key    0600
      admin.token   0600, random bearer token of the cluster admin
      service-account.key  0600, RSA-2048: signs ServiceAccount tokens (RS256)

The serving certificate names localhost, 127.0.0.1, ::1, the host name, the in-cluster
names of the `kubernetes` Service and any extra hosts (its ClusterIP, the address pods
reach the API at). When a later start asks for a
name the certificate lacks (a new address), only the serving certificate is reissued:
the CA, and with it every kubeconfig already handed out, stays valid.

Files are written to a temporary name then renamed, so a crash never leaves a
half-written key behind.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pinnace.api.service_account_tokens import generate_key_pem

CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=365)
SERVICE_ACCOUNT_KEY = "service-account.key"
# Renew the serving certificate when less than this is left.
_RENEW_BEFORE = datetime.timedelta(days=30)

DEFAULT_HOSTS = (
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the PKI files and the CA certificate in PEM."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    ca_pem: bytes

    def ssl_context(self, *, sha1_handshakes: bool = False) -> ssl.SSLContext:
        """A server-side TLS context (TLS 1.2+) presenting the serving certificate.

        `sha1_handshakes`: also serve TLS 1.2 clients that send no signature_algorithms
        extension, for which TLS 1.2 says the handshake is signed with SHA-1 — busybox
        wget's TLS among them, common in pods. Go's TLS (kube-apiserver) serves them;
        OpenSSL 3 refuses SHA-1 signatures above security level 0. Clients that do name
        their algorithms still get SHA-256 or better; the ciphers stay OpenSSL's default."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if sha1_handshakes:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def pki_dir(data_dir: str | Path) -> Path:
    pki = Path(data_dir) / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    return pki


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_ca(pki: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinnace-ca")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(pki / "ca.key", _key_pem(key))
    _write_public(pki / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))


def _san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _cert_hosts(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def _new_server_cert(pki: Path, hosts: list[str]) -> None:
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(hosts)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki / "server.key", _key_pem(key))
    _write_public(pki / "server.crt", cert.public_bytes(serialization.Encoding.PEM))


def _server_cert_fits(pki: Path, hosts: list[str]) -> bool:
    cert_path, key_path = pki / "server.crt", pki / "server.key"
    if not cert_path.exists() or not key_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return False
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    return wanted <= _cert_hosts(cert)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def ensure_pki(data_dir: str | Path, *, hosts: list[str] | None = None) -> Pki:
    """Create the CA and serving certificate under `data_dir/pki` if missing; reissue the
    serving certificate when it lacks one of `hosts` or nears expiry. Idempotent."""
    pki = pki_dir(data_dir)
    if not (pki / "ca.crt").exists() or not (pki / "ca.key").exists():
        _new_ca(pki)
        for stale in ("server.crt", "server.key"):
            (pki / stale).unlink(missing_ok=True)
    wanted = list(dict.fromkeys([*DEFAULT_HOSTS, socket.gethostname(), *(hosts or [])]))
    if not _server_cert_fits(pki, wanted):
        _new_server_cert(pki, wanted)
    return Pki(
        dir=pki,
        ca_cert=pki / "ca.crt",
        ca_key=pki / "ca.key",
        server_cert=pki / "server.crt",
        server_key=pki / "server.key",
        ca_pem=(pki / "ca.crt").read_bytes(),
    )


def ensure_admin_token(data_dir: str | Path) -> str:
    """The cluster admin's bearer token from `data_dir/pki/admin.token`, created once."""
    return ensure_token(data_dir, "admin.token")


def ensure_kubelet_token(data_dir: str | Path) -> str:
    """The token the API server presents to node agents' servers (logs, exec,
    port-forward): `data_dir/pki/kubelet.token`, created once, readable by root alone."""
    return ensure_token(data_dir, "kubelet.token")


def ensure_service_account_key(data_dir: str | Path) -> bytes:
    """The key ServiceAccount tokens are signed with (PEM, RSA for RS256; see
    `api/service_account_tokens.py`): `data_dir/pki/service-account.key`, created once,
    readable by root alone (kube-apiserver's --service-account-signing-key-file)."""
    path = pki_dir(data_dir) / SERVICE_ACCOUNT_KEY
    if path.exists():
        return path.read_bytes()
    pem = generate_key_pem()
    _write_private(path, pem)
    return pem


def ensure_token(data_dir: str | Path, name: str) -> str:
    path = pki_dir(data_dir) / name
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    _write_private(path, (token + "\n").encode())
    return token


def kubeconfig(server_url: str, ca_pem: bytes, token: str, *,
               cluster_name: str = "pinnace") -> str:
    """A kubeconfig (YAML) for `server_url`, trusting `ca_pem`, authenticating with `token`."""
    user = f"{cluster_name}-admin"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster_name,
            "cluster": {
                "server": server_url,
                "certificate-authority-data": base64.b64encode(ca_pem).decode(),
            },
        }],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{
            "name": cluster_name,
            "context": {"cluster": cluster_name, "user": user, "namespace": "default"},
        }],
        "current-context": cluster_name,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)
