"""Secrets encrypted at rest, through the `pinnace` command and the real kubectl: the bytes
of state.db and its WAL never hold a Secret's value; kubectl sees it as before; key
rotation retires the old key; a cluster stored in plaintext is encrypted on upgrade."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.cluster import Cluster

VALUE = "s3cr3t-hunter2-7f1c9a"
CONFIG_VALUE = "cfg-plain-4b2e8d"


def on_disk(data_dir: Path) -> bytes:
    """Everything SQLite keeps of the store: the file and its WAL."""
    return b"".join(p.read_bytes() for p in (data_dir / "state.db",
                                            data_dir / "state.db-wal") if p.exists())


def holds(data: bytes, value: str) -> bool:
    return value.encode() in data or base64.b64encode(value.encode()) in data


def secret_value(c: Cluster, name: str, key: str = "password") -> str:
    out = yaml.safe_load(c.kubectl("get", "secret", name, "-o", "yaml").stdout)
    return base64.b64decode(out["data"][key]).decode()


def pinnace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pinnace.cli", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(data_dir=tmp_path / "data", home=tmp_path / "home")
    c.home.mkdir()
    try:
        yield c
    finally:
        c.stop()


def test_secret_is_ciphertext_on_disk_and_rotation_retires_the_key(cluster: Cluster) -> None:
    c = cluster
    c.start()
    config_path = c.data_dir / "pki" / "encryption-config.yaml"
    assert config_path.stat().st_mode & 0o777 == 0o600
    c.kubectl("create", "secret", "generic", "db", f"--from-literal=password={VALUE}")
    c.kubectl("create", "configmap", "plain", f"--from-literal=k={CONFIG_VALUE}")
    assert secret_value(c, "db") == VALUE
    assert "db" in c.kubectl("get", "secrets").stdout  # the Table printer
    data = on_disk(c.data_dir)
    assert not holds(data, VALUE)
    assert b"k8s:enc:aesgcm:v1:key1:" in data
    assert CONFIG_VALUE.encode() in data  # ConfigMaps are not encrypted by default

    refused = pinnace("secrets", "rotate", "--data-dir", str(c.data_dir))
    assert refused.returncode == 1 and "stop it first" in refused.stderr

    c.stop()
    rotated = pinnace("secrets", "rotate", "--data-dir", str(c.data_dir))
    assert rotated.returncode == 0, rotated.stderr
    assert "under key2; retired key1" in rotated.stdout
    keys = yaml.safe_load(config_path.read_text())["resources"][0]["providers"][0]
    assert [k["name"] for k in keys["aesgcm"]["keys"]] == ["key2"]  # key1 is gone
    data = on_disk(c.data_dir)
    assert b"k8s:enc:aesgcm:v1:key1:" not in data
    assert b"k8s:enc:aesgcm:v1:key2:" in data

    c.restart()
    assert secret_value(c, "db") == VALUE
    c.kubectl("create", "secret", "generic", "later", f"--from-literal=password={VALUE}")
    assert secret_value(c, "later") == VALUE
    assert not holds(on_disk(c.data_dir), VALUE)


def test_plaintext_store_is_encrypted_on_upgrade(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    plain = tmp_path / "identity.yaml"
    plain.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]}]}))
    # a cluster from before encryption: its Secrets and ConfigMaps stored as they are
    c.start(extra=("--encryption-provider-config", str(plain)))
    c.kubectl("create", "secret", "generic", "db", f"--from-literal=password={VALUE}")
    c.kubectl("create", "configmap", "settings", f"--from-literal=k={CONFIG_VALUE}")
    c.stop()
    assert holds(on_disk(c.data_dir), VALUE)

    # upgraded, with a configuration of one's own that covers ConfigMaps too
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets", "configmaps"], "providers": [
            {"aesgcm": {"keys": [{"name": "mine", "secret": base64.b64encode(
                b"k" * 32).decode()}]}},
            {"identity": {}}]}]}))
    c.start(extra=("--encryption-provider-config", str(own)))
    data = on_disk(c.data_dir)
    assert not holds(data, VALUE) and CONFIG_VALUE.encode() not in data
    assert b"k8s:enc:aesgcm:v1:mine:" in data
    assert secret_value(c, "db") == VALUE
    cm = yaml.safe_load(c.kubectl("get", "configmap", "settings", "-o", "yaml").stdout)
    assert cm["data"] == {"k": CONFIG_VALUE}


def test_a_broken_configuration_is_refused_with_its_reason(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"aesgcm": {"keys": [{"name": "short", "secret": "c2hvcnQ="}]}}]}]}))
    result = pinnace("server", "--data-dir", str(cluster.data_dir), "--port", "0",
                     "--encryption-provider-config", str(bad))
    assert result.returncode == 1
    assert "resources[0].providers[0].aesgcm.keys[0].secret: 5 bytes" in result.stderr


def test_data_under_a_removed_key_stops_the_start_with_its_reason(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    c = cluster
    c.start()
    c.kubectl("create", "secret", "generic", "db", f"--from-literal=password={VALUE}")
    c.stop()
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"aesgcm": {"keys": [{"name": "other", "secret": base64.b64encode(
                b"o" * 32).decode()}]}}]}]}))
    result = pinnace("server", "--data-dir", str(c.data_dir), "--port", "0",
                     "--encryption-provider-config", str(other))
    assert result.returncode == 1
    assert "cannot read the store: /registry/core/secrets/default/db" in result.stderr
    assert "stored under k8s:enc:aesgcm:v1:key1, which no configured provider has" in \
        result.stderr
