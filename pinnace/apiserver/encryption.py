"""Encryption at rest: Kubernetes' `EncryptionConfiguration`, applied between the registry
and the store.

The file format is kube-apiserver's `--encryption-provider-config`
(apiserver.config.k8s.io/v1): a list of `resources` entries, each naming resources
(`secrets`, `configmaps`, `deployments.apps`, `widgets.example.com`, `*.apps`, `*.` for
the core group, `*.*` for everything) and an ordered list of providers. The first
provider encrypts every write; a read is decrypted by the provider whose stored-value
prefix the value carries (`k8s:enc:aesgcm:v1:<key name>:`, `k8s:enc:aescbc:v1:…`,
`k8s:enc:secretbox:v1:…`), and a value with no such prefix is plaintext, readable only
when `identity` is among the providers (how a cluster written before encryption was
turned on keeps working until it is rewritten).

pinnace encrypts Secrets by default with **aesgcm** (a 256-bit key generated into
`DATA_DIR/pki/encryption-config.yaml`, mode 0600, at first start): AES-GCM is in
`cryptography`, already a dependency, and runs on AES-NI at memory speed, while
secretbox would need PyNaCl (still accepted in a user's file when PyNaCl is installed).
Kubernetes' own advice on aesgcm is that random 96-bit nonces make one key safe for a
bounded number of writes (NIST SP 800-38D: at most 2^32 per key; Kubernetes' docs ask
for rotation every 200k writes, far inside that): `pinnace secrets rotate`
(`key_rotation.py`) adds a new key, rewrites every Secret under it and retires the old
key. The generated key is 256 bits; a user's aesgcm key may be 16, 24 or 32 bytes,
an aescbc or secretbox key 32, as in Kubernetes. As Kubernetes does, the storage key
(`/registry/core/secrets/<ns>/<name>`) is AES-GCM's additional authenticated data, so a
ciphertext moved to another key does not decrypt.

`EncryptedStore` wraps the store (which stays a byte store): values of encrypted
resources are sealed on create/update and opened on get/range/watch/delete, so the
watch caches, list, watch and the Table printer see plaintext as before. A range or
watch over a resource that is not encrypted returns the inner store's answer untouched:
the other kinds pay one dict lookup per write. `rewrite_stale` rewrites what is not
under the first provider's first key (plaintext from before, or an older key): the
server runs it at start, which encrypts an existing cluster on upgrade.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pinnace.api.kinds import Registry
from pinnace.store.interface import (
    Event,
    KeyNotFoundError,
    KeyValue,
    RevisionConflictError,
    Store,
    StoreError,
)

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
DEFAULT_CONFIG = "encryption-config.yaml"  # under DATA_DIR/pki
ENCRYPTED_PREFIX = b"k8s:enc:"


class EncryptionConfigError(ValueError):
    """The configuration file is not a valid EncryptionConfiguration."""


class DecryptionError(StoreError):
    """A stored value no configured provider can open (its key was removed, or it was
    tampered with)."""


class Provider(Protocol):
    prefix: bytes

    def seal(self, key: str, data: bytes) -> bytes: ...

    def open(self, key: str, data: bytes) -> bytes: ...


class _AesGcm:
    def __init__(self, name: str, secret: bytes) -> None:
        self.prefix = f"k8s:enc:aesgcm:v1:{name}:".encode()
        self._aead = AESGCM(secret)

    def seal(self, key: str, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return self.prefix + nonce + self._aead.encrypt(nonce, data, key.encode())

    def open(self, key: str, data: bytes) -> bytes:
        body = data[len(self.prefix):]
        return self._aead.decrypt(body[:12], body[12:], key.encode())


class _AesCbc:
    """Kubernetes' aescbc: a random IV, PKCS#7 padding, no authentication (it is the
    weakest of the local providers; read support for clusters configured with it)."""

    def __init__(self, name: str, secret: bytes) -> None:
        self.prefix = f"k8s:enc:aescbc:v1:{name}:".encode()
        self._secret = secret

    def seal(self, key: str, data: bytes) -> bytes:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        enc = Cipher(algorithms.AES(self._secret), modes.CBC(iv)).encryptor()
        padded = padder.update(data) + padder.finalize()
        return self.prefix + iv + enc.update(padded) + enc.finalize()

    def open(self, key: str, data: bytes) -> bytes:
        body = data[len(self.prefix):]
        dec = Cipher(algorithms.AES(self._secret), modes.CBC(body[:16])).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        padded = dec.update(body[16:]) + dec.finalize()
        return unpadder.update(padded) + unpadder.finalize()


class _SecretBox:
    def __init__(self, name: str, secret: bytes) -> None:
        try:
            from nacl.secret import SecretBox  # optional: only for users' own files
        except ImportError:
            raise EncryptionConfigError(
                "the secretbox provider needs PyNaCl (pip install pynacl); pinnace's "
                "default provider is aesgcm") from None
        self.prefix = f"k8s:enc:secretbox:v1:{name}:".encode()
        self._box = SecretBox(secret)

    def seal(self, key: str, data: bytes) -> bytes:
        return self.prefix + bytes(self._box.encrypt(data))

    def open(self, key: str, data: bytes) -> bytes:
        return bytes(self._box.decrypt(data[len(self.prefix):]))


_CIPHERS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "aesgcm": (_AesGcm, (16, 24, 32)), "aescbc": (_AesCbc, (32,)),
    "secretbox": (_SecretBox, (32,))}


@dataclass
class Transformer:
    """One `resources` entry's providers: `ciphers` in order (the first seals), and
    whether plaintext (identity) is readable — and written, when identity is first."""
    ciphers: list[Provider]
    identity_reads: bool
    identity_writes: bool

    def write(self, key: str, value: bytes) -> bytes:
        return value if self.identity_writes else self.ciphers[0].seal(key, value)

    def read(self, key: str, value: bytes) -> bytes:
        if value.startswith(ENCRYPTED_PREFIX):
            for c in self.ciphers:
                if value.startswith(c.prefix):
                    try:
                        return c.open(key, value)
                    except Exception:
                        raise DecryptionError(f"{key}: the value does not decrypt with "
                                              f"{c.prefix.decode()}") from None
            sealed_by = b":".join(value[:64].split(b":", 5)[:5]).decode(errors="replace")
            raise DecryptionError(f"{key}: stored under {sealed_by}, which no configured "
                                  "provider has")
        if not self.identity_reads:
            raise DecryptionError(f"{key}: stored unencrypted and identity is not a "
                                  "provider")
        return value

    def stale(self, value: bytes) -> bool:
        """value is not stored the way a write would store it now."""
        if self.identity_writes:
            return value.startswith(ENCRYPTED_PREFIX)
        return not value.startswith(self.ciphers[0].prefix)


def _provider(entry: Any, where: str) -> tuple[str, list[Provider]]:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise EncryptionConfigError(f"{where}: exactly one provider type per entry")
    (kind, spec), = entry.items()
    if kind == "identity":
        return kind, []
    if kind not in _CIPHERS:
        raise EncryptionConfigError(f"{where}: unsupported provider {kind!r} (supported: "
                                    f"{', '.join([*_CIPHERS, 'identity'])})")
    factory, sizes = _CIPHERS[kind]
    keys = (spec or {}).get("keys") if isinstance(spec, dict) else None
    if not keys:
        raise EncryptionConfigError(f"{where}.{kind}.keys: Required value")
    out: list[Provider] = []
    for j, k in enumerate(keys):
        at = f"{where}.{kind}.keys[{j}]"
        if not isinstance(k, dict) or not k.get("name") or ":" in str(k["name"]):
            raise EncryptionConfigError(f"{at}.name: a name without ':' is required")
        try:
            secret = base64.b64decode(str(k.get("secret", "")), validate=True)
        except ValueError:
            raise EncryptionConfigError(f"{at}.secret: not base64") from None
        if len(secret) not in sizes:
            raise EncryptionConfigError(f"{at}.secret: {len(secret)} bytes; {kind} takes "
                                        f"{' or '.join(map(str, sizes))}")
        out.append(factory(str(k["name"]), secret))
    return kind, out


class EncryptionConfig:
    """A parsed EncryptionConfiguration: which transformer a storage key is under."""

    def __init__(self, entries: list[tuple[list[str], Transformer]]) -> None:
        self.entries = entries
        self._by_resource: dict[str, Transformer | None] = {}

    @classmethod
    def parse(cls, text: str) -> EncryptionConfig:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise EncryptionConfigError(f"not YAML: {e}") from None
        if not isinstance(doc, dict) or doc.get("kind") != KIND or \
                doc.get("apiVersion") != API_VERSION:
            raise EncryptionConfigError(f"not an {API_VERSION} {KIND}")
        entries = []
        for i, res in enumerate(doc.get("resources") or []):
            where = f"resources[{i}]"
            names = res.get("resources") if isinstance(res, dict) else None
            if not names or not all(isinstance(n, str) for n in names):
                raise EncryptionConfigError(f"{where}.resources: Required value")
            ciphers: list[Provider] = []
            kinds = []
            for j, p in enumerate(res.get("providers") or []):
                kind, provs = _provider(p, f"{where}.providers[{j}]")
                kinds.append(kind)
                ciphers += provs
            if not kinds:
                raise EncryptionConfigError(f"{where}.providers: Required value")
            entries.append(([n.lower() for n in names], Transformer(
                ciphers, identity_reads="identity" in kinds,
                identity_writes=kinds[0] == "identity")))
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> EncryptionConfig:
        try:
            return cls.parse(path.read_text())
        except OSError as e:
            raise EncryptionConfigError(f"{path}: {e.strerror}") from None
        except EncryptionConfigError as e:
            raise EncryptionConfigError(f"{path}: {e}") from None

    def for_resource(self, storage_group: str, plural: str) -> Transformer | None:
        """The transformer of a resource (the first entry naming it wins, as in
        Kubernetes), None when its values are stored as they are."""
        name = f"{plural}.{storage_group}" if storage_group != "core" else plural
        cached = self._by_resource.get(name, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        group = "" if storage_group == "core" else storage_group
        found = None
        for names, t in self.entries:
            if any(n in (name, f"*.{group}", "*.*") for n in names):
                found = None if t.identity_writes and not t.ciphers else t
                break
        self._by_resource[name] = found
        return found

    def for_key(self, key: str) -> Transformer | None:
        """`/registry/<storage group>/<plural>/…` → its transformer."""
        parts = key.split("/", 4)
        if len(parts) < 4 or parts[1] != "registry" or not parts[3]:
            return None
        return self.for_resource(parts[2], parts[3])

    def prefixes(self, kinds: Registry) -> list[str]:
        """The store prefixes of every known resource this configuration encrypts."""
        return sorted({rt.key_prefix() for rt in kinds
                       if self.for_key(rt.key_prefix()) is not None})


def generate_config(key_name: str = "key1") -> str:
    """A new configuration: Secrets under aesgcm with a fresh 256-bit key, plaintext
    still readable (identity) so a store from before encryption opens."""
    return yaml.safe_dump({
        "apiVersion": API_VERSION, "kind": KIND,
        "resources": [{"resources": ["secrets"], "providers": [
            {"aesgcm": {"keys": [{"name": key_name, "secret": base64.b64encode(
                os.urandom(32)).decode()}]}},
            {"identity": {}}]}]}, sort_keys=False)


def write_private(path: Path, text: str) -> None:
    """Replace path atomically with a file only its owner reads (it holds keys)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ensure_config(pki_dir: Path) -> Path:
    """The generated configuration under pki_dir, written at first start."""
    path = pki_dir / DEFAULT_CONFIG
    if not path.exists():
        write_private(path, generate_config())
    return path


def _kv(kv: KeyValue, value: bytes) -> KeyValue:
    return KeyValue(kv.key, value, kv.create_revision, kv.mod_revision)


class EncryptedStore:
    """A `Store` whose values of encrypted resources are ciphertext in `inner`."""

    def __init__(self, inner: Store, config: EncryptionConfig) -> None:
        self.inner = inner
        self.config = config

    @property
    def revision(self) -> int:
        return self.inner.revision

    @property
    def compacted_revision(self) -> int:
        return self.inner.compacted_revision

    def _open(self, kv: KeyValue | None) -> Any:
        if kv is None:
            return None
        t = self.config.for_key(kv.key)
        return kv if t is None else _kv(kv, t.read(kv.key, kv.value))

    def _plain_prefix(self, prefix: str) -> bool:
        """Every key under prefix belongs to one resource that is not encrypted."""
        return prefix.count("/") >= 4 and self.config.for_key(prefix) is None

    async def get(self, key: str) -> KeyValue | None:
        return self._open(await self.inner.get(key))

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        kvs, revision = await self.inner.range(prefix)
        if self._plain_prefix(prefix):
            return kvs, revision
        return [self._open(kv) for kv in kvs], revision

    async def create(self, key: str, value: bytes) -> KeyValue:
        t = self.config.for_key(key)
        kv = await self.inner.create(key, value if t is None else t.write(key, value))
        return kv if t is None else _kv(kv, value)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        t = self.config.for_key(key)
        try:
            kv = await self.inner.update(key, value if t is None else t.write(key, value),
                                         expected_revision)
        except RevisionConflictError as e:
            raise RevisionConflictError(self._open(e.current)) from None
        return kv if t is None else _kv(kv, value)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        try:
            return self._open(await self.inner.delete(key, expected_revision))
        except RevisionConflictError as e:
            raise RevisionConflictError(self._open(e.current)) from None

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        events = self.inner.watch(prefix, from_revision)
        if self._plain_prefix(prefix):
            return events
        return self._opened(events)

    async def _opened(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        async for ev in events:
            yield Event(ev.type, self._open(ev.kv), self._open(ev.prev))

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def close(self) -> None:
        await self.inner.close()


async def rewrite_stale(inner: Store, config: EncryptionConfig,
                        prefixes: Iterable[str]) -> int:
    """Rewrite every value under prefixes that is not stored as a write would store it
    now (plaintext, or sealed by a key that is not the first); returns how many. A value
    changed meanwhile was written the current way already: it is skipped."""
    count = 0
    for prefix in prefixes:
        kvs, _ = await inner.range(prefix)
        for kv in kvs:
            t = config.for_key(kv.key)
            if t is None or not t.stale(kv.value):
                continue
            value = t.write(kv.key, t.read(kv.key, kv.value))
            try:
                await inner.update(kv.key, value, kv.mod_revision)
            except (RevisionConflictError, KeyNotFoundError):
                continue
            count += 1
    return count
