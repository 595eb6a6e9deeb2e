"""EncryptionConfiguration parsing, the providers' stored-value format, and the encrypting
store over a real SQLite file: reads see plaintext, the file holds ciphertext."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator

import pytest
import yaml

from pinnace.apiserver.encryption import (
    DecryptionError,
    EncryptedStore,
    EncryptionConfig,
    EncryptionConfigError,
    rewrite_stale,
)
from pinnace.store import SqliteStore, open_sqlite

SECRET = "/registry/core/secrets/default/db"
KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()


def config(resources: list[str], *providers: dict) -> EncryptionConfig:
    return EncryptionConfig.parse(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": resources, "providers": list(providers)}]}))


def aesgcm(*keys: tuple[str, str]) -> dict:
    return {"aesgcm": {"keys": [{"name": n, "secret": s} for n, s in keys]}}


def aescbc(*keys: tuple[str, str]) -> dict:
    return {"aescbc": {"keys": [{"name": n, "secret": s} for n, s in keys]}}


@pytest.fixture
async def raw(tmp_path) -> AsyncIterator[SqliteStore]:
    s = await open_sqlite(str(tmp_path / "state.db"), compact_interval=3600)
    yield s
    await s.close()


def test_stored_value_carries_kubernetes_prefix_and_is_bound_to_its_key() -> None:
    t = config(["secrets"], aesgcm(("k1", KEY_A))).for_key(SECRET)
    assert t is not None
    sealed = t.write(SECRET, b'{"data":"x"}')
    assert sealed.startswith(b"k8s:enc:aesgcm:v1:k1:") and b'"data"' not in sealed
    assert t.read(SECRET, sealed) == b'{"data":"x"}'
    # the storage key is authenticated: a value copied under another name does not open
    with pytest.raises(DecryptionError):
        t.read("/registry/core/secrets/default/other", sealed)


def test_older_keys_and_providers_read_the_first_writes() -> None:
    old = config(["secrets"], aescbc(("old", KEY_B))).for_key(SECRET)
    new = config(["secrets"], aesgcm(("k2", KEY_A)), aescbc(("old", KEY_B))).for_key(SECRET)
    assert old is not None and new is not None
    sealed = old.write(SECRET, b"payload")
    assert sealed.startswith(b"k8s:enc:aescbc:v1:old:")
    assert new.read(SECRET, sealed) == b"payload" and new.stale(sealed)
    assert not new.stale(new.write(SECRET, b"payload"))
    # plaintext is readable only with identity among the providers
    with pytest.raises(DecryptionError):
        new.read(SECRET, b"{}")
    assert config(["secrets"], aesgcm(("k", KEY_A)), {"identity": {}}).for_key(
        SECRET).read(SECRET, b"{}") == b"{}"  # type: ignore[union-attr]


def test_resources_by_name_group_and_wildcard() -> None:
    c = config(["configmaps", "*.apps", "widgets.example.com"], aesgcm(("k", KEY_A)))
    assert c.for_key("/registry/core/configmaps/ns/a") is not None
    assert c.for_key("/registry/apps/deployments/ns/a") is not None
    assert c.for_key("/registry/example.com/widgets/ns/a") is not None
    assert c.for_key(SECRET) is None
    everything = config(["*.*"], aesgcm(("k", KEY_A)))
    assert everything.for_key("/registry/core/pods/ns/a") is not None
    core = config(["*."], aesgcm(("k", KEY_A)))
    assert core.for_key("/registry/core/pods/ns/a") is not None
    assert core.for_key("/registry/apps/deployments/ns/a") is None
    # identity first: stored as they are
    assert config(["secrets"], {"identity": {}}, aesgcm(("k", KEY_A))).for_key(
        SECRET).write(SECRET, b"{}") == b"{}"  # type: ignore[union-attr]


@pytest.mark.parametrize(("doc", "message"), [
    ({"apiVersion": "v1"}, "not an apiserver.config.k8s.io/v1"),
    ({"resources": [{"resources": ["secrets"], "providers": [
        {"aesgcm": {"keys": [{"name": "k", "secret": "c2hvcnQ="}]}}]}]},
     "resources[0].providers[0].aesgcm.keys[0].secret: 5 bytes"),
    ({"resources": [{"resources": ["secrets"], "providers": [
        {"aesgcm": {"keys": [{"name": "a:b", "secret": KEY_A}]}}]}]},
     "keys[0].name: a name without ':'"),
    ({"resources": [{"resources": ["secrets"], "providers": [{"kms": {}}]}]},
     "unsupported provider 'kms'"),
    ({"resources": [{"resources": ["secrets"], "providers": []}]},
     "resources[0].providers: Required value"),
])
def test_bad_configuration_names_the_field(doc: dict, message: str) -> None:
    full = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            **doc}
    with pytest.raises(EncryptionConfigError, match=re.escape(message)):
        EncryptionConfig.parse(yaml.safe_dump(full))


async def test_store_reads_plaintext_and_writes_ciphertext(raw: SqliteStore) -> None:
    store = EncryptedStore(raw, config(["secrets"], aesgcm(("k", KEY_A)),
                                       {"identity": {}}))
    events = store.watch("/registry/core/secrets/", 0)
    kv = await store.create(SECRET, b'{"v":1}')
    assert kv.value == b'{"v":1}'
    assert (await raw.get(SECRET)).value.startswith(b"k8s:enc:aesgcm:v1:k:")  # type: ignore
    assert (await store.get(SECRET)).value == b'{"v":1}'  # type: ignore[union-attr]
    await store.update(SECRET, b'{"v":2}', kv.mod_revision)
    assert [kv.value for kv in (await store.range("/registry/core/secrets/"))[0]] == \
        [b'{"v":2}']
    first, second = await events.__anext__(), await events.__anext__()
    assert first.kv.value == b'{"v":1}' and second.prev.value == b'{"v":1}'  # type: ignore
    assert second.kv.value == b'{"v":2}'
    deleted = await store.delete(SECRET)
    assert deleted.value == b'{"v":2}'
    # other kinds pass through untouched
    await store.create("/registry/core/configmaps/default/c", b"{}")
    assert (await raw.get("/registry/core/configmaps/default/c")).value == b"{}"  # type: ignore


async def test_rewrite_stale_encrypts_plaintext_and_moves_old_keys(raw: SqliteStore) -> None:
    await raw.create(SECRET, b'{"plain":true}')
    await raw.create("/registry/core/configmaps/default/c", b"{}")
    c = config(["secrets"], aesgcm(("k", KEY_A)), {"identity": {}})
    assert await rewrite_stale(raw, c, ["/registry/core/secrets/"]) == 1
    assert await rewrite_stale(raw, c, ["/registry/core/secrets/"]) == 0
    await raw.scrub()
    assert (await raw.get(SECRET)).value.startswith(b"k8s:enc:aesgcm:v1:k:")  # type: ignore
    rotated = config(["secrets"], aesgcm(("k2", KEY_A), ("k", KEY_A)))
    assert await rewrite_stale(raw, rotated, ["/registry/core/secrets/"]) == 1
    only_new = EncryptedStore(raw, config(["secrets"], aesgcm(("k2", KEY_A))))
    assert (await only_new.get(SECRET)).value == b'{"plain":true}'  # type: ignore
