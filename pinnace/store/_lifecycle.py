"""What every store backend does the same around its data: tell its revision and
compacted revision, keep only the last `history_window` revisions by compacting in the
background, refuse calls once closed, and stop the compaction on close. A backend
subclasses `StoreLifecycle`, sets the attributes listed on it, implements `compact`, and
calls `_start_compactor` when opened and `_stop` first thing in its `close`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pinnace.store.interface import StoreError


class StoreLifecycle:
    # Set by the backend's __init__ (and kept current by its writes and compactions).
    _revision: int
    _compacted: int
    _history_window: int
    _closed: bool
    _compactor: asyncio.Task[None] | None
    # A failed background compaction is logged and tried again next interval.
    _compaction_errors: tuple[type[BaseException], ...] = (StoreError,)
    _compaction_failed = "store compaction to revision %d failed"

    @property
    def revision(self) -> int:
        """The newest revision written, as far as this process has seen (0 for an empty
        store)."""
        return self._revision

    @property
    def compacted_revision(self) -> int:
        """History at or before this revision may be gone."""
        return self._compacted

    @property
    def history_window(self) -> int:
        """How many recent revisions the background compaction keeps."""
        return self._history_window

    async def compact(self, revision: int) -> None:
        raise NotImplementedError

    def _start_compactor(self, interval: float, *, name: str) -> None:
        self._compactor = asyncio.get_running_loop().create_task(
            self._compact_periodically(interval), name=name)

    async def _compact_periodically(self, interval: float) -> None:
        # Logged under the backend's own module, as before the two shared this.
        log = logging.getLogger(type(self).__module__)
        while True:
            await asyncio.sleep(interval)
            target = self._revision - self._history_window
            if target <= self._compacted:
                continue
            try:
                await self.compact(target)
            except self._compaction_errors:
                log.exception(self._compaction_failed, target)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    async def _stop(self) -> bool:
        """Mark the store closed and wait for the compaction to stop; False when it was
        closed already (the caller has nothing left to release)."""
        if self._closed:
            return False
        self._closed = True
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        return True
