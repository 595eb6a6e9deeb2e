"""The revisioned key-value store with watch, on etcd v3's model.

One global revision counts every write; it is the `resourceVersion` of every
object. Values are opaque bytes (the API server stores JSON). Each backend
implements `Store`; the API server is its only user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue  # for DELETE: the last value, with mod_revision = the delete's revision
    prev: KeyValue | None  # the value before this event (None on create)


class StoreError(Exception):
    pass


class KeyExistsError(StoreError):
    """create() of a key that exists."""


class KeyNotFoundError(StoreError):
    """update()/delete() of a key that does not exist."""


class RevisionConflictError(StoreError):
    """update()/delete() whose expected revision is not the key's current one."""

    def __init__(self, current: KeyValue | None) -> None:
        super().__init__("revision conflict")
        self.current = current


class CompactedError(StoreError):
    """A read or watch from a revision older than the compacted one."""

    def __init__(self, compacted_revision: int) -> None:
        super().__init__(f"revision compacted: {compacted_revision}")
        self.compacted_revision = compacted_revision


class Store(Protocol):
    @property
    def revision(self) -> int:
        """The newest revision written (0 for an empty store)."""
        ...

    @property
    def compacted_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every live key under prefix, sorted by key, and the revision they were read at."""
        ...

    async def create(self, key: str, value: bytes) -> KeyValue: ...

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Compare-and-swap: replace key if its mod_revision is expected_revision
        (0 means any)."""
        ...

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Delete key; returns the deleted value (mod_revision = the delete's revision)."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events under prefix with revision > from_revision, in revision order, with no
        gap between history and live events. Raises CompactedError if from_revision is
        older than the compacted revision."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history older than revision (latest values are kept)."""
        ...

    async def close(self) -> None: ...


Op = Literal["create", "update", "delete"]
