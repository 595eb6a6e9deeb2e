"""Watch streaming: newline-delimited `{"type", "object"}` events over chunked HTTP.

A watch starts from the query's resourceVersion ("" or "0": the current state as
ADDED events first; otherwise the history after it), then follows live events
until `timeoutSeconds` (default: a random 30 to 60 minutes, as Kubernetes does), the
client goes away or its queue overflows. A resourceVersion older than the cache
window is answered, like Kubernetes, with an ERROR event carrying a 410 Status.
Bookmarks (when asked for) carry the cache's revision and go out after
BOOKMARK_INTERVAL without events. An idle watch checks every DISCONNECT_POLL
seconds whether its client left, so abandoned watches do not pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pinnace.api import errors, tables
from pinnace.api.kinds import ResourceType
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.list_options import ListOptions
from pinnace.apiserver.watch_cache import CacheEvent, WatchCache, WatchFilter
from pinnace.store.interface import CompactedError

BOOKMARK_INTERVAL = 10.0
OBJECT_EVENTS = frozenset({"ADDED", "MODIFIED", "DELETED"})
# how often an idle watch checks that its client is still connected
DISCONNECT_POLL = 0.5
MIN_REQUEST_TIMEOUT = 1800


def _disconnected(request: web.Request) -> bool:
    """The client went away: aiohttp does not cancel the handler (handler_cancellation
    is off), so an idle watch notices only by looking at its transport."""
    transport = request.transport
    return transport is None or transport.is_closing()


@dataclass(frozen=True)
class WatchOptions:
    """The watch parameters of a request's query (decoded by `list_options`)."""

    matches: WatchFilter
    from_rv: int | None
    timeout: float
    bookmarks: bool
    initial_events: bool

    @classmethod
    def from_list_options(cls, o: ListOptions) -> WatchOptions:
        timeout = o.timeout_seconds
        if timeout is None or timeout <= 0:
            timeout = int(MIN_REQUEST_TIMEOUT * (1 + random.random()))
        initial_events = bool(o.send_initial_events)
        return cls(matches=o.matches, from_rv=None if initial_events else o.revision,
                   timeout=timeout, bookmarks=o.allow_watch_bookmarks,
                   initial_events=initial_events)

    @classmethod
    def from_query(cls, q: Mapping[str, str], rt: ResourceType) -> WatchOptions:
        return cls.from_list_options(ListOptions.from_query(q, rt, watch=True))


Batch = list[tuple[str, dict[str, Any]]]


async def watch_batches(cache: WatchCache, rt: ResourceType, namespace: str | None,
                        opts: WatchOptions, *,
                        alive: Callable[[], bool] = lambda: True) -> AsyncIterator[Batch]:
    """The events of one watch, in batches (a burst of writes is one batch), until the
    timeout, the watcher's overflow, or `alive()` turns false while idle. The objects
    are the cache's own: consumers must not change them."""
    try:
        watcher, backlog = cache.watch(namespace, opts.matches, opts.from_rv)
    except CompactedError:
        status = errors.gone(f"too old resource version: {opts.from_rv} "
                             f"({cache.window_start})")
        yield [("ERROR", status.status())]
        return

    def bookmark(initial_end: bool = False) -> tuple[str, dict[str, Any]]:
        m: dict[str, Any] = {"resourceVersion": str(cache.revision)}
        if initial_end:
            m["annotations"] = {"k8s.io/initial-events-end": "true"}
        return "BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": m}

    deadline = time.monotonic() + opts.timeout
    min_revision = opts.from_rv or 0
    if backlog:
        min_revision = max(min_revision, max(ev.revision for ev in backlog))
    if opts.from_rv is None:
        min_revision = max(min_revision, cache.revision)
    try:
        first: Batch = [(ev.type, ev.obj) for ev in backlog]
        if opts.initial_events and opts.bookmarks:
            first.append(bookmark(initial_end=True))
        if first:
            yield first
        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return
            wait = min(remaining, DISCONNECT_POLL)
            if opts.bookmarks:
                wait = min(wait, max(next_bookmark - now, 0))
            try:
                ev: CacheEvent | None = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if not alive():
                    return
                now = time.monotonic()
                if opts.bookmarks and next_bookmark <= now < deadline:
                    yield [bookmark()]
                    next_bookmark = now + BOOKMARK_INTERVAL
                continue
            if ev is None:
                return
            batch = [ev]
            while not watcher.queue.empty():
                nxt = watcher.queue.get_nowait()
                if nxt is None:
                    watcher.closed = True
                    break
                batch.append(nxt)
            out = [(e.type, e.obj) for e in batch if e.revision > min_revision]
            if out:
                yield out
                next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            if watcher.closed and watcher.queue.empty():
                return
    finally:
        cache.unwatch(watcher)


async def serve_watch(request: web.Request, cache: WatchCache, rt: ResourceType,
                      namespace: str | None, opts: WatchOptions,
                      render: neg.Rendering) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)

    def frame(ev_type: str, obj: dict[str, Any]) -> bytes:
        if render.as_kind == "Table" and ev_type not in ("BOOKMARK", "ERROR"):
            obj = tables.table(rt.kind, rt.group, [obj], include_object=render.include_object,
                               resource_version=obj["metadata"].get("resourceVersion", ""),
                               printer=getattr(rt.custom, "printer", None))
        elif render.as_kind.startswith("PartialObjectMetadata") and ev_type != "ERROR":
            obj = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": obj.get("metadata", {})}
        elif ev_type in OBJECT_EVENTS:  # the object's bytes, shared with every watcher
            return b'{"type":"' + ev_type.encode() + b'","object":' + \
                cache.encoded(obj) + b"}\n"
        return neg.dump({"type": ev_type, "object": obj}) + b"\n"

    events = watch_batches(cache, rt, namespace, opts,
                           alive=lambda: not _disconnected(request))
    try:
        async for batch in events:
            await response.write(b"".join(frame(t, o) for t, o in batch))
    except ConnectionError:
        pass
    finally:
        await events.aclose()
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response
