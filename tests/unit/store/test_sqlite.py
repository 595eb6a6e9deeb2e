"""The stores against the Store protocol: CRUD, CAS, range, watch, compaction.

Every test taking the `store` fixture runs on both backends: SQLite, and a real
one-member etcd (Debian's `etcd-server`) started fresh for the test in its temp dir and
stopped by PID. The tests that open files themselves are SQLite's own."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator

import pytest

from pinnace.store import (
    CompactedError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    SqliteStore,
    Store,
    open_sqlite,
)
from pinnace.store.etcd import open_etcd
from tests.etcd_cluster import EtcdCluster


@pytest.fixture(params=["sqlite", "etcd"])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = await open_sqlite(str(tmp_path / "db" / "state.db"), compact_interval=3600)
        yield s
        await s.close()
        return
    with EtcdCluster(tmp_path / "etcd") as etcd:
        s = await open_etcd(etcd.endpoints, compact_interval=3600)
        try:
            yield s
        finally:
            await s.close()


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    """The next n events (fewer if the watch ends), failing after a few seconds."""

    async def collect() -> list[Event]:
        out = []
        async for e in events:
            out.append(e)
            if len(out) == n:
                break
        return out

    return await asyncio.wait_for(collect(), 5.0)


async def test_create_get_update_delete(store: SqliteStore) -> None:
    assert store.revision == 0
    assert await store.get("/a") is None
    kv = await store.create("/a", b"1")
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision) == ("/a", b"1", 1, 1)
    assert store.revision == 1
    assert await store.get("/a") == kv
    with pytest.raises(KeyExistsError):
        await store.create("/a", b"again")

    kv2 = await store.update("/a", b"2", 1)
    assert (kv2.value, kv2.create_revision, kv2.mod_revision) == (b"2", 1, 2)
    kv3 = await store.update("/a", b"3", 0)  # unconditional
    assert (kv3.value, kv3.create_revision, kv3.mod_revision) == (b"3", 1, 3)

    gone = await store.delete("/a")
    assert (gone.value, gone.create_revision, gone.mod_revision) == (b"3", 1, 4)
    assert await store.get("/a") is None
    with pytest.raises(KeyNotFoundError):
        await store.update("/a", b"x", 0)
    with pytest.raises(KeyNotFoundError):
        await store.delete("/a")
    with pytest.raises(KeyNotFoundError):
        await store.update("/missing", b"x", 0)


async def test_compare_and_swap_conflict(store: SqliteStore) -> None:
    await store.create("/k", b"v1")
    current = await store.update("/k", b"v2", 1)
    with pytest.raises(RevisionConflictError) as err:
        await store.update("/k", b"stale", 1)
    assert err.value.current == current
    with pytest.raises(RevisionConflictError):
        await store.delete("/k", 1)
    assert (await store.get("/k")) == current
    assert (await store.delete("/k", current.mod_revision)).value == b"v2"


async def test_racing_updates_from_same_base_one_wins(store: SqliteStore) -> None:
    base = await store.create("/k", b"0")
    results = await asyncio.gather(
        *(store.update("/k", str(i).encode(), base.mod_revision) for i in range(5)),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(wins) == 1
    assert all(isinstance(r, RevisionConflictError) for r in results if r not in wins)


async def test_delete_then_recreate(store: SqliteStore) -> None:
    await store.create("/k", b"old")
    await store.delete("/k")
    kv = await store.create("/k", b"new")
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"new", 3, 3)
    assert await store.get("/k") == kv
    kv2 = await store.update("/k", b"newer", 3)
    assert kv2.create_revision == 3


async def test_range_sorted_and_prefix_bounded(store: SqliteStore) -> None:
    for key in ["/a/b/z", "/a/bc", "/a/b/a", "/a/b", "/a/b/m", "/b/x", "/a/b/é", "/a/c"]:
        await store.create(key, key.encode())
    await store.delete("/a/b/m")
    kvs, rev = await store.range("/a/b/")
    assert [kv.key for kv in kvs] == ["/a/b/a", "/a/b/z", "/a/b/é"]
    assert rev == store.revision == 9
    everything, _ = await store.range("")
    assert [kv.key for kv in everything] == sorted(
        ["/a/b/z", "/a/bc", "/a/b/a", "/a/b", "/b/x", "/a/b/é", "/a/c"]
    )
    assert (await store.range("/nothing/"))[0] == []


async def test_range_of_ten_thousand_keys(store: SqliteStore) -> None:
    for i in range(10_000):
        await store.create(f"/pods/ns/{i:05d}", b"{}")
    for i in range(0, 10_000, 7):
        await store.update(f"/pods/ns/{i:05d}", b"{1}", 0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    kvs, _ = await store.range("/pods/")
    assert loop.time() - start < 0.5
    assert len(kvs) == 10_000
    assert [kv.key for kv in kvs] == sorted(kv.key for kv in kvs)


async def test_watch_replays_then_streams_without_gap_or_duplicate(store: SqliteStore) -> None:
    for i in range(10):
        await store.create(f"/w/{i}", b"x")
    start = 5

    async def writer() -> None:
        for i in range(10, 60):
            await store.create(f"/w/{i}", b"x")
            await store.create(f"/other/{i}", b"x")  # outside the prefix
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)  # the writer is running while the watch subscribes
    events = store.watch("/w/", start)
    got = await take(events, 55)
    await task
    await events.aclose()  # type: ignore[attr-defined]
    revisions = [e.kv.mod_revision for e in got]
    assert revisions == sorted(set(revisions))
    assert [e.kv.key for e in got] == [f"/w/{i}" for i in range(5, 60)]


async def test_watch_events_carry_prev(store: SqliteStore) -> None:
    before = await store.create("/other", b"")
    created = await store.create("/p", b"1")
    updated = await store.update("/p", b"2", 0)
    events = store.watch("/p", 0)
    deleted = await store.delete("/p")
    live = await take(events, 1)
    assert live[0].type == "DELETE"
    assert live[0].kv == deleted and live[0].kv.value == b"2"
    assert live[0].prev == updated

    replayed = await take(store.watch("/p", before.mod_revision), 3)
    assert [e.type for e in replayed] == ["PUT", "PUT", "DELETE"]
    assert [e.prev for e in replayed] == [None, created, updated]
    assert replayed[2].kv == deleted


async def test_watch_from_zero_is_from_now(store: SqliteStore) -> None:
    await store.create("/n/old", b"x")
    events = store.watch("/n/", 0)
    await store.create("/n/new", b"x")
    got = await take(events, 1)
    assert got[0].kv.key == "/n/new"


async def test_watch_from_compacted_revision_raises(store: SqliteStore) -> None:
    await store.create("/c", b"0")
    for i in range(1, 6):
        await store.update("/c", str(i).encode(), 0)
    await store.compact(4)
    assert store.compacted_revision == 4
    with pytest.raises(CompactedError) as err:
        await take(store.watch("/c", 3), 1)
    assert err.value.compacted_revision == 4
    got = await take(store.watch("/c", 4), 2)
    assert [e.kv.mod_revision for e in got] == [5, 6]
    assert got[0].prev is not None and got[0].prev.mod_revision == 4
    assert (await store.get("/c")).value == b"5"  # type: ignore[union-attr]


async def test_compaction_keeps_latest_values_and_revision(tmp_path) -> None:
    path = str(tmp_path / "state.db")
    s = await open_sqlite(path, compact_interval=3600)
    await s.create("/keep", b"k")
    await s.create("/gone", b"g")
    await s.update("/keep", b"k2", 0)
    last = await s.delete("/gone")  # the newest row is a tombstone
    await s.compact(s.revision)
    assert s.compacted_revision == last.mod_revision
    assert await s.get("/gone") is None
    assert (await s.range("/"))[0] == [await s.get("/keep")]
    assert s.revision == last.mod_revision
    await s.close()

    s = await open_sqlite(path, compact_interval=3600)
    assert s.revision == last.mod_revision
    assert s.compacted_revision == last.mod_revision
    kv = await s.create("/gone", b"again")
    assert kv.mod_revision == last.mod_revision + 1
    await s.close()


async def test_revision_monotonic_across_reopen(tmp_path) -> None:
    path = str(tmp_path / "state.db")
    s = await open_sqlite(path)
    for i in range(3):
        await s.create(f"/r/{i}", b"x")
    await s.close()
    s = await open_sqlite(path)
    assert s.revision == 3
    assert (await s.update("/r/0", b"y", 1)).mod_revision == 4
    await s.close()


async def test_background_compaction_keeps_window(tmp_path) -> None:
    s = await open_sqlite(str(tmp_path / "s.db"), history_window=5, compact_interval=0.02)
    assert s.history_window == 5
    await s.create("/x", b"0")
    for i in range(19):
        await s.update("/x", str(i).encode(), 0)
    for _ in range(100):
        if s.compacted_revision:
            break
        await asyncio.sleep(0.01)
    assert s.compacted_revision == 15
    got = await take(s.watch("/x", 15), 5)
    assert [e.kv.mod_revision for e in got] == [16, 17, 18, 19, 20]
    await s.close()


async def test_slow_watcher_catches_up_in_order(store: SqliteStore) -> None:
    events = store.watch("/s/", 0)
    first = asyncio.create_task(take(events, 1))
    await asyncio.sleep(0)
    await store.create("/s/0", b"x")
    assert [e.kv.mod_revision for e in await first] == [1]
    for i in range(1, 12_000):  # more than a watcher may buffer
        await store.create(f"/s/{i}", b"x")
    rest = await take(events, 11_999)
    assert [e.kv.mod_revision for e in rest] == list(range(2, 12_001))


async def test_close_ends_watches(tmp_path) -> None:
    s = await open_sqlite(str(tmp_path / "s.db"))
    waiting = asyncio.create_task(take(s.watch("/", 0), 1))
    await asyncio.sleep(0.01)
    await s.close()
    assert await waiting == []


async def test_file_and_directory_are_private(tmp_path) -> None:
    path = tmp_path / "data" / "state.db"
    s = await open_sqlite(str(path))
    await s.create("/secret", b"hush")
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    for name in ["state.db", "state.db-wal", "state.db-shm"]:
        assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600
    await s.close()


async def test_repeated_compaction_forgets_superseded_rows(tmp_path) -> None:
    path = tmp_path / "state.db"
    s = await open_sqlite(str(path), compact_interval=3600)
    for key in ["/a", "/b", "/c"]:
        await s.create(key, b"0")
    for i in range(1, 4):
        for key in ["/a", "/b"]:
            await s.update(key, str(i).encode(), 0)
    await s.delete("/c")  # revision 10
    await s.compact(5)
    for key in ["/a", "/b"]:
        await s.update(key, b"last", 0)  # revisions 11, 12
    await s.compact(11)
    got = await take(s.watch("/", 11), 1)
    assert got[0].kv.mod_revision == 12
    assert got[0].prev is not None and got[0].prev.value == b"3"  # the predecessor stays
    kvs, _ = await s.range("/")
    assert [(kv.key, kv.value) for kv in kvs] == [("/a", b"last"), ("/b", b"last")]
    await s.close()
    # On disk: the two live rows, and /b's predecessor that revision 12 still needs.
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id FROM kine ORDER BY id").fetchall() == [(9,), (11,), (12,)]
    db.close()


async def test_writes_arriving_together_share_one_commit(tmp_path) -> None:
    # SQLite's group commit (etcd batches on its own side): the file is checked directly
    path = tmp_path / "db" / "state.db"
    store = await open_sqlite(str(path), compact_interval=3600)
    try:
        watch = store.watch("/g/", 0)
        first = asyncio.ensure_future(take(watch, 50))
        await asyncio.sleep(0)
        kvs = await asyncio.gather(*(store.create(f"/g/{i:02d}", b"v") for i in range(50)))
        # acknowledged means committed: another connection on the file sees every row
        other = sqlite3.connect(str(path))
        try:
            (count,) = other.execute(
                "SELECT COUNT(*) FROM kine WHERE name LIKE '/g/%'").fetchone()
        finally:
            other.close()
        assert count == 50
        assert store.revision == max(kv.mod_revision for kv in kvs)
        events = await first
        assert [e.kv.mod_revision for e in events] == sorted(kv.mod_revision for kv in kvs)
    finally:
        await store.close()


async def test_racing_updates_in_one_batch_still_conflict(store: SqliteStore) -> None:
    base = await store.create("/r/a", b"0")
    results = await asyncio.gather(
        store.update("/r/a", b"1", base.mod_revision),
        store.update("/r/a", b"2", base.mod_revision), return_exceptions=True)
    assert sum(isinstance(r, RevisionConflictError) for r in results) == 1
    winner = next(r for r in results if not isinstance(r, BaseException))
    got = await store.get("/r/a")
    assert got is not None and got.value == winner.value
