"""A deduplicating, rate-limited work queue of keys, shaped like client-go's.

- A key queued twice before a worker takes it is processed once.
- A key is never processed by two workers at once: added again while being
  processed, it is queued again once `done` is called.
- `add_rate_limited` retries with per-key exponential backoff (5 ms doubling to
  `max_delay`); `forget` resets it after a success.
- `run_workers` runs N workers calling `reconcile(key)`: an exception requeues
  the key rate-limited, a return forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from pinnace.api.backoff import exponential_delay

log = logging.getLogger(__name__)

Reconcile = Callable[[str], Awaitable[None]]


class ShutDown(Exception):
    pass


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 300.0) -> None:
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wake = asyncio.Event()
        self._shutdown = False
        self.base_delay = base_delay
        self.max_delay = max_delay

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wake.set()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None:
            if existing.when() <= when:
                return  # an earlier retry is already scheduled
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        self.add_after(key, exponential_delay(self.base_delay, self.max_delay, n))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        while not self._queue:
            if self._shutdown:
                raise ShutDown
            self._wake.clear()
            await self._wake.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake.set()

    def shutdown(self) -> None:
        self._shutdown = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._wake.set()


async def run_workers(queue: WorkQueue, reconcile: Reconcile, *, workers: int = 1,
                      name: str = "controller") -> None:
    """Run until the queue shuts down or the task is cancelled."""

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # transient: retry with backoff
                log.debug("%s: reconcile %s failed: %s", name, key, e, exc_info=True)
                if queue.num_requeues(key) >= 5:
                    log.warning("%s: reconcile %s keeps failing: %s", name, key, e)
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)
            await asyncio.sleep(0)  # a key that keeps coming back must not starve the loop

    await run_parallel(worker, workers, name=name)


async def run_parallel(worker: Callable[[], Awaitable[None]], count: int, *,
                       name: str = "worker") -> None:
    """Run `count` copies of `worker` until they all return; cancelling this cancels
    (and awaits) every copy, so no task outlives its owner."""
    tasks = [asyncio.create_task(worker(), name=f"{name}-{i}") for i in range(count)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
