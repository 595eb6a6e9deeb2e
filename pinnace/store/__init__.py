"""The revisioned key-value store with watch (see `interface`); SQLite is the default."""

from pinnace.store.interface import (
    CompactedError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionConflictError,
    Store,
    StoreError,
)
from pinnace.store.sqlite import SqliteStore, open_sqlite

__all__ = [
    "CompactedError",
    "Event",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "RevisionConflictError",
    "SqliteStore",
    "Store",
    "StoreError",
    "open_sqlite",
]
