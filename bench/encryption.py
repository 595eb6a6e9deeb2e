"""What encryption at rest costs per store operation, in process (no HTTP, so the figure
is not lost in the shared machine's noise the way `bench.api`'s rates are).

    python -m bench.encryption [--objects 2000]

Prints one table: microseconds per create and per get (and a range of all) through the
raw SQLite store (the baseline), through `EncryptedStore` for a kind it does not encrypt
(ConfigMaps: what every other kind pays) and for Secrets (aesgcm), with ~1 KiB values.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import tempfile
import time
from pathlib import Path

from bench._common import print_table
from pinnace.apiserver.encryption import EncryptedStore, EncryptionConfig, generate_config
from pinnace.store.sqlite import open_sqlite

VALUE = b'{"data":{"key":"' + base64.b64encode(os.urandom(700)) + b'"}}'


async def measure(store, prefix: str, n: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    for i in range(n):
        await store.create(f"{prefix}{i}", VALUE)
    t1 = time.perf_counter()
    for i in range(n):
        await store.get(f"{prefix}{i}")
    t2 = time.perf_counter()
    kvs, _ = await store.range(prefix)
    t3 = time.perf_counter()
    assert len(kvs) == n and kvs[0].value == VALUE
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, (t3 - t2) * 1e3


async def run(n: int, tmp: Path) -> list[tuple[str, float, float, float]]:
    raw = await open_sqlite(str(tmp / "state.db"), compact_interval=3600)
    store = EncryptedStore(raw, EncryptionConfig.parse(generate_config()))
    rows = []
    for label, s, prefix in (
            ("raw store, configmaps (baseline)", raw, "/registry/core/configmaps/a/"),
            ("EncryptedStore, configmaps (not encrypted)", store,
             "/registry/core/configmaps/b/"),
            ("EncryptedStore, secrets (aesgcm)", store, "/registry/core/secrets/c/")):
        rows.append((label, *await measure(s, prefix, n)))
    await raw.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pinnace-bench-") as tmp:
        rows = asyncio.run(run(args.objects, Path(tmp)))
    print_table(["store path", "create us", "get us", f"range ms ({args.objects} objects)"],
                [(label, f"{create:.1f}", f"{get:.1f}", f"{rng:.2f}")
                 for label, create, get, rng in rows],
                note=f"{len(VALUE)}-byte values")


if __name__ == "__main__":
    main()
