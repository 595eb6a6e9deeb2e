"""An acknowledged write survives `kill -9` of the process that made it, and on etcd
`kill -9` of the etcd member that acknowledged it (restarted from its data dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pinnace
from pinnace.store import open_sqlite
from pinnace.store.etcd import open_etcd
from tests.etcd_cluster import EtcdCluster

# The writer: creates and updates keys as fast as it can, printing each acknowledged
# (key, mod_revision) only after the write has returned.
WRITER = """
import asyncio, sys
from pinnace.store import open_sqlite
from pinnace.store.etcd import open_etcd

async def main(path):
    store = await (open_etcd([path]) if path.startswith("http") else open_sqlite(path))
    i = 0
    while True:
        kv = await store.create(f"/k/{i}", b"v" * 200)
        print(kv.key, kv.mod_revision, flush=True)
        if i % 3 == 0:
            kv = await store.update(kv.key, b"u" * 200, kv.mod_revision)
            print(kv.key, kv.mod_revision, flush=True)
        i += 1

asyncio.run(main(sys.argv[1]))
"""

# The same, from 16 writers at once: their writes share group commits.
CONCURRENT_WRITER = """
import asyncio, sys
from pinnace.store import open_sqlite

async def main(path):
    store = await open_sqlite(path)

    async def writer(w):
        i = 0
        while True:
            kv = await store.create(f"/k/{w}-{i}", b"v" * 200)
            print(kv.key, kv.mod_revision, flush=True)
            kv = await store.update(kv.key, b"u" * 200, kv.mod_revision)
            print(kv.key, kv.mod_revision, flush=True)
            i += 1
    await asyncio.gather(*(writer(w) for w in range(16)))

asyncio.run(main(sys.argv[1]))
"""

ACKS = 400
REPO = str(Path(pinnace.__file__).resolve().parent.parent)


def write_until_killed(path: str, etcd: EtcdCluster | None = None,
                       writer: str = WRITER) -> dict[str, int]:
    """Run the writer, SIGKILL it (and first the etcd member it writes to) after ACKS
    acknowledgements; every key's last ack."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(
        [sys.executable, "-c", writer, path], stdout=subprocess.PIPE, text=True, env=env
    )
    acked: dict[str, int] = {}

    def record(line: str) -> None:
        key, revision = line.split()
        acked[key] = int(revision)  # a key's later line is its update

    assert child.stdout is not None
    try:
        deadline = time.monotonic() + 20
        while len(acked) < ACKS and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            record(line)
    finally:
        if etcd is not None:
            etcd.stop_member(0, signal.SIGKILL)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # Acks the child printed before it died are still in the pipe: they count too, so
    # every key's last ack is its final acknowledged revision.
    for line in child.stdout.read().splitlines(keepends=True):
        if line.endswith("\n"):
            record(line)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path, backend: str) -> None:
    etcd = None
    if backend == "etcd":
        etcd = EtcdCluster(tmp_path / "etcd").start()
        path = etcd.endpoints[0]
    else:
        path = str(tmp_path / "state.db")
    try:
        acked = write_until_killed(path, etcd)
        assert len(acked) >= ACKS
        if etcd is not None:
            etcd.start_member(0)  # from its data dir, as after a crash
            etcd.wait_healthy()
        await check_survived(path, acked)
    finally:
        if etcd is not None:
            etcd.stop()


async def check_survived(path: str, acked: dict[str, int]) -> None:
    store = await (open_etcd([path]) if path.startswith("http") else open_sqlite(path))
    top = max(acked.values())
    try:
        for key, revision in acked.items():
            kv = await store.get(key)
            assert kv is not None, key
            # The writer is sequential: at most one write (revision top + 1) can have
            # landed without its ack being printed before the kill.
            assert kv.mod_revision in (revision, top + 1), key
        assert store.revision in (top, top + 1)
        kv = await store.create("/after-restart", b"x")
        assert kv.mod_revision > top
    finally:
        await store.close()


async def test_acknowledged_group_commits_survive_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    acked = write_until_killed(path, writer=CONCURRENT_WRITER)
    assert len(acked) >= ACKS

    store = await open_sqlite(path)
    try:
        for key, revision in acked.items():
            kv = await store.get(key)
            assert kv is not None, key
            # an acknowledged create may have been followed by an update whose ack
            # was not printed yet: never older than the ack
            assert kv.mod_revision >= revision, key
    finally:
        await store.close()
