"""`pinnace secrets rotate`: a new encryption key, every object rewritten under it, the
old key retired.

The command works on a stopped cluster, on its store directly. A running API server
holds its keys in memory and keeps writing with its first one: rotating under it would
either need every server to reload the file in step (Kubernetes' automatic reload, whose
multi-server ordering is the operator's job) or leave it writing under a key the command
is retiring. Stopping `pinnace up` first makes the ordering trivial, and the rotation of
a few thousand Secrets takes well under a second.

Each step leaves a configuration that can read everything stored, so a crash anywhere
is safe and the command can simply run again:

1. the new key is put first (the old ones stay after it, still readable);
2. every stale value (not under the new key) is rewritten, and the file scrubbed of the
   superseded rows (`SqliteStore.scrub`);
3. the old keys of that provider are dropped from the file.

With a configuration of one's own (`--encryption-provider-config FILE`), the same
command rotates FILE; Kubernetes' manual recipe (add a key first, restart, remove the
old one after the restart) works too, since every start rewrites stale values.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from pinnace.api.kinds import REGISTRY
from pinnace.apiserver import encryption, pki
from pinnace.store.sqlite import open_sqlite

_KEYED = ("aesgcm", "aescbc", "secretbox")


def _first_keys(doc: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The key lists of every entry's first provider (the ones writes use)."""
    out = []
    for res in doc.get("resources") or []:
        first = (res.get("providers") or [{}])[0]
        kind = next(iter(first), "")
        if kind in _KEYED:
            out.append(first[kind]["keys"])
    return out


def _next_name(keys: list[dict[str, Any]]) -> str:
    numbers = [int(k["name"][3:]) for k in keys
               if str(k.get("name", "")).startswith("key") and k["name"][3:].isdigit()]
    return f"key{max(numbers, default=0) + 1}"


def _secret_size(kind: str, keys: list[dict[str, Any]]) -> int:
    try:
        return len(base64.b64decode(keys[0]["secret"])) if kind != "secretbox" else 32
    except (KeyError, ValueError, IndexError):
        return 32


async def rotate(data_dir: Path, config_path: Path | None = None) -> str:
    """Rotate the keys of config_path (default: the generated one under data_dir's pki/);
    returns what was done, in words. Raises EncryptionConfigError for a file with
    nothing to rotate."""
    path = config_path or (pki.pki_dir(data_dir) / encryption.DEFAULT_CONFIG)
    encryption.EncryptionConfig.load(path)  # refuse a broken file before changing it
    doc = yaml.safe_load(path.read_text())
    lists = _first_keys(doc)
    if not lists:
        raise encryption.EncryptionConfigError(
            f"{path}: no resources are encrypted (every first provider is identity)")
    new_names, old_names = set(), set()
    for res in doc["resources"]:
        first = res["providers"][0]
        kind = next(iter(first))
        if kind not in _KEYED:
            continue
        keys = first[kind]["keys"]
        old_names.update(str(k["name"]) for k in keys)
        name = _next_name(keys)
        new_names.add(name)
        secret = base64.b64encode(os.urandom(_secret_size(kind, keys))).decode()
        keys.insert(0, {"name": name, "secret": secret})
    # 1. the new key first, the old ones still readable
    encryption.write_private(path, yaml.safe_dump(doc, sort_keys=False))
    # 2. everything rewritten under it
    config = encryption.EncryptionConfig.load(path)
    store = await open_sqlite(str(data_dir / "state.db"))
    try:
        count = await encryption.rewrite_stale(store, config, config.prefixes(REGISTRY))
        await store.scrub()
    finally:
        await store.close()
    # 3. the old keys retired
    for keys in _first_keys(doc):
        del keys[1:]
    encryption.write_private(path, yaml.safe_dump(doc, sort_keys=False))
    return (f"rewrote {count} object{'' if count == 1 else 's'} under "
            f"{', '.join(sorted(new_names))}; retired {', '.join(sorted(old_names))}")
