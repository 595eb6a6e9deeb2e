"""Pulling images over the OCI distribution API from a real registry (Debian's docker-registry
on loopback), configured as the docker.io mirror the way k3s' registries.yaml does it.

The session registry (`local_registry`) serves the test images; tests that need other
content (a manifest list, corrupted blobs, basic auth) start their own LocalRegistry. What a
pull downloaded is read from the registry's access log.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from aiohttp import web

from pinnace.agent.images import (
    ImageNotFound,
    ImageNotFoundInRegistry,
    ImageStore,
    PullAccessDenied,
    PullError,
    credentials_from_pull_secrets,
    load_registries,
    pull_image,
)
from pinnace.agent.images.archive import host_architecture
from pinnace.agent.images.command import main as image_command
from tests.registry import OCI_INDEX, OCI_MANIFEST, LocalRegistry, available, digest_of

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or not available(),
    reason="needs root, apt-get (to build the test images) and docker-registry")

BUSYBOX = "busybox_1.28.tar"


def _node(tmp_path: Path, registry: LocalRegistry) -> tuple[ImageStore, Path]:
    data_dir = tmp_path / "node"
    registry.write_registries_yaml(data_dir)
    return ImageStore(data_dir), data_dir


def _blob_gets(registry: LocalRegistry, repository: str) -> list[str]:
    return [p for m, p, _ in registry.requests() if m == "GET"
            and p.startswith(f"/v2/{repository}/blobs/")]


async def _pull(store: ImageStore, data_dir: Path, ref: str, **kwargs):
    return await pull_image(store, ref, registries=load_registries(data_dir), **kwargs)


# ------------------------------------------------------------ through the session mirror


async def test_pull_through_docker_io_mirror_matches_the_imported_archive(
        tmp_path: Path, local_registry: LocalRegistry, test_images: Path) -> None:
    store, data_dir = _node(tmp_path, local_registry)
    pulled = await _pull(store, data_dir, "busybox:1.28")
    imported = ImageStore(tmp_path / "imported").import_archive(test_images / BUSYBOX)[0]

    assert (pulled.id, pulled.digest) == (imported.id, imported.digest)
    assert pulled.names == ["docker.io/library/busybox:1.28"]
    assert store.resolve("busybox:1.28") == pulled
    assert store.resolve("docker.io/library/busybox:1.28@" + pulled.digest).id == pulled.id
    assert pulled.cmd == ["sh"]
    (layer,) = store.unpacked_layers("busybox:1.28")
    assert (layer / "bin" / "busybox").is_file()


async def test_pull_by_digest(tmp_path: Path, local_registry: LocalRegistry,
                              test_images: Path) -> None:
    digest = ImageStore(tmp_path / "imported").import_archive(test_images / BUSYBOX)[0].digest
    store, data_dir = _node(tmp_path, local_registry)

    pulled = await _pull(store, data_dir, f"busybox@{digest}")

    assert pulled.digest == digest
    assert pulled.names == [f"docker.io/library/busybox@{digest}"]
    assert store.resolve(f"busybox@{digest}").digest == digest
    assert store.unpacked_layers(f"docker.io/library/busybox@{digest}")


async def test_second_pull_downloads_no_blob(tmp_path: Path,
                                             local_registry: LocalRegistry) -> None:
    store, data_dir = _node(tmp_path, local_registry)
    before = len(_blob_gets(local_registry, "library/nginx"))
    first = await _pull(store, data_dir, "nginx:1.19")
    fetched = len(_blob_gets(local_registry, "library/nginx")) - before
    assert fetched == 1 + len(first.layers)  # config and layers, once each

    second = await _pull(store, data_dir, "nginx:1.19")

    assert second == first
    assert len(_blob_gets(local_registry, "library/nginx")) - before == fetched


async def test_concurrent_pulls_of_one_image_share_the_download(
        tmp_path: Path, local_registry: LocalRegistry) -> None:
    store, data_dir = _node(tmp_path, local_registry)
    before = len(_blob_gets(local_registry, "library/perl"))

    results = await asyncio.gather(*(_pull(store, data_dir, "perl:5.34.0") for _ in range(4)))

    assert len({r.digest for r in results}) == 1
    assert len(_blob_gets(local_registry, "library/perl")) - before == 1 + len(
        results[0].layers)


async def test_image_missing_from_the_registry_is_not_found(
        tmp_path: Path, local_registry: LocalRegistry) -> None:
    store, data_dir = _node(tmp_path, local_registry)

    with pytest.raises(ImageNotFoundInRegistry) as e:
        await _pull(store, data_dir, "busybox:no-such-tag")

    assert str(e.value) == (
        'failed to pull and unpack image "docker.io/library/busybox:no-such-tag": failed to '
        'resolve reference "docker.io/library/busybox:no-such-tag": '
        "docker.io/library/busybox:no-such-tag: not found")
    with pytest.raises(ImageNotFound):
        store.resolve("busybox:no-such-tag")


async def test_dead_mirror_falls_back_to_the_next_endpoint(
        tmp_path: Path, local_registry: LocalRegistry) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    dead = LocalRegistry(tmp_path / "dead")
    dead.start()
    dead_url = dead.url
    dead.stop()  # its port now refuses connections
    (data_dir / "registries.yaml").write_text(
        f'mirrors:\n  docker.io:\n    endpoint: ["{dead_url}", "{local_registry.url}"]\n')

    pulled = await _pull(ImageStore(data_dir), data_dir, "busybox:1.28")

    assert pulled.names == ["docker.io/library/busybox:1.28"]


async def test_unreachable_registry_says_so(tmp_path: Path) -> None:
    dead = LocalRegistry(tmp_path / "dead")
    dead.start()
    address = dead.address
    dead.stop()
    with pytest.raises(PullError) as e:
        await pull_image(ImageStore(tmp_path), f"{address}/library/busybox:1.28",
                         registries=load_registries(tmp_path))
    assert "failed to do request" in str(e.value)
    assert not isinstance(e.value, ImageNotFoundInRegistry)


def test_pull_command_prints_the_image(tmp_path: Path, local_registry: LocalRegistry,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    store, data_dir = _node(tmp_path, local_registry)

    assert image_command(["pull", "--data-dir", str(data_dir), "busybox:1.28"]) == 0

    image = store.resolve("busybox:1.28")
    assert capsys.readouterr().out == (f"pulled docker.io/library/busybox:1.28: id {image.id}, "
                                       f"digest {image.digest}\n")
    assert image_command(["pull", "--data-dir", str(data_dir), "busybox:nope"]) == 1
    assert "busybox:nope: not found" in capsys.readouterr().err


# ------------------------------------------------------------ registries of their own


@pytest.fixture
def scratch(tmp_path: Path, test_images: Path):
    """A registry of this test's own, holding library/busybox:1.28."""
    with LocalRegistry(tmp_path / "scratch") as registry:
        registry.push_archive(test_images / BUSYBOX, "library/busybox", "1.28")
        yield registry


def _blob_file(registry: LocalRegistry, digest: str) -> Path:
    hex_ = digest.removeprefix("sha256:")
    return (registry.dir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
            / hex_[:2] / hex_ / "data")


async def test_manifest_list_picks_the_platform(tmp_path: Path, scratch: LocalRegistry) -> None:
    store, data_dir = _node(tmp_path, scratch)
    native = await _pull(store, data_dir, "busybox:1.28")
    # a second platform's image: the same layer under a config saying another architecture
    other_arch = "s390x" if host_architecture() != "s390x" else "amd64"
    manifest = json.loads(_blob_file(scratch, native.digest).read_bytes())
    config = json.loads(_blob_file(scratch, native.id).read_bytes())
    config["architecture"] = other_arch
    config_bytes = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "digest": digest_of(config_bytes),
                          "size": len(config_bytes)}
    other = json.dumps(manifest).encode()
    scratch.push_blob("library/busybox", config_bytes)
    scratch.push_manifest("library/busybox", digest_of(other), other, OCI_MANIFEST)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(other), "size": len(other),
         "platform": {"os": "linux", "architecture": other_arch}},
        {"mediaType": OCI_MANIFEST, "digest": native.digest,
         "size": _blob_file(scratch, native.digest).stat().st_size,
         "platform": {"os": "linux", "architecture": host_architecture()}},
    ]}).encode()
    index_digest = scratch.push_manifest("library/busybox", "multi", index, OCI_INDEX)

    mine = await _pull(store, data_dir, "busybox:multi")
    theirs = await _pull(ImageStore(tmp_path / "other"), data_dir, "busybox:multi",
                         platform=("linux", other_arch))
    by_index = await _pull(ImageStore(tmp_path / "third"), data_dir,
                           f"busybox@{index_digest}")

    assert (mine.digest, mine.id) == (native.digest, native.id)
    assert theirs.digest == digest_of(other) and theirs.architecture == other_arch
    assert by_index.digest == native.digest
    assert ImageStore(tmp_path / "third").resolve(f"busybox@{index_digest}").id == native.id
    with pytest.raises(PullError, match="no match for platform linux/riscv64"):
        await _pull(store, data_dir, "busybox:multi", platform=("linux", "riscv64"))


async def test_corrupted_layer_is_refused(tmp_path: Path, scratch: LocalRegistry,
                                          test_images: Path) -> None:
    image = ImageStore(tmp_path / "imported").import_archive(test_images / BUSYBOX)[0]
    layer = image.layers[0].digest
    blob = _blob_file(scratch, layer)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    blob.write_bytes(bytes(data))
    store, data_dir = _node(tmp_path, scratch)

    with pytest.raises(PullError, match=f"unexpected commit digest .*, expected {layer}"):
        await _pull(store, data_dir, "busybox:1.28")

    with pytest.raises(ImageNotFound):
        store.resolve("busybox:1.28")
    assert not store.has_blob(layer)


async def test_manifest_not_matching_its_digest_is_refused(
        tmp_path: Path, scratch: LocalRegistry, test_images: Path) -> None:
    digest = ImageStore(tmp_path / "imported").import_archive(test_images / BUSYBOX)[0].digest
    blob = _blob_file(scratch, digest)
    blob.write_bytes(blob.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    store, data_dir = _node(tmp_path, scratch)

    with pytest.raises(PullError, match=f"not the requested {digest}"):
        await _pull(store, data_dir, f"busybox@{digest}")
    # by tag, the registry's Docker-Content-Digest header no longer matches either
    with pytest.raises(PullError, match="failed precondition"):
        await _pull(store, data_dir, "busybox:1.28")
    assert store.list() == []


async def test_basic_auth(tmp_path: Path, test_images: Path) -> None:
    with LocalRegistry(tmp_path / "auth", users={"alice": "s3cret"}) as registry:
        registry.push_archive(test_images / BUSYBOX, "library/busybox", "1.28")
        ref = f"{registry.address}/library/busybox:1.28"
        data_dir = tmp_path / "node"
        data_dir.mkdir()

        with pytest.raises(PullAccessDenied, match="pull access denied"):
            await pull_image(ImageStore(data_dir), ref, registries=load_registries(data_dir))

        wrong = _pull_secret(registry.address, "alice", "wrong")
        right = _pull_secret(registry.address, "alice", "s3cret")
        with pytest.raises(PullAccessDenied):
            await pull_image(ImageStore(data_dir), ref, registries=load_registries(data_dir),
                             credentials=credentials_from_pull_secrets([wrong]))
        # every matching secret is tried in turn, as the kubelet does
        pulled = await pull_image(ImageStore(data_dir), ref,
                                  registries=load_registries(data_dir),
                                  credentials=credentials_from_pull_secrets([wrong, right]))
        assert pulled.names == [ref]

        # or the credentials of registries.yaml's `configs`, for the docker.io mirror
        registry.write_registries_yaml(tmp_path / "yaml-node")
        store = ImageStore(tmp_path / "yaml-node")
        assert (await _pull(store, tmp_path / "yaml-node", "busybox:1.28")).id == pulled.id


def _pull_secret(server: str, username: str, password: str) -> dict:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {server: {"username": username, "password": password, "auth": auth}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred", "namespace": "default"},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode())
                     .decode()}}


# ------------------------------------------------------------ Docker Hub's token flow


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenService:
    """The token endpoint of Docker Hub's flow (auth.docker.io/token), on loopback: answers
    GET ?service=&scope= with a JWT the registry trusts (RS256, the signing certificate in
    the x5c header and in the registry's rootcertbundle). With `users`, basic auth is needed
    for a token."""

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users or {}
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinnace test tokens")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(1)
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.bundle = directory / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.realm = ""

    def token(self, service: str, scope: str, subject: str) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access = [{"type": kind, "name": name, "actions": actions.split(",")}]
        claims = {"iss": "pinnace-test-issuer", "sub": subject, "aud": service,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                  "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        subject = ""
        if self.users:
            header = request.headers.get("Authorization", "")
            user, _, password = base64.b64decode(header.removeprefix("Basic ") or "=") \
                .decode().partition(":") if header.startswith("Basic ") else ("", "", "")
            if self.users.get(user) != password or not user:
                return web.json_response({"details": "incorrect username or password"},
                                         status=401)
            subject = user
        token = self.token(request.query.get("service", ""), request.query.get("scope", ""),
                           subject)
        return web.json_response({"token": token, "expires_in": 300})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.realm = f"http://127.0.0.1:{port}/token"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.mark.parametrize("private", [False, True], ids=["anonymous-token", "with-credentials"])
async def test_bearer_token_flow(tmp_path: Path, test_images: Path, private: bool) -> None:
    users = {"alice": "s3cret"} if private else None
    tokens = _TokenService(tmp_path, users=users)
    await tokens.start()
    registry = LocalRegistry(tmp_path / "registry")
    try:
        registry.start()  # content first, without auth; then again asking for tokens
        registry.push_archive(test_images / BUSYBOX, "library/busybox", "1.28")
        registry.stop()
        registry.token = {"realm": tokens.realm, "service": "pinnace-registry",
                          "issuer": "pinnace-test-issuer",
                          "rootcertbundle": str(tokens.bundle)}
        registry.start()
        data_dir = tmp_path / "node"
        yaml = registry.registries_yaml()
        if private:
            yaml += (f'configs:\n  "{registry.address}":\n'
                     '    auth: {username: alice, password: s3cret}\n')
        data_dir.mkdir()
        (data_dir / "registries.yaml").write_text(yaml)

        pulled = await _pull(ImageStore(data_dir), data_dir, "busybox:1.28")

        assert pulled.names == ["docker.io/library/busybox:1.28"]
        assert tokens.requests[0] == {"service": "pinnace-registry",
                                      "scope": "repository:library/busybox:pull"}
        statuses = [s for m, p, s in registry.requests() if m == "GET" and "/manifests/" in p]
        assert statuses == [401, 200]  # asked once, then served with the token
        if private:
            (data_dir / "registries.yaml").write_text(registry.registries_yaml())
            with pytest.raises(PullAccessDenied, match="failed to fetch anonymous token"):
                await _pull(ImageStore(tmp_path / "other"), data_dir, "busybox:1.28")
    finally:
        registry.stop()
        await tokens.stop()
