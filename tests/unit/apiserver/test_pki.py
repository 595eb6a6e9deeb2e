"""The generated CA, serving certificate, admin token and kubeconfig."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import stat
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pinnace.apiserver import pki


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_creates_ca_and_serving_certificate(tmp_path: Path) -> None:
    bundle = pki.ensure_pki(tmp_path)
    assert bundle.dir == tmp_path / "pki"
    assert _mode(bundle.dir) == 0o700
    assert _mode(bundle.ca_key) == 0o600
    assert _mode(bundle.server_key) == 0o600
    ca = x509.load_pem_x509_certificate(bundle.ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3649
    server = x509.load_pem_x509_certificate(bundle.server_cert.read_bytes())
    assert server.issuer == ca.subject
    server.verify_directly_issued_by(ca)
    assert {"localhost", "127.0.0.1", "::1", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            socket.gethostname()} <= _sans(bundle.server_cert)


def test_reuses_existing_files(tmp_path: Path) -> None:
    first = pki.ensure_pki(tmp_path)
    server = first.server_cert.read_bytes()
    second = pki.ensure_pki(tmp_path)
    assert second.ca_pem == first.ca_pem
    assert second.server_cert.read_bytes() == server


def test_new_host_reissues_only_the_serving_certificate(tmp_path: Path) -> None:
    first = pki.ensure_pki(tmp_path)
    old_server = first.server_cert.read_bytes()
    second = pki.ensure_pki(tmp_path, hosts=["10.1.2.3", "api.example.test"])
    assert second.ca_pem == first.ca_pem
    assert second.server_cert.read_bytes() != old_server
    assert {"10.1.2.3", "api.example.test", "localhost"} <= _sans(second.server_cert)
    # asking again for names it already has changes nothing
    again = pki.ensure_pki(tmp_path, hosts=["api.example.test"])
    assert again.server_cert.read_bytes() == second.server_cert.read_bytes()


def test_admin_token_is_created_once_and_private(tmp_path: Path) -> None:
    token = pki.ensure_admin_token(tmp_path)
    assert len(token) >= 32
    assert pki.ensure_admin_token(tmp_path) == token
    path = tmp_path / "pki" / "admin.token"
    assert _mode(path) == 0o600
    assert path.read_text().strip() == token
    assert pki.ensure_admin_token(tmp_path / "other") != token


def test_kubeconfig_embeds_ca_server_and_token(tmp_path: Path) -> None:
    bundle = pki.ensure_pki(tmp_path)
    text = pki.kubeconfig("https://127.0.0.1:6443", bundle.ca_pem, "secret-token",
                          cluster_name="dev")
    config = yaml.safe_load(text)
    assert config["apiVersion"] == "v1" and config["kind"] == "Config"
    [cluster] = config["clusters"]
    assert cluster["name"] == "dev"
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == bundle.ca_pem
    [user] = config["users"]
    assert user["user"] == {"token": "secret-token"}
    [context] = config["contexts"]
    assert context["context"]["cluster"] == "dev"
    assert context["context"]["user"] == user["name"]
    assert config["current-context"] == context["name"]


async def test_tls_handshake_verifies_against_the_ca(tmp_path: Path) -> None:
    bundle = pki.ensure_pki(tmp_path)
    server_ctx = bundle.ssl_context()
    assert server_ctx.minimum_version >= ssl.TLSVersion.TLSv1_2

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cadata=bundle.ca_pem.decode())
    for host in ("localhost", "127.0.0.1"):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=host)
        assert await reader.read() == b"ok"
        writer.close()
    server.close()
    await server.wait_closed()
