"""The SQLite store: one file, one append-only log table, watches fanned out in process.

Design (after kine's `pkg/drivers/sqlite` and `pkg/logstructured`):

- Table `kine`: every write appends a row; the row's `id INTEGER PRIMARY KEY AUTOINCREMENT`
  *is* the revision. Columns: name, created (1 on create), deleted (1 on delete: a
  tombstone carrying the last value), create_revision (0 on a create row: read as its id),
  prev_revision (the id of the row this one replaces, 0 for a brand-new key), value.
- A UNIQUE index on (name, prev_revision) makes two writers racing from the same base
  collide (IntegrityError) instead of both winning: compare-and-swap without locks.
  The index on (name, id) serves "latest row per key" for get and for prefix ranges
  (`name >= prefix AND name < successor(prefix)`, `MAX(id) GROUP BY name`: one query).
- sqlite3 runs on the event-loop thread, WAL, synchronous=NORMAL. Group commit: the
  first write of a batch opens a transaction and schedules its COMMIT on the loop; the
  writes that arrive before that callback runs join the same transaction (the COMMIT is
  deferred again while more keep arriving, up to `_BATCH_ROWS` rows or `_BATCH_DELAY`
  seconds). Each write is acknowledged (its coroutine returns) only after the COMMIT of
  its batch reached the WAL, which survives `kill -9` of the process (not a power loss);
  a failed COMMIT fails every write of the batch. The read-check-append of
  create/update/delete runs without an await (it sees the batch's earlier rows), so it
  is atomic with respect to other coroutines. Reads and watch replays wait for an open
  batch to commit, so nothing unacknowledged is ever read, and `revision` is the newest
  committed one.
- Watch: subscribe first (an asyncio.Queue per watcher), then replay rows with
  id > from_revision under the prefix from the table, then deliver live events, dropping
  any revision already delivered: no gap, no duplicate. A watcher that falls more than
  `_WATCH_BUFFER` events behind has its queue dropped and catches up from the table again
  (or gets CompactedError if that history is gone): memory stays bounded.
- Compaction, like kine's: delete rows superseded by a row with id <= revision and
  tombstones with id <= revision, so every row after the compacted revision keeps its
  predecessor (the `prev` of replayed events). The compacted revision is kept in the
  `meta` table. AUTOINCREMENT's sqlite_sequence keeps the highest id even when
  compaction deletes that row, so revisions never go back, across restarts too.
  A background task keeps the last `history_window` revisions.

One process owns the file: the in-memory revision and the watch fan-out see only this
process's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pinnace.store._lifecycle import StoreLifecycle
from pinnace.store.interface import (
    CompactedError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionConflictError,
    StoreError,
)

log = logging.getLogger(__name__)

__all__ = ["SqliteStore", "open_sqlite"]


# Events a watcher may lag behind before it is switched to catching up from the table.
_WATCH_BUFFER = 10_000
# Rows read per query when replaying history to a watcher.
_REPLAY_BATCH = 500
# Group commit: a batch commits once a loop turn adds no write to it, or at this size/age.
_BATCH_ROWS = 500
_BATCH_DELAY = 0.002

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    create_revision INTEGER NOT NULL DEFAULT 0,
    prev_revision INTEGER NOT NULL DEFAULT 0,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision ON kine (name, prev_revision);
CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_COLUMNS = "id, name, created, deleted, create_revision, prev_revision, value"
_LATEST = f"SELECT {_COLUMNS} FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1"
# Straight into KeyValue's fields: (key, value, create_revision, mod_revision).
_RANGE = """
SELECT name, value, CASE WHEN created THEN id ELSE create_revision END, id FROM kine
WHERE id IN (SELECT MAX(id) FROM kine WHERE name >= ? AND name < ? GROUP BY name)
  AND deleted = 0
ORDER BY name
"""
# Replay: the row, and the row it replaced (its `prev`, when still there and live).
_REPLAY = """
SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.prev_revision, k.value,
       p.id, p.created, p.deleted, p.create_revision, p.value
FROM kine AS k LEFT JOIN kine AS p ON p.id = k.prev_revision
WHERE k.id > ? AND k.name >= ? AND k.name < ?
ORDER BY k.id LIMIT ?
"""
_INSERT = """
INSERT INTO kine (name, created, deleted, create_revision, prev_revision, value)
VALUES (?, ?, ?, ?, ?, ?)
"""
# Rows up to the previous compaction were dealt with then: look only at those after it.
_COMPACT = """
DELETE FROM kine WHERE id IN (
    SELECT prev_revision FROM kine WHERE prev_revision != 0 AND id > :old AND id <= :rev
    UNION
    SELECT id FROM kine WHERE deleted != 0 AND id > :old AND id <= :rev
)
"""

# Greater than every key: SQLite orders every BLOB after every TEXT value.
_KEY_MAX = b""


def _prefix_end(prefix: str) -> str | bytes:
    """The smallest string greater than every string starting with prefix.

    SQLite compares TEXT as UTF-8 bytes, and UTF-8 byte order is code point order,
    so bumping the last code point gives the exclusive upper bound."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return _KEY_MAX
    nxt = ord(stripped[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded; skip past them
        nxt = 0xE000
    return stripped[:-1] + chr(nxt)


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    name: str
    created: int
    deleted: int
    create_revision: int
    prev_revision: int
    value: bytes

    def kv(self) -> KeyValue:
        create = self.id if self.created else self.create_revision
        return KeyValue(self.name, bytes(self.value), create, self.id)


@dataclass(eq=False)
class _Watcher:
    prefix: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False


class SqliteStore(StoreLifecycle):
    """The `Store` protocol on one SQLite file. Create it with `open_sqlite`."""

    _compaction_errors = (sqlite3.Error, StoreError)

    def __init__(self, db: sqlite3.Connection, *, history_window: int) -> None:
        self._db = db
        self._history_window = history_window
        self._watchers: set[_Watcher] = set()
        self._closed = False
        self._compactor: asyncio.Task[None] | None = None
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
        top = db.execute("SELECT MAX(id) FROM kine").fetchone()
        compacted = db.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
        self._compacted = compacted[0] if compacted else 0
        self._revision = max(seq[0] if seq else 0, top[0] or 0, self._compacted)
        # the open batch (group commit): acknowledged when `_pending` resolves
        self._pending: asyncio.Future[None] | None = None
        self._batch: list[Event] = []
        self._batch_top = 0  # the highest revision written in the batch
        self._batch_started = 0.0
        self._batch_seen = 0  # rows in the batch at the last look of the committer

    # -- reads ----------------------------------------------------------------------

    def _latest(self, key: str) -> _Row | None:
        self._check_open()
        row = self._db.execute(_LATEST, (key,)).fetchone()
        return _Row(*row) if row else None

    async def _settled(self) -> None:
        """Wait until no batch is open (nothing unacknowledged is in the table)."""
        while self._pending is not None:
            with contextlib.suppress(StoreError):
                await asyncio.shield(self._pending)

    async def get(self, key: str) -> KeyValue | None:
        if self._pending is not None:  # (the call alone costs a get ~30%)
            await self._settled()
        row = self._latest(key)
        return row.kv() if row and not row.deleted else None

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every live key under prefix, sorted by key, and the revision they were read at."""
        self._check_open()
        if self._pending is not None:
            await self._settled()
        rows = self._db.execute(_RANGE, (prefix, _prefix_end(prefix)))
        return [KeyValue(*r) for r in rows], self._revision

    # -- writes ---------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        current = self._latest(key)
        if current and not current.deleted:
            raise KeyExistsError(key)
        prev_revision = current.id if current else 0
        try:
            row = self._append(key, value, created=1, prev_revision=prev_revision)
        except sqlite3.IntegrityError:  # another writer on the file got there first
            raise KeyExistsError(key) from None
        kv = row.kv()
        await self._acknowledged(Event("PUT", kv, None))
        return kv

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Compare-and-swap: replace key if its mod_revision is expected_revision
        (0 means any)."""
        current = self._live(key, expected_revision)
        prev = current.kv()
        row = self._append_after(current, value, deleted=0)
        kv = row.kv()
        await self._acknowledged(Event("PUT", kv, prev))
        return kv

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Delete key; returns the deleted value (mod_revision = the delete's revision)."""
        current = self._live(key, expected_revision)
        prev = current.kv()
        row = self._append_after(current, current.value, deleted=1)
        kv = row.kv()
        await self._acknowledged(Event("DELETE", kv, prev))
        return kv

    def _live(self, key: str, expected_revision: int) -> _Row:
        current = self._latest(key)
        if current is None or current.deleted:
            raise KeyNotFoundError(key)
        if expected_revision and current.id != expected_revision:
            raise RevisionConflictError(current.kv())
        return current

    def _append_after(self, current: _Row, value: bytes, *, deleted: int) -> _Row:
        create_revision = current.id if current.created else current.create_revision
        try:
            return self._append(
                current.name,
                value,
                deleted=deleted,
                create_revision=create_revision,
                prev_revision=current.id,
            )
        except sqlite3.IntegrityError:  # another writer on the file replaced `current`
            now = self._latest(current.name)
            raise RevisionConflictError(now.kv() if now and not now.deleted else None) from None

    def _append(
        self,
        key: str,
        value: bytes,
        *,
        created: int = 0,
        deleted: int = 0,
        create_revision: int = 0,
        prev_revision: int,
    ) -> _Row:
        self._check_open()
        if self._pending is None:
            self._db.execute("BEGIN")
            self._pending = asyncio.get_running_loop().create_future()
            self._batch_started = time.monotonic()
            self._batch_seen = 0
            asyncio.get_running_loop().call_soon(self._commit_when_quiet)
        elif not self._db.in_transaction:  # SQLite rolled the batch back (disk full, ...)
            raise StoreError("the write batch was rolled back")
        cur = self._db.execute(
            _INSERT, (key, created, deleted, create_revision, prev_revision, value)
        )
        rid = cur.lastrowid
        assert rid is not None
        self._batch_top = max(self._batch_top, rid)
        return _Row(rid, key, created, deleted, create_revision, prev_revision, value)

    # -- group commit ---------------------------------------------------------------

    async def _acknowledged(self, event: Event) -> None:
        """Return once the batch holding event's row is committed (then it is published).
        A cancelled writer does not cancel the batch: its write may still commit."""
        assert self._pending is not None
        self._batch.append(event)
        await asyncio.shield(self._pending)

    def _commit_when_quiet(self) -> None:
        """The committer, run by the loop: while writes keep joining the batch in each
        loop turn, give the next turn's writers a chance too (bounded), then commit."""
        if self._pending is None:
            return
        n = len(self._batch)
        if n != self._batch_seen and n < _BATCH_ROWS and \
                time.monotonic() - self._batch_started < _BATCH_DELAY:
            self._batch_seen = n
            asyncio.get_running_loop().call_soon(self._commit_when_quiet)
            return
        self._commit()

    def _commit(self) -> None:
        pending, batch = self._pending, self._batch
        assert pending is not None
        self._pending, self._batch = None, []
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            log.error("store commit of %d writes failed: %s", len(batch), e)
            self._batch_top = self._revision  # the rolled-back ids will be used again
            if not pending.done():
                pending.set_exception(StoreError(f"commit failed: {e}"))
                pending.exception()  # writers that went away must not leave it unretrieved
            return
        self._revision = max(self._revision, self._batch_top)
        for event in batch:
            self._publish(event)
        if not pending.done():
            pending.set_result(None)

    # -- watch ----------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        key = event.kv.key
        for w in self._watchers:
            if not key.startswith(w.prefix) or w.overflowed:
                continue
            if w.queue.qsize() >= _WATCH_BUFFER:
                # Too far behind: drop the buffer; the watcher catches up from the table.
                w.overflowed = True
                _drain(w.queue)
                w.queue.put_nowait(None)  # wake it if it is waiting
            else:
                w.queue.put_nowait(event)

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events under prefix with revision > from_revision, in revision order, with no
        gap between history and live events. from_revision 0 means "from now" (the
        revision at this call). Raises CompactedError (when iterated) if from_revision
        is older than the compacted revision. Closing the iterator unsubscribes."""
        self._check_open()
        if from_revision == 0:
            return self._watch(prefix, self._revision, check_compacted=False)
        return self._watch(prefix, from_revision, check_compacted=True)

    async def _watch(
        self, prefix: str, from_revision: int, *, check_compacted: bool
    ) -> AsyncIterator[Event]:
        self._check_open()
        if check_compacted and from_revision < self._compacted:
            raise CompactedError(self._compacted)
        watcher = _Watcher(prefix)
        self._watchers.add(watcher)  # subscribe before reading history: no gap
        try:
            last = from_revision
            replay = from_revision < self._revision
            while True:
                if replay:
                    async for event in self._replay(prefix, last):
                        last = event.kv.mod_revision
                        yield event
                    replay = False
                    continue
                event = await watcher.queue.get()
                if event is None:
                    if self._closed:
                        return
                    if watcher.overflowed:
                        watcher.overflowed = False
                        _drain(watcher.queue)
                        replay = True
                    continue
                if event.kv.mod_revision <= last:
                    continue  # already delivered by the replay
                last = event.kv.mod_revision
                yield event
        finally:
            self._watchers.discard(watcher)

    async def _replay(self, prefix: str, after: int) -> AsyncIterator[Event]:
        """History rows after `after` under prefix, read in batches up to the revision
        current when each batch is read."""
        end = _prefix_end(prefix)
        while True:
            if self._closed:
                return
            await self._settled()
            if after < self._compacted:
                raise CompactedError(self._compacted)
            rows = self._db.execute(_REPLAY, (after, prefix, end, _REPLAY_BATCH)).fetchall()
            for r in rows:
                yield _replayed_event(r)
            if len(rows) < _REPLAY_BATCH:
                return
            after = rows[-1][0]

    # -- compaction -----------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Forget history older than revision (latest values are kept)."""
        self._check_open()
        await self._settled()  # no await from here to COMMIT: no batch opens meanwhile
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_COMPACT, {"old": self._compacted, "rev": revision})
            db.execute(
                "INSERT INTO meta (name, value) VALUES ('compacted', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (revision,),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._compacted = revision

    async def scrub(self) -> None:
        """Forget all history, then rebuild the file and empty the WAL, so no freed page
        or WAL frame keeps a superseded value's bytes (run after values were rewritten
        to be encrypted: the plaintext must leave the disk, not only the table)."""
        await self.compact(self._revision)
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- lifecycle ------------------------------------------------------------------

    async def close(self) -> None:
        """Stop compaction, end every watch, close the file."""
        if self._pending is not None:
            self._commit()  # what was written is acknowledged, not dropped
        # no await between that commit and _stop() marking the store closed: no batch
        # can open in between, nor after (every write checks that the store is open)
        if not await self._stop():
            return
        for w in self._watchers:
            w.queue.put_nowait(None)
        self._db.close()


def _drain(queue: asyncio.Queue[Event | None]) -> None:
    while not queue.empty():
        queue.get_nowait()


def _replayed_event(r: tuple) -> Event:
    row = _Row(*r[:7])
    kv = row.kv()
    prev = None
    pid, pcreated, pdeleted, pcreate_revision, pvalue = r[7:]
    if pid is not None and not pdeleted:
        create = pid if pcreated else pcreate_revision
        prev = KeyValue(row.name, bytes(pvalue), create, pid)
    return Event("DELETE" if row.deleted else "PUT", kv, prev)


def _create_private_file(path: str) -> None:
    """Create path's directory (0700) if missing, and the file, always 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
    # Create the file ourselves so it is never world-readable, even for an instant;
    # SQLite gives the -wal and -shm files the database file's permissions.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


async def open_sqlite(
    path: str, *, history_window: int = 10000, compact_interval: float = 60.0
) -> SqliteStore:
    """Open (creating if needed) the store at path and start its periodic compaction,
    which keeps the last `history_window` revisions, checked every `compact_interval` s.
    A created directory is mode 0700 and the file 0600: the store holds Secrets."""
    _create_private_file(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        store = SqliteStore(db, history_window=history_window)
    except BaseException:
        db.close()
        raise
    store._start_compactor(compact_interval, name="pinnace-store-compactor")
    return store
