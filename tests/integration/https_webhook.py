"""A webhook server for tests: HTTPS on a free loopback port, with a CA of its own that
the test hands to the API server as a caBundle. The certificate names 127.0.0.1 and
`webhook.default.svc`."""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_cert(subject: str, key: Any, issuer_key: Any, issuer: x509.Name | None, *,
          ca: bool, sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(hours=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class HttpsServer:
    port: int
    ca_bundle: str  # base64 PEM, as a clientConfig carries it

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def serving_https(tmp_path: Path, handle: Callable[[web.Request], Awaitable[web.Response]]
                        ) -> AsyncIterator[HttpsServer]:
    """Serve every POST with `handle` until the block ends."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = make_cert("webhook-test-ca", ca_key, ca_key, None, ca=True)
    cert = make_cert("webhook", key, ca_key, ca.subject, ca=False, sans=[
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("webhook.default.svc")])
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield HttpsServer(port, base64.b64encode(
            ca.public_bytes(serialization.Encoding.PEM)).decode())
    finally:
        await runner.cleanup()
